package main

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/shakenline/shakenline/api"
	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/hsm"
)

// newAPI wires package api into the appliance: signing requests go through
// the SIP path's own signer chain (a.signer: same batching, breakers,
// budget and failover) and builder, attestation requests through the same
// policy holder.
//
// Without --api-token-file and without --lab the STIR and admin routes are
// not served (only /healthz, /readyz, /metrics, /status, with a warning), so an
// unauthenticated signing API is never exposed.
func newAPI(cfg config.Config, a *appliance, log *slog.Logger) (apiServer, error) {
	log = log.With("component", "api")
	if cfg.APITokenFile == "" && !cfg.Lab {
		log.Warn("no api_token_file: serving only /healthz, /readyz, /metrics and /status (STIR and admin routes need tokens)")
		return api.New(api.Config{Addr: cfg.API, MonitorOnly: true, Logger: log, Policy: a.policy,
			Ready: a.ready, Health: signerHealth(a), Status: a.status})
	}
	// TNs in API requests are E.164 as given: default_country does not
	// apply (docs/API.md, "Telephone numbers").
	var tokens *api.TokenSet
	var err error
	if cfg.APITokenFile != "" {
		if tokens, err = api.LoadTokens(cfg.APITokenFile); err != nil {
			return nil, err
		}
	}
	var signer hsm.Dispatcher
	if a.signer != nil {
		signer = a.signer
	}
	var s *api.Server
	s, err = api.New(api.Config{
		Addr: cfg.API, Builder: a.builder, Signer: signer, Policy: a.policy, Verifier: a.verifier,
		Tokens: tokens, Lab: cfg.Lab, Logger: log, Budget: cfg.SignBudget, Freshness: cfg.Freshness,
		CertFingerprint: audit.Fingerprint(a.certs[0]),
		Audit:           a.audit,
		Ready:           a.ready,
		Health:          signerHealth(a),
		Status:          a.status,
		// POST /admin/reload re-reads the token file itself and then runs
		// the appliance's reload (policy, trust stores), set by serve with
		// SetReload so that SIGHUP and the API share one path.
	})
	return s, err
}

// signerReady is the /readyz conditions: a real probe signature through
// the chain, and in inline mode the XDP program attached to every
// interface (its link still attached, not only attached at start) and its
// counters readable.
func signerReady(a *appliance) []api.Check {
	checks := []api.Check{api.SignerCheck(a.signer, time.Second)}
	if a.signer == nil {
		checks = []api.Check{api.SignerCheck(nil, time.Second)}
	}
	if st := a.steering; st != nil {
		checks = append(checks, api.Check{Name: "xdp", Fn: func() error {
			if _, err := st.Counters(); err != nil {
				return fmt.Errorf("XDP steering not readable: %w", err)
			}
			att := st.Attached()
			if len(att) != len(a.cfg.Ifaces) {
				return fmt.Errorf("XDP attached to %d of %d interfaces", len(att), len(a.cfg.Ifaces))
			}
			var off []string
			for name, ok := range att {
				if !ok {
					off = append(off, name)
				}
			}
			if len(off) > 0 {
				sort.Strings(off)
				return fmt.Errorf("XDP detached from %s: INVITEs there pass unsigned", strings.Join(off, ", "))
			}
			return nil
		}})
	}
	return checks
}

func signerHealth(a *appliance) func() any {
	if a.signer == nil {
		return nil
	}
	return func() any { return a.signer.Health() }
}
