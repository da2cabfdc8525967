package es256

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"
)

// fillPool synchronously fills s's pool to the top (for tests and
// benchmarks that need a warm pool without background workers).
func fillPool(t testing.TB, s *Signer) {
	t.Helper()
	b := newBatch(s.batchSize)
	defer b.wipe()
	for {
		s.mu.Lock()
		space := len(s.pool) - s.count
		b.dM = s.dM
		s.mu.Unlock()
		if space == 0 {
			return
		}
		n := min(space, s.batchSize)
		if err := b.drawK(n); err != nil {
			t.Fatal(err)
		}
		made := b.finish(n, false)
		s.made.Add(uint64(made))
		if _, _, err := s.push(b.toks[:made]); err != nil {
			t.Fatal(err)
		}
	}
}

// waitPooled waits (bounded) until the background workers have pooled at
// least n tokens.
func waitPooled(t testing.TB, s *Signer, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Pooled < n {
		if time.Now().After(deadline) {
			t.Fatalf("pool did not reach %d tokens: %+v", n, s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTokenUsedOnce snapshots a full pool and checks that every token's r
// appears in exactly one signature, that the pool slot is wiped when the
// token is taken, and that the counters add up.
func TestTokenUsedOnce(t *testing.T) {
	key := newKey(t)
	const size = 200
	s := newSigner(t, key, Options{PoolSize: size, Workers: -1, BatchSize: 32})
	fillPool(t, s)

	s.mu.Lock()
	pooled := make(map[[32]byte]bool, size)
	for i := 0; i < s.count; i++ {
		pooled[s.pool[i].r] = true
	}
	n := s.count
	s.mu.Unlock()
	if n != size || len(pooled) != size {
		t.Fatalf("pool holds %d tokens with %d distinct r, want %d", n, len(pooled), size)
	}

	d := sha256.Sum256([]byte("same digest every time"))
	seen := make(map[[32]byte]int)
	for i := 0; i < size; i++ {
		var sig [64]byte
		if err := s.Sign(&d, &sig); err != nil {
			t.Fatal(err)
		}
		verify(t, &key.PublicKey, &d, &sig)
		r := [32]byte(sig[:32])
		seen[r]++
		if seen[r] > 1 {
			t.Fatalf("r %x used twice", r)
		}
		if !pooled[r] {
			t.Fatalf("signature %d did not come from the pool", i)
		}
		s.mu.Lock()
		if s.pool[s.count] != (token{}) {
			t.Fatalf("slot %d not wiped after use", s.count)
		}
		s.mu.Unlock()
	}
	st := s.Stats()
	if st.Pooled != 0 || st.TokensUsed != size || st.InlineFallbacks != 0 {
		t.Fatalf("after draining: %+v", st)
	}
	// The pool is empty and there are no workers: the next Sign computes
	// inline and must still produce a fresh r.
	var sig [64]byte
	if err := s.Sign(&d, &sig); err != nil {
		t.Fatal(err)
	}
	verify(t, &key.PublicKey, &d, &sig)
	if seen[[32]byte(sig[:32])] != 0 {
		t.Fatal("inline signature reused a nonce")
	}
	st = s.Stats()
	if st.InlineFallbacks != 1 || st.TokensMade != st.TokensUsed+st.TokensDiscarded+uint64(st.Pooled) {
		t.Fatalf("after inline: %+v", st)
	}
}

// TestRefillBelowLowWater: the worker fills the pool at start, does not
// refill above the low-water mark, and refills to the top once Sign takes
// the pool below it.
func TestRefillBelowLowWater(t *testing.T) {
	key := newKey(t)
	const size = 128
	s := newSigner(t, key, Options{PoolSize: size, BatchSize: 16})
	waitPooled(t, s, size)
	made := s.Stats().TokensMade
	var d [32]byte
	var sig [64]byte
	for i := 0; i < size/2; i++ { // down to exactly the low-water mark
		if err := s.Sign(&d, &sig); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if st := s.Stats(); st.TokensMade != made || st.Pooled != size/2 {
		t.Fatalf("refilled at the low-water mark: %+v (made %d before)", st, made)
	}
	if err := s.Sign(&d, &sig); err != nil { // below it: refill
		t.Fatal(err)
	}
	waitPooled(t, s, size)
	if st := s.Stats(); st.InlineFallbacks != 0 || st.TokensMade < made+size/2 {
		t.Fatalf("after refill: %+v", st)
	}
}

// TestConcurrentPool hammers a small pool from several goroutines while
// two workers refill it (run it under -race), then closes the signer while
// signers are still running.
func TestConcurrentPool(t *testing.T) {
	key := newKey(t)
	s, err := New(key, Options{PoolSize: 64, Workers: 2, BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 6, 300
	var wg sync.WaitGroup
	rs := make([][][32]byte, goroutines)
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				d := sha256.Sum256([]byte{byte(g), byte(i), byte(i >> 8)})
				var sig [64]byte
				if err := s.Sign(&d, &sig); err != nil {
					errs <- err
					return
				}
				r := new(big.Int).SetBytes(sig[:32])
				ss := new(big.Int).SetBytes(sig[32:])
				if !ecdsa.Verify(&key.PublicKey, d[:], r, ss) {
					errs <- errors.New("bad signature")
					return
				}
				rs[g] = append(rs[g], [32]byte(sig[:32]))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := slices.Concat(rs...)
	if dup := firstDuplicate(all); dup >= 0 {
		t.Fatalf("r %x repeated under concurrency", all[dup])
	}
	st := s.Stats()
	if st.TokensUsed < goroutines*each {
		t.Fatalf("TokensUsed %d < %d signatures", st.TokensUsed, goroutines*each)
	}

	// Close while signers run: every Sign either succeeds with a valid
	// signature or returns ErrClosed.
	var wg2 sync.WaitGroup
	bad := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			for i := 0; i < 2000; i++ {
				var d [32]byte
				d[0] = byte(g)
				var sig [64]byte
				err := s.Sign(&d, &sig)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					bad <- err
					return
				}
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	s.Close()
	wg2.Wait()
	close(bad)
	for err := range bad {
		t.Fatal(err)
	}
	st = s.Stats()
	if st.Pooled != 0 || st.TokensMade != st.TokensUsed+st.TokensDiscarded {
		t.Fatalf("counters after concurrent Close: %+v", st)
	}
}

// firstDuplicate sorts rs and returns the index of a repeated value, or -1.
func firstDuplicate(rs [][32]byte) int {
	slices.SortFunc(rs, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	for i := 1; i < len(rs); i++ {
		if rs[i] == rs[i-1] {
			return i
		}
	}
	return -1
}

// TestDistinctRMillion signs a million times from two goroutines and
// checks that no r repeats; every 997th signature is also verified. Under
// the race detector it signs 100 000 times, with -short 20 000.
func TestDistinctRMillion(t *testing.T) {
	total := 1_000_000
	if raceEnabled {
		total = 100_000
	}
	if testing.Short() {
		total = 20_000
	}
	key := newKey(t)
	s := newSigner(t, key, Options{})
	rs := make([][32]byte, total)
	var wg sync.WaitGroup
	const parts = 2
	errs := make(chan error, parts)
	for p := 0; p < parts; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d [32]byte
			d[0] = byte(p)
			for i := p; i < total; i += parts {
				var sig [64]byte
				d[31] = byte(i)
				if err := s.Sign(&d, &sig); err != nil {
					errs <- err
					return
				}
				if i%997 == 0 {
					r := new(big.Int).SetBytes(sig[:32])
					ss := new(big.Int).SetBytes(sig[32:])
					if !ecdsa.Verify(&key.PublicKey, d[:], r, ss) {
						errs <- errors.New("bad signature")
						return
					}
				}
				rs[i] = [32]byte(sig[:32])
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if dup := firstDuplicate(rs); dup >= 0 {
		t.Fatalf("r %x repeated within %d signatures", rs[dup], total)
	}
	t.Logf("%d signatures, all r distinct; %+v", total, s.Stats())
}
