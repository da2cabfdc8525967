package hsm_test

import (
	"context"
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

// Submit runs on the event loops: it must not allocate.
func TestSubmitAllocs(t *testing.T) {
	key := newKey(t)
	cert, _ := softhsmtest.SelfSigned(key, "sp")
	s, _ := hsm.NewSoftware("soft", key)
	h := &hangSigner{Signer: s, release: make(chan struct{})}
	h.hang.Store(true)
	c, err := hsm.New(context.Background(), hsm.Config{
		QueueDepth: 2048,
		Signers:    []hsm.SignerConfig{{Signer: h, Workers: 1, Timeout: time.Hour}},
	}, cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(h.release); c.Close() })
	var done atomic.Int64
	reqs := make([]hsm.Request, 1024)
	for i := range reqs {
		reqs[i].Done = func(*hsm.Request) { done.Add(1) }
	}
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		if err := c.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Fatalf("Submit allocates %.1f times per call", allocs)
	}
}

// BenchmarkChainSoftware measures the chain's dispatch overhead around the
// software signer (Submit to Done, closed loops).
func BenchmarkChainSoftware(b *testing.B) {
	key := newKey(b)
	cert, _ := softhsmtest.SelfSigned(key, "sp")
	s, _ := hsm.NewSoftware("soft", key)
	c, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{Signer: s}}}, cert)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan *hsm.Request, 1)
		r := &hsm.Request{Done: func(r *hsm.Request) { done <- r }}
		_, _ = rand.Read(r.Digest[:])
		for pb.Next() {
			r.Deadline = time.Time{}
			if err := c.Submit(r); err != nil {
				b.Error(err)
				return
			}
			<-done
			if r.Err != nil {
				b.Error(r.Err)
				return
			}
		}
	})
}
