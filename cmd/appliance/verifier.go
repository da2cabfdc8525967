package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/fastpath"
	"github.com/shakenline/shakenline/verify"
)

// loadTrust reads the named trust stores (name -> PEM bundle of anchors).
func loadTrust(stores map[string]string) (map[string]*x509.CertPool, error) {
	out := map[string]*x509.CertPool{}
	for name, file := range stores {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("trust %s: %w", name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("trust %s: no certificate in %s", name, file)
		}
		out[name] = pool
	}
	return out, nil
}

// newVerifier builds the STI-VS from the configuration, or nil when no trust
// store is configured (then terminating rules pass calls unverified).
func newVerifier(cfg config.Config) (*verify.Verifier, error) {
	if len(cfg.Trust) == 0 {
		return nil, nil
	}
	pools, err := loadTrust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	return verify.New(verify.Config{Trust: pools, Freshness: cfg.Freshness, AllowHTTP: cfg.Lab, AllowPrivate: cfg.Lab})
}

// sipVerifier adapts verify.Verifier to the fast path's Verifier.
type sipVerifier struct{ v *verify.Verifier }

func (s sipVerifier) Verify(ctx context.Context, ids [][]byte, orig, dest []byte, now time.Time) fastpath.VerifyResult {
	in := verify.Input{OrigTN: string(orig), Time: now, Identity: make([]string, 0, len(ids))}
	if len(dest) > 0 {
		in.DestTNs = []string{string(dest)}
	}
	for _, id := range ids {
		in.Identity = append(in.Identity, string(id))
	}
	r := s.v.Verify(ctx, in)
	return fastpath.VerifyResult{Verstat: r.Verstat, Code: r.Code, Reason: r.Reason}
}
