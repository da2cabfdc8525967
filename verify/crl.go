package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// crlCache holds the CRLs named by the distribution points of verified
// chains, keyed by URL. Entries are immutable and replaced whole; every
// replacement bumps gen, which makes cached trust decisions recompute.
type crlCache struct {
	v     *Verifier
	gen   atomic.Uint64
	group singleflight.Group

	mu sync.Mutex
	m  map[string]*crlEntry
}

type crlEntry struct {
	url     string
	list    *x509.RevocationList // nil until one fetch succeeded
	revoked map[string]time.Time // serial (big-endian bytes) -> revocation time
	fetched time.Time            // last successful fetch
	next    time.Time            // when the refresher fetches again
	err     error                // last fetch error, nil after a success
}

func newCRLCache(v *Verifier) *crlCache {
	c := &crlCache{v: v, m: map[string]*crlEntry{}}
	c.gen.Store(1)
	return c
}

// ParseCRL decodes a CRL in DER or PEM ("X509 CRL") form. It checks the
// encoding only; signature, issuer and freshness are checked against the
// certificate's issuer when the CRL is used.
func ParseCRL(b []byte) (*x509.RevocationList, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: PEM block %q", ErrCRL, blk.Type)
		}
		b = blk.Bytes
	}
	l, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCRL, err)
	}
	return l, nil
}

// lookup returns the cached entry for u, fetching it once (collapsed with
// concurrent callers) when it was never fetched.
func (c *crlCache) lookup(ctx context.Context, u string) *crlEntry {
	c.mu.Lock()
	e := c.m[u]
	c.mu.Unlock()
	if e != nil {
		return e
	}
	return c.fetch(ctx, u)
}

// fetch downloads u now and stores the result (success or failure).
func (c *crlCache) fetch(ctx context.Context, u string) *crlEntry {
	v := c.v
	ch := c.group.DoChan(u, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(ctx), crlRequest{}, true), v.cfg.FetchTimeout)
		defer cancel()
		v.stats.crlFetches.Add(1)
		mCRLFetches.Inc()
		list, err := c.download(fctx, u)
		now := v.cfg.Now()
		c.mu.Lock()
		defer c.mu.Unlock()
		old := c.m[u]
		e := &crlEntry{url: u}
		if err != nil {
			v.stats.crlFetchFailures.Add(1)
			mCRLFetchFailures.Inc()
			if old != nil { // keep what we had: its revocations still hold
				e.list, e.revoked, e.fetched = old.list, old.revoked, old.fetched
			}
			e.err, e.next = err, now.Add(v.cfg.CRLRetry)
		} else {
			e.list, e.fetched = list, now
			e.revoked = make(map[string]time.Time, len(list.RevokedCertificateEntries))
			for _, r := range list.RevokedCertificateEntries {
				if r.SerialNumber != nil {
					e.revoked[string(r.SerialNumber.Bytes())] = r.RevocationTime
				}
			}
			e.next = now.Add(v.cfg.CRLRefresh)
			if !list.NextUpdate.IsZero() && list.NextUpdate.Before(e.next) {
				e.next = list.NextUpdate
			}
			if !e.next.After(now) {
				e.next = now.Add(v.cfg.CRLRetry)
			}
		}
		if old == nil && len(c.m) >= v.cfg.CRLCacheSize {
			c.evictOldest()
		}
		c.m[u] = e
		c.gen.Add(1)
		return e, nil
	})
	select {
	case r := <-ch:
		return r.Val.(*crlEntry)
	case <-ctx.Done():
		return &crlEntry{url: u, err: fmt.Errorf("%w: %w", ErrFetch, ctx.Err())}
	}
}

func (c *crlCache) evictOldest() {
	var victim *crlEntry
	for _, e := range c.m {
		if victim == nil || e.next.Before(victim.next) {
			victim = e
		}
	}
	if victim != nil {
		delete(c.m, victim.url)
	}
}

func (c *crlCache) download(ctx context.Context, u string) (*x509.RevocationList, error) {
	body, _, err := c.v.fetcher.download(ctx, u, c.v.cfg.MaxCRLBytes, "application/pkix-crl")
	if err != nil {
		return nil, err
	}
	return ParseCRL(body)
}

