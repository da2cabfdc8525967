package labsti

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/tnauth"
)

// ACME problem types (RFC 8555 section 6.7).
const (
	probMalformed       = "malformed"
	probBadNonce        = "badNonce"
	probUnauthorized    = "unauthorized"
	probNoAccount       = "accountDoesNotExist"
	probBadAlg          = "badSignatureAlgorithm"
	probOrderNotReady   = "orderNotReady"
	probRejectedIdent   = "rejectedIdentifier"
	probUnsupportedID   = "unsupportedIdentifier"
	probBadCSR          = "badCSR"
	probServerInternal  = "serverInternal"
	probAlreadyRevoked  = "alreadyRevoked"
	probBadRevocationRs = "badRevocationReason"
)

type problem struct {
	Type       string   `json:"type"`
	Detail     string   `json:"detail,omitempty"`
	Status     int      `json:"status,omitempty"`
	Algorithms []string `json:"algorithms,omitempty"`
}

func prob(status int, typ, format string, a ...any) *problem {
	return &problem{Type: "urn:ietf:params:acme:error:" + typ, Detail: fmt.Sprintf(format, a...), Status: status}
}

func (p *problem) Error() string { return p.Type + ": " + p.Detail }

type identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type account struct {
	id          string
	key         crypto.PublicKey
	thumb       string
	fingerprint string
	status      string
	contact     []string
}

type order struct {
	id       string
	acct     string
	status   string
	expires  time.Time
	ident    identifier
	der      []byte // the TNAuthList of the identifier
	list     tnauth.List
	authz    string
	cert     string
	err      *problem
	notAfter time.Time
}

type authz struct {
	id      string
	order   string
	status  string
	expires time.Time
	chall   *challenge
}

type challenge struct {
	id        string
	authz     string
	status    string
	token     string
	validated time.Time
	err       *problem
}

type issuedCert struct {
	id    string
	acct  string
	chain []*x509.Certificate
}

// acmeCA is the STI-CA's ACME server (RFC 8555) for TNAuthList identifiers
// (RFC 9448) with the tkauth-01 challenge (RFC 9447).
type acmeCA struct {
	base     string // https://host:port, the ACME URLs' prefix
	paURL    string // the token authority named in challenges
	inter    *labpki.CA
	rogue    func() (*labpki.CA, error) // the untrusted fault's issuer
	paKey    func() *ecdsa.PublicKey    // the STI-PA whose tokens are accepted
	lifetime time.Duration
	now      func() time.Time
	fault    func() string
	log      *slog.Logger
	onIssue  func(*x509.Certificate)

	mu       sync.Mutex
	accounts map[string]*account
	byThumb  map[string]string
	orders   map[string]*order
	authzs   map[string]*authz
	challs   map[string]*challenge
	certs    map[string]*issuedCert
	revoked  []*x509.Certificate
	nonces   map[string]time.Time
	issued   int
}

func newACMECA() *acmeCA {
	return &acmeCA{accounts: map[string]*account{}, byThumb: map[string]string{}, orders: map[string]*order{},
		authzs: map[string]*authz{}, challs: map[string]*challenge{}, certs: map[string]*issuedCert{}, nonces: map[string]time.Time{}}
}

// Limits of the lab server.
const (
	maxRequest = 64 << 10
	nonceTTL   = 10 * time.Minute
	maxNonces  = 1 << 16
	orderTTL   = time.Hour
)

func randID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (ca *acmeCA) url(kind, id string) string { return ca.base + "/acme/" + kind + "/" + id }

// basePath is the path of base: the prefix a reverse proxy or a mux
// stripped before the request reached the handler.
func (ca *acmeCA) basePath() string {
	if u, err := url.Parse(ca.base); err == nil {
		return strings.TrimSuffix(u.Path, "/")
	}
	return ""
}

