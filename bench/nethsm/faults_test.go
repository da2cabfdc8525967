package nethsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/signertest"
)

// flow submits signing requests to a chain at a steady rate, each with the
// chain's budget, and counts the outcomes: by signer, unsigned by reason,
// and signatures that do not verify with the provider's key.
type flow struct {
	pub *ecdsa.PublicKey

	mu       sync.Mutex
	bySigner map[string]int
	unsigned map[string]int
	bad      int
	pending  sync.WaitGroup
}

func startFlow(t *testing.T, c *hsm.Chain, pub *ecdsa.PublicKey, perMs int) (f *flow, stop func()) {
	f = &flow{pub: pub, bySigner: map[string]int{}, unsigned: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for range perMs {
				r := &hsm.Request{Done: f.done}
				_, _ = rand.Read(r.Digest[:])
				f.pending.Add(1)
				if err := c.Submit(r); err != nil {
					r.Err = err
					f.done(r)
				}
			}
		}
	}()
	return f, func() {
		cancel()
		<-done
		f.pending.Wait()
	}
}

func (f *flow) done(r *hsm.Request) {
	defer f.pending.Done()
	ok := r.Err == nil && signertest.Verify(f.pub, &r.Digest, &r.Sig)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Err != nil:
		f.unsigned[hsm.BypassReason(r.Err)]++
	case !ok:
		f.bad++
	default:
		f.bySigner[r.SignedBy]++
	}
}

func (f *flow) signed(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bySigner[name]
}

