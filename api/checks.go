package api

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shakenline/shakenline/hsm"
)

// ErrNotReady is wrapped by readiness checks that fail.
var ErrNotReady = errors.New("api: not ready")

// SignerCheck is a readiness check that signs a probe digest through d and
// waits at most timeout for the answer: "a signer can sign". A success is
// remembered for one second so frequent /readyz polls do not load the HSM.
func SignerCheck(d hsm.Dispatcher, timeout time.Duration) Check {
	var mu sync.Mutex
	var okUntil time.Time
	digest := sha256.Sum256([]byte("shakenline readiness probe"))
	return Check{Name: "signer", Fn: func() error {
		mu.Lock()
		defer mu.Unlock()
		if time.Now().Before(okUntil) {
			return nil
		}
		if d == nil {
			return fmt.Errorf("%w: no signer configured", ErrNotReady)
		}
		done := make(chan struct{}, 1)
		// A fresh Request each time: one given up on may still be written.
		r := &hsm.Request{Digest: digest, Deadline: time.Now().Add(timeout), Done: func(*hsm.Request) { done <- struct{}{} }}
		// The probe carries no signing input, so it never goes to a remote
		// STI-AS link (it would be signed and audited there each second).
		// With no key link usable, the chain's own view of its links
		// (breakers, usable) speaks for the remote ones.
		remoteOnly := func(err error) bool {
			c, ok := d.(interface{ Ready() bool })
			return errors.Is(err, hsm.ErrNoSigner) && ok && c.Ready()
		}
		if err := d.Submit(r); err != nil {
			if remoteOnly(err) {
				okUntil = time.Now().Add(time.Second)
				return nil
			}
			return fmt.Errorf("%w: signer: %w", ErrNotReady, err)
		}
		select {
		case <-done:
		case <-time.After(timeout + 100*time.Millisecond):
			return fmt.Errorf("%w: signer did not answer within %v", ErrNotReady, timeout)
		}
		if r.Err != nil && !remoteOnly(r.Err) {
			return fmt.Errorf("%w: signer: %w", ErrNotReady, r.Err)
		}
		okUntil = time.Now().Add(time.Second)
		return nil
	}}
}
