package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/shakenline/shakenline/api"
	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/verify"
)

// newAPI wires package api into the appliance: signing requests go through
// the SIP path's own signer chain (a.signer: same batching, breakers,
// budget and failover) and builder, attestation requests through the same
// policy holder.
//
// Without --api-token-file and without --lab the STIR and admin routes are
// not served (only /healthz, /readyz, /metrics, with a warning), so an
// unauthenticated signing API is never exposed.
func newAPI(cfg config.Config, a *appliance, log *slog.Logger) (apiServer, error) {
	log = log.With("component", "api")
	if cfg.APITokenFile == "" && !cfg.Lab {
		log.Warn("no api_token_file: serving only /healthz, /readyz and /metrics (STIR and admin routes need tokens)")
		return api.New(api.Config{Addr: cfg.API, MonitorOnly: true, Logger: log, Policy: a.policy,
			Ready: signerReady(a), Health: signerHealth(a)})
	}
	numbers, err := e164.New(cfg.DefaultCountry)
	if err != nil {
		return nil, fmt.Errorf("api: default-country: %w", err)
	}
	var tokens *api.TokenSet
	if cfg.APITokenFile != "" {
		if tokens, err = api.LoadTokens(cfg.APITokenFile); err != nil {
			return nil, err
		}
	}
	verifier, err := apiVerifier(cfg)
	if err != nil {
		return nil, err
	}
	var signer hsm.Dispatcher
	if a.signer != nil {
		signer = a.signer
	}
	var s *api.Server
	s, err = api.New(api.Config{
		Addr: cfg.API, Builder: a.builder, Signer: signer, Policy: a.policy, Numbers: numbers, Verifier: verifier,
		Tokens: tokens, Lab: cfg.Lab, Logger: log, Budget: cfg.SignBudget, Freshness: cfg.Freshness,
		CertFingerprint: audit.Fingerprint(a.certs[0]),
		Ready:           signerReady(a),
		Health:          signerHealth(a),
		// POST /admin/reload: the server re-reads the token file itself;
		// here the trust stores are re-read into a new verifier, installed
		// only when every store loads. The policy is reloaded by SIGHUP.
		Reload: func() error {
			v, err := apiVerifier(a.cfg)
			if err != nil {
				return err
			}
			s.SetVerifier(v)
			return nil
		},
	})
	return s, err
}

// signerReady is the /readyz signer condition: a real probe signature
// through the chain.
func signerReady(a *appliance) []api.Check {
	if a.signer == nil {
		return []api.Check{api.SignerCheck(nil, time.Second)}
	}
	return []api.Check{api.SignerCheck(a.signer, time.Second)}
}

func signerHealth(a *appliance) func() any {
	if a.signer == nil {
		return nil
	}
	return func() any { return a.signer.Health() }
}

// apiVerifier builds the verification service from the trust stores; nil
// when none is configured.
func apiVerifier(cfg config.Config) (*verify.Verifier, error) {
	if len(cfg.Trust) == 0 {
		return nil, nil
	}
	vc := verify.Config{Trust: map[string]*x509.CertPool{}, Freshness: cfg.Freshness, AllowHTTP: cfg.Lab, AllowPrivate: cfg.Lab}
	for name, file := range cfg.Trust {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("api: trust %s: %w", name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("api: trust %s: no certificate in %s", name, file)
		}
		vc.Trust[name] = pool
	}
	return verify.New(vc)
}