// waitSigned waits until signer name has signed n more than it had.
func (f *flow) waitSigned(t *testing.T, name string, n int, within time.Duration, what string) {
	t.Helper()
	base := f.signed(name)
	end := time.Now().Add(within)
	for f.signed(name) < base+n {
		if time.Now().After(end) {
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("%s: %s signed %d in %v, want %d; outcomes %v, unsigned %v, bad %d",
				what, name, f.bySigner[name]-base, within, n, f.bySigner, f.unsigned, f.bad)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// chainFor is [nethsm, software] over the lab's key: the software link is
// the next signer every fault must move traffic to.
func chainFor(t *testing.T, l *lab, workers int) *hsm.Chain {
	t.Helper()
	soft, err := hsm.NewSoftware("soft", l.key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = soft.Close() })
	c, err := hsm.New(context.Background(), hsm.Config{
		Budget: 300 * time.Millisecond, // generous: the machine running the tests may be busy
		Signers: []hsm.SignerConfig{
			{Name: "nethsm", PKCS11: l.dev.URI(), Workers: workers, Timeout: 40 * time.Millisecond,
				ReopenMax: 100 * time.Millisecond, Breaker: hsm.Breaker{Failures: 3, OpenFor: 200 * time.Millisecond}},
			{Signer: soft, Workers: 2},
		},
	}, &x509.Certificate{PublicKey: &l.key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Each fault of the device, with calls flowing, moves the traffic to the
// next signer with no call unsigned and no signature from another key;
// clearing the fault brings the traffic back to the device, without a
// restart. The stale case is the device that closes every session and
// hands the numbers out again, with the key's old object handle now naming
// another key: a client that touches a handle from before would sign on a
// stranger's session or with the decoy.
func TestFaultsMoveTrafficAndRecover(t *testing.T) {
	l := newLab(t, Config{Latency: 300 * time.Microsecond, Jitter: 200 * time.Microsecond, Capacity: 20000, Pool: 20000, MaxSessions: 32})
	c := chainFor(t, l, 8)
	f, stop := startFlow(t, c, &l.key.PublicKey, 2)
	ctx := ctx(t)
	f.waitSigned(t, "nethsm", 200, 5*time.Second, "healthy")
	for _, fault := range []struct {
		name   string
		inject func() error
	}{
		{DeviceError, func() error { return l.dev.Fault(ctx, DeviceError) }},
		{DeviceRemoved, func() error { return l.dev.Fault(ctx, DeviceRemoved) }},
		{SessionHandleInvalid, func() error { return l.dev.Fault(ctx, SessionHandleInvalid) }},
		{TokenNotPresent, func() error { return l.dev.Fault(ctx, TokenNotPresent) }},
		{"hang", func() error { return l.dev.Hang(ctx) }},
		{"slow", func() error { return l.dev.Slow(ctx, 80*time.Millisecond) }},
		{"stale", func() error { return l.dev.Stale(ctx) }},
	} {
		t.Run(fault.name, func(t *testing.T) {
			if err := fault.inject(); err != nil {
				t.Fatal(err)
			}
			if fault.name != "stale" {
				// stale is one event: the device is back at once.
				f.waitSigned(t, "soft", 200, 5*time.Second, fault.name+": traffic to the next signer")
				if err := l.dev.Clear(ctx); err != nil {
					t.Fatal(err)
				}
			}
			f.waitSigned(t, "nethsm", 500, 10*time.Second, fault.name+": traffic back after clear")
		})
	}
	stop()
	st, _ := l.dev.Stats(ctx)
	t.Logf("signed by %v; unsigned %v; bad %d; device %+v", f.bySigner, f.unsigned, f.bad, st)
	if n := sum(f.unsigned); n > 0 || f.bad > 0 {
		t.Fatalf("%d calls unsigned (%v), %d signatures that do not verify", n, f.unsigned, f.bad)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// One stale event (every session closed, handle numbers handed out again,
// the key's old handle naming the decoy) costs the client exactly one
// recovery: one new login, and no call ever meets a lost login because a
// handle from before the event was closed or used after it.
func TestStaleHandlesOneRecovery(t *testing.T) {
	l := newLab(t, Config{Latency: 300 * time.Microsecond, Jitter: 200 * time.Microsecond, Pool: 20000, MaxSessions: 32})
	c := chainFor(t, l, 8)
	f, stop := startFlow(t, c, &l.key.PublicKey, 4)
	ctx := ctx(t)
	f.waitSigned(t, "nethsm", 500, 5*time.Second, "healthy")
	for i := range 5 {
		before, err := l.dev.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.dev.Stale(ctx); err != nil {
			t.Fatal(err)
		}
		f.waitSigned(t, "nethsm", 500, 10*time.Second, "after stale")
		after, err := l.dev.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("stale %d: logins +%d, opens +%d, closes +%d, refused for want of a login +%d", i,
			after.Logins-before.Logins, after.Opens-before.Opens, after.Closes-before.Closes, after.NotLoggedIn-before.NotLoggedIn)
		if after.Logins-before.Logins != 1 || after.NotLoggedIn != before.NotLoggedIn {
			t.Errorf("stale %d: %d logins, %d calls without a login: want one recovery", i,
				after.Logins-before.Logins, after.NotLoggedIn-before.NotLoggedIn)
		}
	}
	stop()
	if n := sum(f.unsigned); n > 0 || f.bad > 0 {
		t.Fatalf("%d calls unsigned (%v), %d signatures that do not verify", n, f.unsigned, f.bad)
	}
}

// A device that allows fewer sessions than the link has workers: the
// signer keeps the sessions it got (one is the login's), the chain runs one
// worker per session, and every call is signed by the device.
func TestSessionLimit(t *testing.T) {
	l := newLab(t, Config{Latency: 200 * time.Microsecond, MaxSessions: 4})
	c := chainFor(t, l, 16)
	h := c.Health()[0]
	if h.Sessions != 3 {
		t.Fatalf("health %+v: want the 3 sessions a 4-session device leaves besides the login's", h)
	}
	f, stop := startFlow(t, c, &l.key.PublicKey, 2)
	f.waitSigned(t, "nethsm", 1000, 10*time.Second, "limited")
	stop()
	if n := sum(f.unsigned); n > 0 || f.bad > 0 || f.signed("soft") > 0 {
		t.Fatalf("signed %v, unsigned %v, bad %d: want everything signed by the device", f.bySigner, f.unsigned, f.bad)
	}
}
