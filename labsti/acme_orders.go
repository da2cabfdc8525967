package labsti

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/tnauth"
)

func (ca *acmeCA) accountJSON(a *account) map[string]any {
	m := map[string]any{"status": a.status, "orders": ca.url("acct", a.id) + "/orders"}
	if len(a.contact) > 0 {
		m["contact"] = a.contact
	}
	return m
}

func (ca *acmeCA) newAccount(req *request) (*reply, *problem) {
	var in struct {
		Contact              []string        `json:"contact"`
		TermsOfServiceAgreed bool            `json:"termsOfServiceAgreed"`
		OnlyReturnExisting   bool            `json:"onlyReturnExisting"`
		EAB                  json.RawMessage `json:"externalAccountBinding"`
	}
	if p := decodePayload(req, &in); p != nil {
		return nil, p
	}
	th, err := thumbprint(req.key)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "%v", err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if id, ok := ca.byThumb[th]; ok {
		a := ca.accounts[id]
		return &reply{status: http.StatusOK, body: ca.accountJSON(a), location: ca.url("acct", id)}, nil
	}
	if in.OnlyReturnExisting {
		return nil, prob(http.StatusBadRequest, probNoAccount, "no account for this key")
	}
	fp, err := spctoken.Fingerprint(req.key)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "%v", err)
	}
	a := &account{id: randID(), key: req.key, thumb: th, fingerprint: fp, status: "valid", contact: in.Contact}
	ca.accounts[a.id], ca.byThumb[th] = a, a.id
	return &reply{status: http.StatusCreated, body: ca.accountJSON(a), location: ca.url("acct", a.id)}, nil
}

func (ca *acmeCA) account(req *request) (*reply, *problem) {
	if req.r.PathValue("id") != req.acct.id {
		return nil, prob(http.StatusUnauthorized, probUnauthorized, "not your account")
	}
	if req.payload != nil {
		var in struct {
			Status  string   `json:"status"`
			Contact []string `json:"contact"`
		}
		if p := decodePayload(req, &in); p != nil {
			return nil, p
		}
		ca.mu.Lock()
		if in.Status == "deactivated" {
			req.acct.status = "deactivated"
		}
		if in.Contact != nil {
			req.acct.contact = in.Contact
		}
		ca.mu.Unlock()
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return &reply{status: http.StatusOK, body: ca.accountJSON(req.acct), location: ca.url("acct", req.acct.id)}, nil
}

func (ca *acmeCA) orderJSON(o *order) map[string]any {
	m := map[string]any{
		"status":         o.status,
		"expires":        o.expires.UTC().Format(time.RFC3339),
		"identifiers":    []identifier{o.ident},
		"authorizations": []string{ca.url("authz", o.authz)},
		"finalize":       ca.url("finalize", o.id),
	}
	if o.cert != "" {
		m["certificate"] = ca.url("cert", o.cert)
	}
	if o.err != nil {
		m["error"] = o.err
	}
	return m
}

// newOrder accepts exactly one TNAuthList identifier whose value is base64
// (either alphabet) of a TNAuthList DER (RFC 9448 section 3).
func (ca *acmeCA) newOrder(req *request) (*reply, *problem) {
	var in struct {
		Identifiers []identifier `json:"identifiers"`
		NotBefore   string       `json:"notBefore"`
		NotAfter    string       `json:"notAfter"`
	}
	if p := decodePayload(req, &in); p != nil {
		return nil, p
	}
	if len(in.Identifiers) != 1 {
		return nil, prob(http.StatusBadRequest, probRejectedIdent, "want exactly one TNAuthList identifier, got %d", len(in.Identifiers))
	}
	id := in.Identifiers[0]
	if !strings.EqualFold(id.Type, "TNAuthList") {
		return nil, prob(http.StatusBadRequest, probUnsupportedID, "identifier type %q: this STI-CA issues for TNAuthList only", id.Type)
	}
	der, list, err := spctoken.DecodeTkValue(id.Value)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probRejectedIdent, "TNAuthList value: %v", err)
	}
	now := ca.now()
	o := &order{id: randID(), acct: req.acct.id, status: "pending", expires: now.Add(orderTTL), ident: id, der: der, list: list}
	if in.NotAfter != "" {
		if t, err := time.Parse(time.RFC3339, in.NotAfter); err == nil {
			o.notAfter = t
		}
	}
	az := &authz{id: randID(), order: o.id, status: "pending", expires: o.expires}
	ch := &challenge{id: randID(), authz: az.id, status: "pending", token: randID()}
	az.chall, o.authz = ch, az.id
	ca.mu.Lock()
	ca.orders[o.id], ca.authzs[az.id], ca.challs[ch.id] = o, az, ch
	body := ca.orderJSON(o)
	ca.mu.Unlock()
	return &reply{status: http.StatusCreated, body: body, location: ca.url("order", o.id)}, nil
}