func (ca *acmeCA) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /acme/directory", ca.directory)
	mux.HandleFunc("HEAD /acme/new-nonce", ca.newNonce)
	mux.HandleFunc("GET /acme/new-nonce", ca.newNonce)
	mux.HandleFunc("POST /acme/new-account", ca.handle(true, ca.newAccount))
	mux.HandleFunc("POST /acme/acct/{id}", ca.handle(false, ca.account))
	mux.HandleFunc("POST /acme/new-order", ca.handle(false, ca.newOrder))
	mux.HandleFunc("POST /acme/order/{id}", ca.handle(false, ca.getOrder))
	mux.HandleFunc("POST /acme/authz/{id}", ca.handle(false, ca.getAuthz))
	mux.HandleFunc("POST /acme/chall/{id}", ca.handle(false, ca.respond))
	mux.HandleFunc("POST /acme/finalize/{id}", ca.handle(false, ca.finalize))
	mux.HandleFunc("POST /acme/cert/{id}", ca.handle(false, ca.getCert))
	mux.HandleFunc("POST /acme/revoke-cert", ca.handle(true, ca.revoke))
	mux.HandleFunc("POST /acme/key-change", ca.handle(false, ca.keyChange))
}

func (ca *acmeCA) directory(w http.ResponseWriter, r *http.Request) {
	if ca.down(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"newNonce":   ca.base + "/acme/new-nonce",
		"newAccount": ca.base + "/acme/new-account",
		"newOrder":   ca.base + "/acme/new-order",
		"revokeCert": ca.base + "/acme/revoke-cert",
		"keyChange":  ca.base + "/acme/key-change",
		"meta": map[string]any{
			"website":                 ca.base,
			"externalAccountRequired": false,
		},
	})
}

func (ca *acmeCA) down(w http.ResponseWriter) bool {
	if ca.fault() == FaultDown {
		writeProblem(w, prob(http.StatusServiceUnavailable, probServerInternal, "lab fault: STI-CA down"))
		return true
	}
	return false
}

func (ca *acmeCA) nonce() string {
	n := randID()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()
	if len(ca.nonces) >= maxNonces {
		for k, exp := range ca.nonces {
			if now.After(exp) || len(ca.nonces) >= maxNonces {
				delete(ca.nonces, k)
			}
		}
	}
	ca.nonces[n] = now.Add(nonceTTL)
	return n
}

func (ca *acmeCA) useNonce(n string) bool {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	exp, ok := ca.nonces[n]
	delete(ca.nonces, n)
	return ok && ca.now().Before(exp)
}

