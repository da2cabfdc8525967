package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/rcd"
)

// divChain follows div PASSporTs from the shaken PASSporT sh to the
// called number, link by link (RFC 8946 section 4): each div has sh's
// orig, its div claim is a dest the previous link reached, and it passes
// every check of a PASSporT (x5u, trust store at iat, TNAuthList covering
// its div number, signature, freshness, replay). At most MaxDivChain links.
func (v *Verifier) divChain(ctx context.Context, sh *passport.Identity, divs []*passport.Identity, in Input, now time.Time) (int, error) {
	reached := sh.Payload.Dest.TN
	used := make([]bool, len(divs))
	var lastErr error
	for n := 1; n <= MaxDivChain; n++ {
		next := -1
		for i, d := range divs {
			if used[i] || canon(d.Payload.Orig.TN) != canon(sh.Payload.Orig.TN) {
				continue
			}
			div, ok := divClaim(d)
			if !ok || !destMatch(reached, []string{div}) {
				continue
			}
			used[i] = true
			r := v.check(ctx, d, in, now, div)
			countPassport(passport.PPTDiv, r.Verstat == Passed)
			if r.Verstat != Passed {
				lastErr = fmt.Errorf("div PASSporT %d: %w", i+1, r.Err)
				continue
			}
			next = i
			break
		}
		if next < 0 {
			if lastErr != nil {
				return 0, fmt.Errorf("%w: %w", ErrDivChain, lastErr)
			}
			return 0, ErrDivChain
		}
		reached = divs[next].Payload.Dest.TN
		if destMatch(reached, in.DestTNs) {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: longer than %d", ErrDivChain, MaxDivChain)
}

// divClaim is the tn of a div PASSporT's div claim.
func divClaim(d *passport.Identity) (string, bool) {
	var c struct {
		TN string `json:"tn"`
	}
	if json.Unmarshal(d.Payload.Div, &c) != nil || c.TN == "" {
		return "", false
	}
	return c.TN, true
}

// richCallData checks the Rich Call Data of a call whose shaken PASSporT
// sh passed: the rcd claims in sh (ATIS-1000094), else those of an rcd
// PASSporT with sh's orig that passes every check. What verified goes in
// r.RCD; a failure only in r.RCDErr (never the call's verstat).
func (v *Verifier) richCallData(ctx context.Context, r *Result, sh *passport.Identity, rcds []*passport.Identity, in Input, now time.Time) {
	p := &sh.Payload
	if len(p.RCD) == 0 {
		for _, id := range rcds {
			if canon(id.Payload.Orig.TN) != canon(p.Orig.TN) {
				continue
			}
			rr := v.check(ctx, id, in, now, id.Payload.Orig.TN)
			countPassport(passport.PPTRCD, rr.Verstat == Passed)
			if rr.Verstat != Passed {
				r.RCDErr = fmt.Errorf("%w: rcd PASSporT: %w", rcd.ErrClaims, rr.Err)
				continue
			}
			if len(in.DestTNs) > 0 && !destMatch(id.Payload.Dest.TN, in.DestTNs) && !destMatch(id.Payload.Dest.TN, p.Dest.TN) {
				r.RCDErr = fmt.Errorf("%w: rcd PASSporT: %w", rcd.ErrClaims, ErrDestMismatch)
				continue
			}
			p = &id.Payload
			r.RCDErr = nil
			break
		}
		if len(p.RCD) == 0 {
			if r.RCDErr != nil {
				countRCD(r.RCDErr)
			}
			return
		}
	}
	d, err := rcd.Check(ctx, p.RCD, p.RCDI, p.CRN, v.content)
	if err != nil {
		r.RCDErr = err
		countRCD(err)
		return
	}
	r.RCD = &d
	countRCD(nil)
}