func (ca *acmeCA) getOrder(req *request) (*reply, *problem) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	o := ca.orders[req.r.PathValue("id")]
	if o == nil || o.acct != req.acct.id {
		return nil, prob(http.StatusNotFound, probMalformed, "no such order")
	}
	return &reply{status: http.StatusOK, body: ca.orderJSON(o), location: ca.url("order", o.id)}, nil
}

func (ca *acmeCA) challJSON(ch *challenge) map[string]any {
	m := map[string]any{"type": "tkauth-01", "url": ca.url("chall", ch.id), "status": ch.status, "token": ch.token,
		"tkauth-type": "atc", "token-authority": ca.paURL}
	if !ch.validated.IsZero() {
		m["validated"] = ch.validated.UTC().Format(time.RFC3339)
	}
	if ch.err != nil {
		m["error"] = ch.err
	}
	return m
}

func (ca *acmeCA) getAuthz(req *request) (*reply, *problem) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	az := ca.authzs[req.r.PathValue("id")]
	if az == nil || ca.orders[az.order].acct != req.acct.id {
		return nil, prob(http.StatusNotFound, probMalformed, "no such authorization")
	}
	o := ca.orders[az.order]
	return &reply{status: http.StatusOK, body: map[string]any{
		"identifier": o.ident, "status": az.status, "expires": az.expires.UTC().Format(time.RFC3339),
		"challenges": []any{ca.challJSON(az.chall)},
	}}, nil
}

