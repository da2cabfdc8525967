package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The Fetcher applies the verifier's rules: a loopback target needs
// AllowPrivate, http needs AllowHTTP; then it returns the chain.
func TestFetcherRules(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}))
	defer srv.Close()
	ctx := context.Background()
	if _, err := NewFetcher(Config{}).Chain(ctx, srv.URL); !errors.Is(err, ErrScheme) {
		t.Fatalf("http without AllowHTTP: %v", err)
	}
	if _, err := NewFetcher(Config{AllowHTTP: true}).Chain(ctx, srv.URL); !errors.Is(err, ErrForbiddenTarget) {
		t.Fatalf("loopback without AllowPrivate: %v", err)
	}
	chain, err := NewFetcher(Config{AllowHTTP: true, AllowPrivate: true}).Chain(ctx, srv.URL)
	if err != nil || len(chain) != 1 || chain[0].Subject.CommonName != "sp" {
		t.Fatalf("lab fetch: %v %v", chain, err)
	}
}
