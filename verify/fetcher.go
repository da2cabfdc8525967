package verify

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"time"
)

// Fetcher downloads a certificate chain from an x5u URL through the same
// hardened client a Verifier uses (checkScheme, control, checkRedirect:
// https only unless Config.AllowHTTP, no loopback, private or other
// non-public target unless Config.AllowPrivate, Config.MaxCertBytes,
// Config.FetchTimeout, Config.MaxRedirects, Config.TLSRootCAs), without a
// cache or a trust decision. The signing side uses it to read the
// certificate a remote STI-AS signs with (package stias).
type Fetcher struct {
	f *fetcher
}

// NewFetcher returns a Fetcher for cfg's fetch settings, defaults filled as
// New fills them; the other fields are ignored.
func NewFetcher(cfg Config) *Fetcher {
	c := Config{AllowHTTP: cfg.AllowHTTP, AllowPrivate: cfg.AllowPrivate, FetchTimeout: cfg.FetchTimeout,
		MaxCertBytes: cfg.MaxCertBytes, MaxRedirects: cfg.MaxRedirects, TLSRootCAs: cfg.TLSRootCAs}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = 3 * time.Second
	}
	if c.MaxCertBytes <= 0 {
		c.MaxCertBytes = 16 << 10
	}
	if c.MaxRedirects == 0 {
		c.MaxRedirects = 3
	}
	return &Fetcher{f: newFetcher(&c)}
}

// Chain fetches and parses the chain at x5u, leaf first.
func (f *Fetcher) Chain(ctx context.Context, x5u string) ([]*x509.Certificate, error) {
	u, err := url.Parse(x5u)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScheme, err)
	}
	if err := f.f.checkScheme(u, false); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.f.cfg.FetchTimeout)
	defer cancel()
	chain, _, err := f.f.fetch(ctx, x5u)
	return chain, err
}
