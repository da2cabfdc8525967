package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
)

// buildSigner opens the signer chain of cfg (signers:, or the one --key or
// --pkcs11 names), after checking that the certificate is valid now. hsm.New
// checks that every link's key is the certificate's (the FCC own-certificate
// rule: a fallback signs with the provider's own key too, see docs/KEYS.md).
//
// The returned close stops the chain, then the software signers it was
// given (their nonce pools are wiped).
func buildSigner(ctx context.Context, cfg config.Config, leaf *x509.Certificate, now time.Time, log *slog.Logger) (*hsm.Chain, func(), error) {
	if err := checkValidity(leaf, now); err != nil {
		return nil, nil, fmt.Errorf("cert %s: %w", cfg.Cert, err)
	}
	var soft []*hsm.Software
	closeSoft := func() {
		for _, s := range soft {
			_ = s.Close()
		}
	}
	links := cfg.Signers
	switch {
	case len(links) > 0:
	case cfg.PKCS11 != "":
		links = []config.Signer{{PKCS11: cfg.PKCS11}}
	default:
		links = []config.Signer{{Key: cfg.Key}}
	}
	hc := hsm.Config{Budget: cfg.SignBudget}
	for i, l := range links {
		sc := hsm.SignerConfig{Name: l.Name, PKCS11: l.PKCS11, Timeout: l.Timeout, Workers: l.Workers}
		if l.Key != "" {
			key, err := credential.ReadKeyFile(l.Key)
			if err != nil {
				closeSoft()
				return nil, nil, fmt.Errorf("signer %d: key: %w", i+1, err)
			}
			name := l.Name
			if name == "" {
				name = "soft"
			}
			sw, err := hsm.NewSoftware(name, key)
			if err != nil {
				closeSoft()
				return nil, nil, fmt.Errorf("signer %d: %w", i+1, err)
			}
			soft = append(soft, sw)
			sc.Signer = sw
		}
		hc.Signers = append(hc.Signers, sc)
	}
	chain, err := hsm.New(ctx, hc, leaf)
	if err != nil {
		closeSoft()
		return nil, nil, err
	}
	for _, h := range chain.Health() {
		log.Info("signer ready", "name", h.Name, "state", h.State, "sessions", h.Sessions)
	}
	return chain, func() { _ = chain.Close(); closeSoft() }, nil
}
