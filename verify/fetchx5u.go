package verify

import (
	"context"
	"time"
)

// FetchX5U downloads what is published at x5u through the same hardened
// client the verifier uses for x5u (Config's AllowHTTP, AllowPrivate,
// FetchTimeout, MaxCertBytes, MaxRedirects and TLSRootCAs, with New's
// defaults; no proxy; the address filter after DNS) and returns the body as
// served, uncached. A publisher uses it to see its own certificate the way
// every verifier will (certmgr checks a renewed certificate this way before
// signing with it).
func FetchX5U(ctx context.Context, cfg Config, x5u string) ([]byte, error) {
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 3 * time.Second
	}
	if cfg.MaxCertBytes <= 0 {
		cfg.MaxCertBytes = 16 << 10
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = 3
	}
	f := newFetcher(&cfg)
	defer f.client.CloseIdleConnections()
	body, _, err := f.download(ctx, x5u, cfg.MaxCertBytes, "application/pem-certificate-chain, application/pkix-cert;q=0.5")
	return body, err
}