// respond validates a tkauth-01 answer {"atc": "<SPC token>"} at once
// (RFC 9447 section 3.3, RFC 9448 section 5.4): the token is signed by the
// STI-PA this CA trusts, unexpired, tktype TNAuthList, not for a CA, its
// TNAuthList the order's, its fingerprint the requesting account key's.
func (ca *acmeCA) respond(req *request) (*reply, *problem) {
	ca.mu.Lock()
	ch := ca.challs[req.r.PathValue("id")]
	var az *authz
	var o *order
	if ch != nil {
		az = ca.authzs[ch.authz]
		o = ca.orders[az.order]
	}
	ca.mu.Unlock()
	if ch == nil || o.acct != req.acct.id {
		return nil, prob(http.StatusNotFound, probMalformed, "no such challenge")
	}
	var in struct {
		ATC string `json:"atc"`
	}
	if req.payload != nil {
		if p := decodePayload(req, &in); p != nil {
			return nil, p
		}
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ch.status != "pending" {
		return &reply{status: http.StatusOK, body: ca.challJSON(ch), location: ca.url("chall", ch.id)}, nil
	}
	if req.payload == nil || in.ATC == "" {
		// POST-as-GET, or {} from a client that has not the token yet.
		return &reply{status: http.StatusOK, body: ca.challJSON(ch)}, nil
	}
	now := ca.now()
	fail := func(detail string, a ...any) {
		ch.status, az.status, o.status = "invalid", "invalid", "invalid"
		ch.err = prob(http.StatusForbidden, probUnauthorized, detail, a...)
		o.err = ch.err
		ca.log.Info("lab-sti: tkauth-01 refused", "order", o.id, "detail", ch.err.Detail)
	}
	tok, err := spctoken.Parse(in.ATC)
	switch {
	case ca.fault() == FaultChallenge:
		fail("lab fault: challenge failed")
	case err != nil:
		fail("SPC token: %v", err)
	default:
		if err := tok.VerifySignature(ca.paKey()); err != nil {
			fail("SPC token: %v", err)
		} else if err := tok.Check(spctoken.Want{TNAuthList: o.der, Fingerprint: req.acct.fingerprint, Now: now}); err != nil {
			fail("SPC token: %v", err)
		} else {
			ch.status, ch.validated, az.status, o.status = "valid", now, "valid", "ready"
		}
	}
	return &reply{status: http.StatusOK, body: ca.challJSON(ch), location: ca.url("chall", ch.id)}, nil
}

// finalize issues at once: the CSR must be signed by its P-256 key and ask
// for exactly the order's TNAuthList (RFC 9448 section 6).
func (ca *acmeCA) finalize(req *request) (*reply, *problem) {
	var in struct {
		CSR string `json:"csr"`
	}
	if p := decodePayload(req, &in); p != nil {
		return nil, p
	}
	ca.mu.Lock()
	o := ca.orders[req.r.PathValue("id")]
	ca.mu.Unlock()
	if o == nil || o.acct != req.acct.id {
		return nil, prob(http.StatusNotFound, probMalformed, "no such order")
	}
	ca.mu.Lock()
	status := o.status
	ca.mu.Unlock()
	if status != "ready" {
		return nil, prob(http.StatusForbidden, probOrderNotReady, "order is %s", status)
	}
	der, err := b64.DecodeString(in.CSR)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probBadCSR, "csr encoding")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probBadCSR, "%v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, prob(http.StatusBadRequest, probBadCSR, "CSR signature: %v", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve.Params().Name != "P-256" {
		return nil, prob(http.StatusBadRequest, probBadCSR, "the key must be ECDSA P-256")
	}
	var csrList []byte
	for _, e := range csr.Extensions {
		if e.Id.Equal(tnauth.OID) {
			csrList = e.Value
		}
	}
	if csrList == nil {
		return nil, prob(http.StatusBadRequest, probBadCSR, "no TNAuthList extension (1.3.6.1.5.5.7.1.26) in the CSR")
	}
	if !bytes.Equal(csrList, o.der) {
		return nil, prob(http.StatusBadRequest, probBadCSR, "the CSR's TNAuthList is not the order's identifier")
	}
	now := ca.now()
	issuer, list := ca.inter, o.list
	switch ca.fault() {
	case FaultWrongTNAuth:
		list = tnauth.List{SPCs: []string{"9999"}}
	case FaultUntrusted:
		if issuer, err = ca.rogue(); err != nil {
			return nil, prob(http.StatusInternalServerError, probServerInternal, "%v", err)
		}
	}
	spc := ""
	if len(list.SPCs) > 0 {
		spc = list.SPCs[0]
	}
	notBefore := now.Add(-time.Second).Truncate(time.Second)
	notAfter := notBefore.Add(ca.lifetime)
	if !o.notAfter.IsZero() && o.notAfter.After(notBefore) && o.notAfter.Before(notAfter) {
		notAfter = o.notAfter
	}
	leaf, err := issuer.IssueSPKey(pub, spc, list, csr.Subject, notBefore, notAfter)
	if err != nil {
		return nil, prob(http.StatusInternalServerError, probServerInternal, "%v", err)
	}
	c := &issuedCert{id: randID(), acct: req.acct.id, chain: append([]*x509.Certificate{leaf}, issuer.Chain()...)}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.certs[c.id] = c
	o.cert, o.status = c.id, "valid"
	ca.issued++
	if ca.onIssue != nil {
		ca.onIssue(leaf)
	}
	ca.log.Info("lab-sti: certificate issued", "order", o.id, "spc", spc, "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	return &reply{status: http.StatusOK, body: ca.orderJSON(o), location: ca.url("order", o.id)}, nil
}

func (ca *acmeCA) getCert(req *request) (*reply, *problem) {
	ca.mu.Lock()
	c := ca.certs[req.r.PathValue("id")]
	ca.mu.Unlock()
	if c == nil || c.acct != req.acct.id {
		return nil, prob(http.StatusNotFound, probMalformed, "no such certificate")
	}
	return &reply{status: http.StatusOK, raw: labpki.EncodeCerts(c.chain...), ctype: "application/pem-certificate-chain"}, nil
}
