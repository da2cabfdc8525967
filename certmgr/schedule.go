package certmgr

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/shakenline/shakenline/credential"
)

// renewBefore is how long before expiry leaf is renewed.
func (m *Manager) renewBefore(leaf *x509.Certificate) time.Duration {
	if m.cfg.RenewBefore > 0 {
		return m.cfg.RenewBefore
	}
	return leaf.NotAfter.Sub(leaf.NotBefore) / 3
}

// backoff is the wait after the n-th consecutive failure (n >= 1; 0 is
// the first attempt of Obtain): RetryMin doubling, at most RetryMax and a
// tenth of the current certificate's lifetime.
func (m *Manager) backoff(lifetime time.Duration) time.Duration {
	m.mu.Lock()
	n := m.failures
	m.mu.Unlock()
	d := m.cfg.RetryMin
	for i := 1; i < n && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, m.cfg.RetryMax)
	if lifetime > 0 {
		d = min(d, max(lifetime/10, time.Second))
	}
	return max(d, time.Second/10)
}

// Renew runs one attempt now and switches h to the new credential when it
// succeeds (admin and tests; Run calls it when renewal is due).
func (m *Manager) Renew(ctx context.Context, h *credential.Holder) error {
	cred, err := m.attempt(ctx, h.Load())
	if err != nil {
		return err
	}
	m.switchTo(h, cred)
	return nil
}

// Kick makes Run attempt a renewal now.
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run renews the credential in h when due (a third of its lifetime left,
// or RenewBefore), retries failures with backoff, retires old credentials,
// until ctx ends. A failure never touches the credential in use.
func (m *Manager) Run(ctx context.Context, h *credential.Holder) {
	if c := h.Load(); c != nil {
		m.mu.Lock()
		if m.made[c] == nil {
			// An operator's certificate: nothing of it is ours to retire.
			m.status.X5U = c.X5U()
		}
		m.mu.Unlock()
	}
	for {
		cur := h.Load()
		leaf := cur.Leaf()
		lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
		next := leaf.NotAfter.Add(-m.renewBefore(leaf))
		m.mu.Lock()
		failures, lastTry := m.failures, m.status.lastTry
		m.mu.Unlock()
		if failures > 0 {
			next = lastTry.Add(m.backoff(lifetime))
		}
		m.setNext(next)
		wait := next.Sub(m.now())
		if rd := m.retireDue(); !rd.IsZero() && rd.Sub(m.now()) < wait {
			wait = rd.Sub(m.now())
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.kick:
			t.Stop()
			next = m.now()
		case <-t.C:
		}
		if m.now().Before(next) {
			continue // a retirement was due
		}
		_ = m.Renew(ctx, h)
	}
}