func (ca *acmeCA) newNonce(w http.ResponseWriter, r *http.Request) {
	if ca.down(w) {
		return
	}
	w.Header().Set("Replay-Nonce", ca.nonce())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Link", `<`+ca.base+`/acme/directory>;rel="index"`)
	if r.Method == http.MethodGet {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// request is an authenticated ACME POST.
type request struct {
	r       *http.Request
	hdr     protectedHeader
	key     crypto.PublicKey // the signing key
	acct    *account         // nil for jwk-signed requests
	payload []byte           // nil for POST-as-GET
}

// reply is a handler's answer: a JSON object (or raw bytes with a
// content type), a status, headers.
type reply struct {
	status   int
	body     any
	raw      []byte
	ctype    string
	location string
}

// handle authenticates a POST (RFC 8555 section 6.2-6.5): flattened JWS,
// a fresh nonce, the url header naming this resource, jwk (useJWK) or the
// kid of a known valid account, a good signature. Every answer carries a
// new Replay-Nonce.
func (ca *acmeCA) handle(useJWK bool, f func(*request) (*reply, *problem)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ca.down(w) {
			return
		}
		w.Header().Set("Replay-Nonce", ca.nonce())
		w.Header().Set("Link", `<`+ca.base+`/acme/directory>;rel="index"`)
		req, p := ca.authenticate(r, useJWK)
		var rep *reply
		if p == nil {
			rep, p = f(req)
		}
		if p != nil {
			if p.Status >= 500 || p.Type != "urn:ietf:params:acme:error:"+probBadNonce {
				ca.log.Info("lab-sti: ACME request refused", "path", r.URL.Path, "problem", p.Type, "detail", p.Detail)
			}
			writeProblem(w, p)
			return
		}
		if rep.location != "" {
			w.Header().Set("Location", rep.location)
		}
		if rep.raw != nil {
			w.Header().Set("Content-Type", rep.ctype)
			w.WriteHeader(rep.status)
			_, _ = w.Write(rep.raw)
			return
		}
		writeJSON(w, rep.status, rep.body)
	}
}

func (ca *acmeCA) authenticate(r *http.Request, useJWK bool) (*request, *problem) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/jose+json") {
		return nil, prob(http.StatusUnsupportedMediaType, probMalformed, "Content-Type %q, want application/jose+json", ct)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err != nil || len(body) > maxRequest {
		return nil, prob(http.StatusBadRequest, probMalformed, "request body unreadable or over %d bytes", maxRequest)
	}
	var m jwsMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "not a flattened JWS: %v", err)
	}
	ph, err := b64.DecodeString(m.Protected)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "protected header encoding")
	}
	req := &request{r: r}
	if err := json.Unmarshal(ph, &req.hdr); err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "protected header: %v", err)
	}
	switch req.hdr.Alg {
	case "ES256", "ES384", "RS256":
	default:
		p := prob(http.StatusBadRequest, probBadAlg, "alg %q", req.hdr.Alg)
		p.Algorithms = []string{"ES256", "ES384", "RS256"}
		return nil, p
	}
	if !ca.useNonce(req.hdr.Nonce) {
		return nil, prob(http.StatusBadRequest, probBadNonce, "unknown, used or expired nonce")
	}
	if u, err := url.Parse(req.hdr.URL); err != nil || u.Path != ca.basePath()+r.URL.Path {
		return nil, prob(http.StatusUnauthorized, probUnauthorized, "url header %q is not this resource", req.hdr.URL)
	}
	hasJWK, hasKID := len(req.hdr.JWK) > 0, req.hdr.KID != ""
	if hasJWK == hasKID {
		return nil, prob(http.StatusBadRequest, probMalformed, "give exactly one of jwk and kid")
	}
	if hasJWK != useJWK && r.URL.Path != "/acme/revoke-cert" {
		if useJWK {
			return nil, prob(http.StatusBadRequest, probMalformed, "this resource wants jwk")
		}
		return nil, prob(http.StatusBadRequest, probMalformed, "this resource wants kid")
	}
	if hasJWK {
		if req.key, err = parseJWK(req.hdr.JWK); err != nil {
			return nil, prob(http.StatusBadRequest, probMalformed, "%v", err)
		}
	} else {
		id, ok := strings.CutPrefix(req.hdr.KID, ca.base+"/acme/acct/")
		ca.mu.Lock()
		a := ca.accounts[id]
		ca.mu.Unlock()
		if !ok || a == nil {
			return nil, prob(http.StatusBadRequest, probNoAccount, "no account %q", req.hdr.KID)
		}
		if a.status != "valid" {
			return nil, prob(http.StatusUnauthorized, probUnauthorized, "account %s", a.status)
		}
		req.acct, req.key = a, a.key
	}
	sig, err := b64.DecodeString(m.Signature)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "signature encoding")
	}
	if err := verifyJWS(req.hdr.Alg, req.key, []byte(m.Protected+"."+m.Payload), sig); err != nil {
		if errors.Is(err, errBadAlg) {
			return nil, prob(http.StatusBadRequest, probBadAlg, "%v", err)
		}
		return nil, prob(http.StatusBadRequest, probMalformed, "%v", err)
	}
	if m.Payload != "" {
		if req.payload, err = b64.DecodeString(m.Payload); err != nil {
			return nil, prob(http.StatusBadRequest, probMalformed, "payload encoding")
		}
	}
	return req, nil
}

func decodePayload(req *request, v any) *problem {
	if req.payload == nil {
		return prob(http.StatusBadRequest, probMalformed, "empty payload")
	}
	if err := json.Unmarshal(req.payload, v); err != nil {
		return prob(http.StatusBadRequest, probMalformed, "payload: %v", err)
	}
	return nil
}

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

