package main

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shakenline/shakenline/verify"
)

// loadCerts reads a PEM file holding the provider certificate, optionally
// followed by its chain.
func loadCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	chain, err := verify.ParseChain(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return chain, nil
}

// checkCert enforces what the appliance promises at start: the signing key
// is the certificate's, and the certificate is valid now.
func checkCert(leaf *x509.Certificate, pub *ecdsa.PublicKey, now time.Time) error {
	cp, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !cp.Equal(pub) {
		return errors.New("the signing key does not match the certificate's public key")
	}
	return checkValidity(leaf, now)
}

// checkValidity refuses a certificate that is not valid at now.
func checkValidity(leaf *x509.Certificate, now time.Time) error {
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("the certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("the certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
