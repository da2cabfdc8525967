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
