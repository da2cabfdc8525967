package es256

import (
	"crypto/sha256"
	"errors"
	"testing"
)

// TestRefillerFillsPool: with no background workers, Steps alone fill the
// pool in whole batches, one scalar multiplication each, stop when less
// than a batch of room is left, and every token they made signs verifiably
// and only once.
func TestRefillerFillsPool(t *testing.T) {
	key := newKey(t)
	const size = 100 // not a multiple of RefillerBatch
	s := newSigner(t, key, Options{PoolSize: size, Workers: -1})
	r := s.NewRefiller()
	defer r.Close()

	steps := 0
	for r.Step() {
		steps++
		if steps > 10*size {
			t.Fatal("Step kept reporting work")
		}
	}
	batches := size / RefillerBatch
	if want := batches * RefillerBatch; steps != want {
		t.Fatalf("%d steps, want %d (one per token of %d whole batches)", steps, want, batches)
	}
	st := s.Stats()
	if st.Pooled != steps || st.TokensMade != uint64(steps) || st.InlineFallbacks != 0 {
		t.Fatalf("after the steps: %+v", st)
	}
	// A partial batch is not pushed: the pool grows only when one ends.
	var d [32]byte
	var sig [64]byte
	for i := range RefillerBatch {
		d = sha256.Sum256([]byte{byte(i)})
		if ok, err := s.TrySign(&d, &sig); !ok || err != nil {
			t.Fatalf("TrySign %d: %v %v", i, ok, err)
		}
		verify(t, &key.PublicKey, &d, &sig)
	}
	for range RefillerBatch - 1 {
		if !r.Step() {
			t.Fatal("Step reported no work with a batch of room")
		}
	}
	if got := s.Stats().Pooled; got != steps-RefillerBatch {
		t.Fatalf("pooled %d in the middle of a batch, want %d", got, steps-RefillerBatch)
	}
	if !r.Step() || s.Stats().Pooled != steps {
		t.Fatalf("the batch's last step did not push it: %+v", s.Stats())
	}

	// Every pooled token signs once, verifiably, with distinct r.
	seen := map[[32]byte]bool{}
	for i := range steps {
		d = sha256.Sum256([]byte{1, byte(i)})
		ok, err := s.TrySign(&d, &sig)
		if !ok || err != nil {
			t.Fatalf("token %d: %v %v", i, ok, err)
		}
		verify(t, &key.PublicKey, &d, &sig)
		if seen[[32]byte(sig[:32])] {
			t.Fatalf("token %d repeats r", i)
		}
		seen[[32]byte(sig[:32])] = true
	}
	if ok, _ := s.TrySign(&d, &sig); ok {
		t.Fatal("signed from an empty pool")
	}
}

// TestRefillerAfterClose: a Step on a closed signer does nothing, and a
// batch under way when the signer closes is discarded, not pooled.
func TestRefillerAfterClose(t *testing.T) {
	s := newSigner(t, newKey(t), Options{PoolSize: 64, Workers: -1})
	r := s.NewRefiller()
	for range RefillerBatch - 1 {
		r.Step()
	}
	s.Close()
	r.Step() // finishes the batch; push finds the signer closed
	st := s.Stats()
	if st.Pooled != 0 || st.TokensDiscarded != RefillerBatch {
		t.Fatalf("after Close: %+v", st)
	}
	if r.Step() {
		t.Fatal("Step on a closed signer reported work")
	}
	var d [32]byte
	var sig [64]byte
	if err := s.Sign(&d, &sig); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sign after Close: %v", err)
	}
	r.Close()
	for i := range r.b.kbuf {
		if r.b.kbuf[i] != 0 {
			t.Fatal("Close left nonce bytes")
		}
	}
}

// TestRefillerStepAllocs: a Step allocates nothing, whether it starts a
// batch (CSPRNG read), multiplies or finishes one.
func TestRefillerStepAllocs(t *testing.T) {
	s := newSigner(t, newKey(t), Options{PoolSize: 4096, Workers: -1})
	r := s.NewRefiller()
	defer r.Close()
	if a := testing.AllocsPerRun(3*RefillerBatch, func() { r.Step() }); a != 0 {
		t.Fatalf("%v allocations per Step", a)
	}
}

func BenchmarkRefillerStep(b *testing.B) {
	s := newSigner(b, newKey(b), Options{PoolSize: 1 << 16, Workers: -1})
	r := s.NewRefiller()
	defer r.Close()
	b.ReportAllocs()
	for b.Loop() {
		if !r.Step() {
			s.Close() // pool full: start over
			s = newSigner(b, newKey(b), Options{PoolSize: 1 << 16, Workers: -1})
			r = s.NewRefiller()
		}
	}
}
