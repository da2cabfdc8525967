package verify_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shakenline/shakenline/verify"
)

// FetchX5U applies the verifier's rules: http and loopback only when the
// config allows them, the size cap; the body comes back as served.
func TestFetchX5U(t *testing.T) {
	body := []byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 20<<10))
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	ctx := t.Context()
	if _, err := verify.FetchX5U(ctx, verify.Config{}, srv.URL+"/sp.pem"); !errors.Is(err, verify.ErrScheme) {
		t.Fatalf("http without AllowHTTP: %v", err)
	}
	if _, err := verify.FetchX5U(ctx, verify.Config{AllowHTTP: true}, srv.URL+"/sp.pem"); !errors.Is(err, verify.ErrForbiddenTarget) {
		t.Fatalf("loopback without AllowPrivate: %v", err)
	}
	lab := verify.Config{AllowHTTP: true, AllowPrivate: true}
	got, err := verify.FetchX5U(ctx, lab, srv.URL+"/sp.pem")
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := verify.FetchX5U(ctx, lab, srv.URL+"/big"); !errors.Is(err, verify.ErrTooLarge) {
		t.Fatalf("20 KiB body: %v", err)
	}
}
