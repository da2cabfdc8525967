package labsti

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzParseJWK: any jwk is refused with an error or parsed into a key
// whose thumbprint can be taken.
func FuzzParseJWK(f *testing.F) {
	f.Add(`{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`)
	f.Add(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`)
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parseJWK([]byte(s))
		if err != nil {
			return
		}
		if _, err := thumbprint(k); err != nil {
			t.Fatalf("parsed key without thumbprint: %v", err)
		}
	})
}

// FuzzACMEPost: any body POSTed to any ACME resource is answered (a
// problem document, never a panic) and creates no account or order.
func FuzzACMEPost(f *testing.F) {
	s, err := New(Config{Dir: f.TempDir(), Listen: "127.0.0.1:1", CRLListen: "127.0.0.1:2",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Add("new-account", `{"protected":"eyJhbGciOiJFUzI1NiJ9","payload":"","signature":""}`)
	f.Add("new-order", `{"protected":"","payload":"e30","signature":"AA"}`)
	f.Add("chall/x", `{}`)
	f.Fuzz(func(t *testing.T, path, body string) {
		if strings.ContainsAny(path, " ?#%") || strings.ContainsFunc(path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return
		}
		req := httptest.NewRequest(http.MethodPost, "/acme/"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/jose+json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 200 && rec.Code < 300 {
			t.Fatalf("%s accepted with %d: %s", path, rec.Code, rec.Body.String())
		}
		s.ca.mu.Lock()
		n := len(s.ca.accounts) + len(s.ca.orders)
		s.ca.mu.Unlock()
		if n != 0 {
			t.Fatal("state created by an unauthenticated request")
		}
	})
}
