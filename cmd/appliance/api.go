package main

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shakenline/shakenline/api"
	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
)

// newAPI wires package api into the appliance: signing requests go through
// the SIP path's own credential (a.cred: the same signer chain, batching,
// breakers, budget and failover, and the same x5u, followed across
// renewals), attestation requests through the same policy holder.
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
	var s *api.Server
	s, err = api.New(api.Config{
		Addr: cfg.API, Credential: a.cred, Policy: a.policy, Verifier: a.verifier,
		Tokens: tokens, Lab: cfg.Lab, Logger: log, Budget: cfg.SignBudget, Freshness: cfg.Freshness,
		Audit:  a.audit,
		Ready:  a.ready,
		Health: signerHealth(a),
		Status: a.status,
		// POST /admin/reload re-reads the token file itself and then runs
		// the appliance's reload (policy, trust stores), set by serve with
		// SetReload so that SIGHUP and the API share one path.
	})
	return s, err
}

// signerReady is the /readyz conditions: a real probe signature through
// the chain in use, the certificate in use not expired (nor about to be,
// with acme:), and in inline mode the XDP program attached to every
// interface (its link still attached, not only attached at start) and its
// counters readable.
func signerReady(a *appliance) []api.Check {
	var before time.Duration
	if a.cfg.ACME != nil {
		before = a.cfg.ACME.UnreadyBefore
	}
	checks := []api.Check{
		{Name: "signer", Fn: followingSignerCheck(a.cred)},
		{Name: "certificate", Fn: certificateCheck(a.cred, before, a.cfg.ACME != nil)},
	}
	// A next hop reached over TCP or TLS that refuses our connections.
	if fp := a.fp; fp != nil {
		checks = append(checks, api.Check{Name: "next-hop", Fn: fp.NextHopReady})
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

// followingSignerCheck is api.SignerCheck (a probe signature, a success
// remembered briefly) on the signer of the credential in use: a renewal
// gets a fresh check of the new chain.
func followingSignerCheck(h *credential.Holder) func() error {
	var mu sync.Mutex
	var cur hsm.Dispatcher
	var check api.Check
	return func() error {
		var d hsm.Dispatcher
		if c := h.Load(); c != nil && c.Signer != nil {
			d = c.Signer
		}
		mu.Lock()
		if check.Fn == nil || d != cur {
			cur, check = d, api.SignerCheck(d, time.Second)
		}
		f := check.Fn
		mu.Unlock()
		return f()
	}
}

func signerHealth(a *appliance) func() any {
	return func() any {
		if c := a.chain(); c != nil {
			return c.Health()
		}
		return nil
	}
}
