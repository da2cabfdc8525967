package verify

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"time"
)

// trustSnap is an immutable set of named trust stores. Verify loads the
// current one with one atomic load; SetTrust swaps in a new one.
type trustSnap struct {
	gen    uint64
	names  []string // sorted
	stores map[string]*x509.CertPool
}

func newTrustSnap(trust map[string]*x509.CertPool, gen uint64) (*trustSnap, error) {
	if len(trust) == 0 {
		return nil, ErrNoTrust
	}
	s := &trustSnap{gen: gen, stores: make(map[string]*x509.CertPool, len(trust))}
	for name, pool := range trust {
		if pool == nil {
			return nil, fmt.Errorf("%w: store %q is nil", ErrNoTrust, name)
		}
		s.names = append(s.names, name)
		s.stores[name] = pool
	}
	slices.Sort(s.names)
	return s, nil
}

// SetTrust replaces the trust stores. Verifications that already loaded
// the old stores finish with them; every later one uses the new stores,
// and cached chain decisions are recomputed against them on first use.
// The map is copied; the pools must not be modified afterwards. An empty
// map or a nil pool is refused and the old stores stay.
func (v *Verifier) SetTrust(trust map[string]*x509.CertPool) error {
	v.trustMu.Lock()
	defer v.trustMu.Unlock()
	snap, err := newTrustSnap(trust, v.trust.Load().gen+1)
	if err != nil {
		return err
	}
	v.trust.Store(snap)
	return nil
}

// TrustStores returns the names of the current trust stores, sorted.
func (v *Verifier) TrustStores() []string {
	return slices.Clone(v.trust.Load().names)
}

// LoadTrust reads named trust stores, each a PEM file of trust anchors
// (CERTIFICATE blocks; other blocks are skipped), for Config.Trust and
// SetTrust. A file that cannot be read, holds an unparsable certificate or
// no certificate at all is an error naming the store.
func LoadTrust(stores map[string]string) (map[string]*x509.CertPool, error) {
	if len(stores) == 0 {
		return nil, ErrNoTrust
	}
	out := make(map[string]*x509.CertPool, len(stores))
	for name, file := range stores {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%w: store %q: %w", ErrTrustFile, name, err)
		}
		pool, n, err := parseTrustPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%w: store %q (%s): %w", ErrTrustFile, name, file, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("%w: store %q (%s): no certificate", ErrTrustFile, name, file)
		}
		out[name] = pool
	}
	return out, nil
}

func parseTrustPEM(b []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return pool, n, nil
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, 0, err
		}
		pool.AddCert(c)
		n++
	}
}

// decision is a cached, immutable trust verdict for one entry, valid while
// the trust snapshot and the CRL generation are unchanged and before until.
type decision struct {
	trustGen, crlGen uint64
	until            time.Time // recompute at or after (a CRL's NextUpdate)
	store            string
	nb, na           time.Time // every certificate of the chain valid in [nb, na]
	err              error     // ErrUntrusted, ErrRevoked or ErrCRLUnavailable
	untrusted        bool      // err is a chain error: retry at iat
	failOpen         bool      // some CRL was missing and Config allows that
}

var forever = time.Unix(1<<40, 0)

// trusted returns the store that anchors e's chain with every certificate
// valid at iat and none revoked. The hot path is two atomic loads and the
// comparisons; a changed snapshot, CRL set or an expired CRL recomputes.
func (v *Verifier) trusted(ctx context.Context, e *entry, iat, now time.Time) (string, error) {
	snap := v.trust.Load()
	cg := v.crls.gen.Load()
	d := e.dec.Load()
	if d == nil || d.trustGen != snap.gen || d.crlGen != cg || !now.Before(d.until) {
		d = v.decide(ctx, e, snap, cg, now)
		e.dec.Store(d)
	}
	if d.err == nil && !iat.Before(d.nb) && !iat.After(d.na) {
		if d.failOpen {
			v.stats.crlFailOpen.Add(1)
			mCRLFailOpen.Inc()
		}
		return d.store, nil
	}
	if d.err != nil && !d.untrusted {
		return "", d.err
	}
	// The chain did not verify now, or iat lies outside the window in
	// which it does: verify at iat (uncached, rare).
	d = v.decide(ctx, e, snap, cg, iat)
	if d.err != nil {
		return "", d.err
	}
	if d.failOpen {
		v.stats.crlFailOpen.Add(1)
		mCRLFailOpen.Inc()
	}
	return d.store, nil
}

// decide verifies e's chain at time at against snap and checks the CRLs
// of every certificate below the anchor.
func (v *Verifier) decide(ctx context.Context, e *entry, snap *trustSnap, cg uint64, at time.Time) *decision {
	d := &decision{trustGen: snap.gen, crlGen: cg, until: forever}
	store, chains, err := verifyChain(snap, e, at)
	if err != nil {
		d.err, d.untrusted = fmt.Errorf("%w: %w", ErrUntrusted, err), true
		return d
	}
	d.store, d.nb, d.na = store, time.Time{}, forever
	for _, c := range chains[0] {
		if c.NotBefore.After(d.nb) {
			d.nb = c.NotBefore
		}
		if c.NotAfter.Before(d.na) {
			d.na = c.NotAfter
		}
	}
	if !v.cfg.DisableCRL {
		d.until, d.failOpen, d.err = v.crls.check(ctx, chains[0], at)
	}
	return d
}

func verifyChain(snap *trustSnap, e *entry, at time.Time) (string, [][]*x509.Certificate, error) {
	var firstErr error
	for _, name := range snap.names {
		chains, err := e.chain[0].Verify(x509.VerifyOptions{
			Roots:         snap.stores[name],
			Intermediates: e.inter,
			CurrentTime:   at,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err == nil {
			return name, chains, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return "", nil, firstErr
}
