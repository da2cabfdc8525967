package hsm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

// echoRemote stands for a remote STI-AS in the chain's own tests (the real
// one, another appliance's API, is in cmd/appliance's tests): it answers
// "<input>.remote" after delay, or fails while fail is set.
type echoRemote struct {
	delay time.Duration
	fail  atomic.Bool
	calls atomic.Int64
}

func (e *echoRemote) Name() string { return "remote" }

func (e *echoRemote) SignInput(ctx context.Context, input, dst []byte) ([]byte, error) {
	e.calls.Add(1)
	select {
	case <-time.After(e.delay):
	case <-ctx.Done():
		return dst, ctx.Err()
	}
	if e.fail.Load() {
		return dst, errors.New("remote: 503")
	}
	return append(append(dst, input...), ".remote"...), nil
}

// A remote link signs requests that carry their signing input with the
// Identity header value it returned; one that fails or overruns its timeout
// moves the request to the next link; a request without an input never
// goes to it.
func TestRemoteLink(t *testing.T) {
	key := newKey(t)
	cert, _ := softhsmtest.SelfSigned(key, "sp")
	soft, err := hsm.NewSoftware("soft", key)
	if err != nil {
		t.Fatal(err)
	}
	rem := &echoRemote{delay: time.Millisecond}
	c, err := hsm.New(context.Background(), hsm.Config{
		Breaker: hsm.Breaker{Failures: 1000},
		Signers: []hsm.SignerConfig{{Remote: rem, Workers: 4, Timeout: 50 * time.Millisecond}, {Signer: soft, Workers: 1}},
	}, cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sign := func(input []byte) *hsm.Request {
		t.Helper()
		done := make(chan *hsm.Request, 1)
		r := &hsm.Request{Input: input, Done: func(r *hsm.Request) { done <- r }, Identity: []byte("stale")}
		r.Digest = sha256.Sum256(input)
		if err := c.Submit(r); err != nil {
			t.Fatal(err)
		}
		select {
		case r = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("no answer")
		}
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	}
	in := []byte("eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0")
	r := sign(in)
	if r.SignedBy != "remote" || !bytes.Equal(r.Identity, append(in, ".remote"...)) {
		t.Fatalf("signed by %q, identity %q", r.SignedBy, r.Identity)
	}
	if r = sign(nil); r.SignedBy != "soft" || len(r.Identity) != 0 {
		t.Fatalf("no input: signed by %q, identity %q", r.SignedBy, r.Identity)
	}
	rem.fail.Store(true)
	if r = sign(in); r.SignedBy != "soft" || len(r.Identity) != 0 {
		t.Fatalf("failing remote: signed by %q, identity %q", r.SignedBy, r.Identity)
	}
	rem.fail.Store(false)
	rem.delay = 0
	if r = sign(in); r.SignedBy != "remote" {
		t.Fatalf("recovered remote: signed by %q", r.SignedBy)
	}
	rem.delay = time.Second
	start := time.Now()
	if r = sign(in); r.SignedBy != "soft" || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("slow remote: signed by %q after %v", r.SignedBy, time.Since(start))
	}
}