// revoke lists a certificate on the CRL: the request is signed by the
// account that ordered it or by the certificate's key (RFC 8555 section
// 7.6).
func (ca *acmeCA) revoke(req *request) (*reply, *problem) {
	var in struct {
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
	if p := decodePayload(req, &in); p != nil {
		return nil, p
	}
	if in.Reason != nil && (*in.Reason < 0 || *in.Reason > 10 || *in.Reason == 7) {
		return nil, prob(http.StatusBadRequest, probBadRevocationRs, "reason %d", *in.Reason)
	}
	der, err := b64.DecodeString(in.Certificate)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "certificate encoding")
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	var found *issuedCert
	for _, c := range ca.certs {
		if bytes.Equal(c.chain[0].Raw, der) {
			found = c
		}
	}
	if found == nil {
		return nil, prob(http.StatusNotFound, probMalformed, "not a certificate of this CA")
	}
	leaf := found.chain[0]
	switch {
	case req.acct != nil && req.acct.id == found.acct:
	case req.acct == nil && publicEqual(leaf.PublicKey, req.key):
	default:
		return nil, prob(http.StatusForbidden, probUnauthorized, "neither the ordering account nor the certificate's key")
	}
	for _, r := range ca.revoked {
		if r.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return nil, prob(http.StatusBadRequest, probAlreadyRevoked, "already revoked")
		}
	}
	ca.revoked = append(ca.revoked, leaf)
	ca.log.Info("lab-sti: certificate revoked", "serial", leaf.SerialNumber.Text(16))
	return &reply{status: http.StatusOK, raw: []byte{}, ctype: "text/plain"}, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	x, ok := a.(eq)
	return ok && x.Equal(b)
}

// keyChange rolls an account over to a new key (RFC 8555 section 7.3.5).
func (ca *acmeCA) keyChange(req *request) (*reply, *problem) {
	var inner jwsMessage
	if p := decodePayload(req, &inner); p != nil {
		return nil, p
	}
	ph, err := b64.DecodeString(inner.Protected)
	var h protectedHeader
	if err != nil || json.Unmarshal(ph, &h) != nil || len(h.JWK) == 0 || h.URL != req.hdr.URL || h.Nonce != "" {
		return nil, prob(http.StatusBadRequest, probMalformed, "inner JWS: want jwk, the same url, no nonce")
	}
	newKey, err := parseJWK(h.JWK)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "%v", err)
	}
	sig, err := b64.DecodeString(inner.Signature)
	if err != nil || verifyJWS(h.Alg, newKey, []byte(inner.Protected+"."+inner.Payload), sig) != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "inner JWS signature")
	}
	pl, err := b64.DecodeString(inner.Payload)
	var in struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if err != nil || json.Unmarshal(pl, &in) != nil || in.Account != req.hdr.KID {
		return nil, prob(http.StatusBadRequest, probMalformed, "inner payload: account")
	}
	old, err := parseJWK(in.OldKey)
	if err != nil || !publicEqual(old, req.acct.key) {
		return nil, prob(http.StatusBadRequest, probMalformed, "inner payload: oldKey is not the account key")
	}
	th, err := thumbprint(newKey)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "%v", err)
	}
	fp, err := spctoken.Fingerprint(newKey)
	if err != nil {
		return nil, prob(http.StatusBadRequest, probMalformed, "%v", err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if _, taken := ca.byThumb[th]; taken {
		return nil, prob(http.StatusConflict, probMalformed, "the new key belongs to an account")
	}
	delete(ca.byThumb, req.acct.thumb)
	req.acct.key, req.acct.thumb, req.acct.fingerprint = newKey, th, fp
	ca.byThumb[th] = req.acct.id
	return &reply{status: http.StatusOK, body: ca.accountJSON(req.acct), location: ca.url("acct", req.acct.id)}, nil
}

// crls returns the DER CRLs of the root and the intermediate.
func (ca *acmeCA) crl() ([]byte, error) {
	ca.mu.Lock()
	revoked := append([]*x509.Certificate(nil), ca.revoked...)
	ca.mu.Unlock()
	return ca.inter.CRL(revoked)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeProblem(w http.ResponseWriter, p *problem) {
	b, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_, _ = w.Write(b)
}
