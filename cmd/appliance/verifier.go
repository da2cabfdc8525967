package main

import (
	"context"
	"time"

	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/fastpath"
	"github.com/shakenline/shakenline/verify"
)

// newVerifier builds the STI-VS from the configuration, or nil when no trust
// store is configured (then terminating rules pass calls unverified).
func newVerifier(cfg config.Config) (*verify.Verifier, error) {
	if len(cfg.Trust) == 0 {
		return nil, nil
	}
	pools, err := verify.LoadTrust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	return verify.New(verify.Config{Trust: pools, Freshness: cfg.Freshness, AllowHTTP: cfg.Lab, AllowPrivate: cfg.Lab,
		CacheDir: cfg.X5UCacheDir, PreloadFile: cfg.X5UPreload, CRLFailClosed: cfg.CRLFailClosed})
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
	out := fastpath.VerifyResult{Verstat: r.Verstat, Code: r.Code, Reason: r.Reason}
	if d := r.RCD; d != nil { // Rich Call Data that verified (docs/STANDARDS.md, "rcd")
		out.Name, out.Icon, out.JCard, out.CRN = d.Name, d.Icon, d.JCard, d.CRN
	}
	return out
}
