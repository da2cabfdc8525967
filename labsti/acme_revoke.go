package labsti

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"net/http"

	"github.com/shakenline/shakenline/spctoken"
)

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