// check looks up the revocation status of every certificate of chain but
// the anchor. It returns when the verdict must be recomputed (the earliest
// NextUpdate used), whether some CRL was missing and tolerated (fail-open),
// and ErrRevoked or, when failing closed, ErrCRLUnavailable.
func (c *crlCache) check(ctx context.Context, chain []*x509.Certificate, at time.Time) (time.Time, bool, error) {
	until, failOpen := forever, false
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		if len(cert.CRLDistributionPoints) == 0 {
			continue // nothing to check (ATIS-1000080 asks for a CDP; not enforced)
		}
		role := "leaf"
		if i > 0 {
			role = "intermediate"
		}
		next, err := c.status(ctx, cert, issuer, at)
		switch {
		case errors.Is(err, ErrRevoked):
			return forever, false, fmt.Errorf("%w: %s %q serial %X", err, role, cert.Subject.CommonName, cert.SerialNumber)
		case err != nil && c.v.cfg.CRLFailClosed:
			return forever, false, fmt.Errorf("%w: %s %q: %w", ErrCRLUnavailable, role, cert.Subject.CommonName, err)
		case err != nil:
			failOpen = true
		case next.Before(until):
			until = next
		}
	}
	return until, failOpen, nil
}

// status checks cert against the CRLs at its distribution points (any one
// current and valid CRL decides). It returns the CRL's NextUpdate, an error
// wrapping ErrRevoked, or why no CRL could be used.
func (c *crlCache) status(ctx context.Context, cert, issuer *x509.Certificate, at time.Time) (time.Time, error) {
	serial := string(cert.SerialNumber.Bytes())
	var why error
	for _, u := range cert.CRLDistributionPoints {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") {
			why = fmt.Errorf("%w: unsupported distribution point %q", ErrCRL, u)
			continue
		}
		e := c.lookup(ctx, u)
		if e.list == nil {
			why = e.err
			continue
		}
		if err := validCRL(e.list, issuer); err != nil {
			why = fmt.Errorf("%s: %w", u, err)
			continue
		}
		if t, ok := e.revoked[serial]; ok {
			// A revocation holds even when the CRL is stale.
			return forever, fmt.Errorf("%w at %s (CRL %s)", ErrRevoked, t.UTC().Format(time.RFC3339), u)
		}
		if !e.list.NextUpdate.IsZero() && !at.Before(e.list.NextUpdate) {
			why = fmt.Errorf("%w: %s is stale (nextUpdate %s)", ErrCRL, u, e.list.NextUpdate.UTC().Format(time.RFC3339))
			continue
		}
		if at.Before(e.list.ThisUpdate.Add(-5 * time.Minute)) {
			why = fmt.Errorf("%w: %s thisUpdate %s is in the future", ErrCRL, u, e.list.ThisUpdate.UTC().Format(time.RFC3339))
			continue
		}
		next := e.list.NextUpdate
		if next.IsZero() {
			next = forever
		}
		return next, nil
	}
	if why == nil {
		why = ErrCRL
	}
	return time.Time{}, why
}

// validCRL checks that issuer issued and signed l.
func validCRL(l *x509.RevocationList, issuer *x509.Certificate) error {
	if !bytes.Equal(l.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("%w: issuer is not %q", ErrCRL, issuer.Subject.CommonName)
	}
	if len(l.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(l.AuthorityKeyId, issuer.SubjectKeyId) {
		return fmt.Errorf("%w: authority key identifier differs", ErrCRL)
	}
	if err := l.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%w: %w", ErrCRL, err)
	}
	return nil
}

// refreshDue refetches the CRLs whose refresh time has come (all of them
// when all is set) and returns the failures.
func (c *crlCache) refreshDue(ctx context.Context, all bool) error {
	now := c.v.cfg.Now()
	var due []string
	c.mu.Lock()
	for u, e := range c.m {
		if all || !now.Before(e.next) {
			due = append(due, u)
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, u := range due {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e := c.fetch(ctx, u); e.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, e.err))
		}
	}
	return errors.Join(errs...)
}

// RefreshCRLs fetches every known CRL now (for an operator's reload; the
// background refresher does the same on schedule). A CRL that fails keeps
// its previous content. The error joins the failures.
func (v *Verifier) RefreshCRLs(ctx context.Context) error {
	return v.crls.refreshDue(ctx, true)
}

// CRLs returns the URLs of the cached CRLs, for status pages and tests.
func (v *Verifier) CRLs() []string {
	v.crls.mu.Lock()
	defer v.crls.mu.Unlock()
	out := make([]string, 0, len(v.crls.m))
	for u := range v.crls.m {
		out = append(out, u)
	}
	return out
}

func (v *Verifier) crlRefreshLoop() {
	defer v.wg.Done()
	t := time.NewTicker(v.cfg.CRLRetry)
	defer t.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-t.C:
			_ = v.crls.refreshDue(v.ctx, false) // failures are counted and retried
		}
	}
}
