package main

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"

	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/hsm"
)

// buildChain opens a PKCS#11 signer chain. Wired to package hsm's chain.
func buildChain(ctx context.Context, cfg config.Config, leaf *x509.Certificate, now time.Time, log *slog.Logger) (hsm.Dispatcher, string, func(), error) {
	return nil, "", nil, errors.New("pkcs11 signers are not wired yet")
}
