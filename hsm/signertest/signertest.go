// Package signertest is the conformance suite every hsm.Signer passes:
// signatures verify with the public key, concurrent use is safe, signatures
// of one digest differ (ECDSA is randomised), and a Dispatcher over the
// signer signs every request. Run it from each signer's tests.
//
// It also holds CryptoSigner, the reference signer tests use where a
// signature in the r||s form is needed from an in-memory key.
package signertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm"
)

// Verify reports whether sig (r||s) is a valid ES256 signature of digest.
func Verify(pub *ecdsa.PublicKey, digest *[32]byte, sig *[64]byte) bool {
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, digest[:], r, s)
}

// CryptoSigner is an hsm.Signer that signs through crypto/ecdsa with an
// in-memory P-256 key and writes r||s (RFC 7518 section 3.4): the stand-in
// for another carrier's signer in tests, or the baseline a benchmark
// compares with; never the appliance's own signer.
type CryptoSigner struct{ Key *ecdsa.PrivateKey }

// Name is "crypto/ecdsa".
func (s CryptoSigner) Name() string { return "crypto/ecdsa" }

// Public returns the key's public half.
func (s CryptoSigner) Public() *ecdsa.PublicKey { return &s.Key.PublicKey }

// SignDigest signs digest with crypto/ecdsa and writes r||s, each 32 bytes,
// big-endian, left-padded.
func (s CryptoSigner) SignDigest(_ context.Context, digest *[32]byte, sig *[64]byte) error {
	r, ss, err := ecdsa.Sign(rand.Reader, s.Key, digest[:])
	if err != nil {
		return err
	}
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return nil
}

// Run runs the suite on s.
func Run(t *testing.T, s hsm.Signer) {
	t.Helper()
	pub := s.Public()
	if pub == nil || pub.Curve != elliptic.P256() {
		t.Fatalf("%s: public key is not P-256", s.Name())
	}
	if s.Name() == "" {
		t.Error("empty Name")
	}
	ctx := context.Background()

	t.Run("SignVerify", func(t *testing.T) {
		for i := range 8 {
			d := sha256.Sum256([]byte{byte(i), 'x'})
			var sig [64]byte
			if err := s.SignDigest(ctx, &d, &sig); err != nil {
				t.Fatal(err)
			}
			if !Verify(pub, &d, &sig) {
				t.Fatalf("signature %d does not verify", i)
			}
			d[0] ^= 1
			if Verify(pub, &d, &sig) {
				t.Fatal("signature verifies for another digest")
			}
		}
	})

	t.Run("Distinct", func(t *testing.T) {
		d := sha256.Sum256([]byte("same digest"))
		var a, b [64]byte
		if err := s.SignDigest(ctx, &d, &a); err != nil {
			t.Fatal(err)
		}
		if err := s.SignDigest(ctx, &d, &b); err != nil {
			t.Fatal(err)
		}
		if a == b {
			t.Fatal("two signatures of one digest are identical (nonce reuse?)")
		}
		if !Verify(pub, &d, &a) || !Verify(pub, &d, &b) {
			t.Fatal("signature does not verify")
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		const goroutines, each = 16, 20
		var wg sync.WaitGroup
		errs := make(chan string, goroutines*each)
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					var d [32]byte
					_, _ = rand.Read(d[:])
					var sig [64]byte
					if err := s.SignDigest(ctx, &d, &sig); err != nil {
						errs <- err.Error()
						return
					}
					if !Verify(pub, &d, &sig) {
						errs <- "bad signature from goroutine " + string(rune('a'+g)) + " call " + string(rune('0'+i%10))
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})

	t.Run("Pool", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		RunDispatcher(t, hsm.NewPool(ctx, s, 4, 256), pub, 200)
	})

	t.Run("Chain", func(t *testing.T) {
		c, err := hsm.New(ctx, hsm.Config{Signers: []hsm.SignerConfig{{Signer: s, Workers: 4, Timeout: 2 * time.Second}}},
			&x509.Certificate{PublicKey: pub})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		RunDispatcher(t, c, pub, 500)
	})
}

// RunDispatcher submits n requests from several goroutines and checks that
// each is completed exactly once with a signature that verifies.
func RunDispatcher(t *testing.T, d hsm.Dispatcher, pub *ecdsa.PublicKey, n int) {
	t.Helper()
	var mu sync.Mutex
	done := make(map[*hsm.Request]int, n)
	var wg sync.WaitGroup
	reqs := make([]hsm.Request, n)
	deadline := time.Now().Add(30 * time.Second)
	for i := range reqs {
		r := &reqs[i]
		_, _ = rand.Read(r.Digest[:])
		r.Deadline = deadline
		r.Done = func(r *hsm.Request) {
			mu.Lock()
			done[r]++
			mu.Unlock()
			wg.Done()
		}
	}
	const submitters = 8
	var sub sync.WaitGroup
	for g := range submitters {
		sub.Go(func() {
			for i := g; i < n; i += submitters {
				wg.Add(1)
				for {
					err := d.Submit(&reqs[i])
					if err == nil {
						break
					}
					if err != hsm.ErrQueueFull {
						wg.Done()
						t.Errorf("Submit: %v", err)
						return
					}
					time.Sleep(100 * time.Microsecond)
				}
			}
		})
	}
	sub.Wait()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("requests not completed in 30s")
	}
	for i := range reqs {
		r := &reqs[i]
		if done[r] != 1 {
			t.Fatalf("request %d: Done called %d times", i, done[r])
		}
		if r.Err != nil {
			t.Fatalf("request %d: %v", i, r.Err)
		}
		if r.SignedBy == "" {
			t.Fatalf("request %d: SignedBy empty", i)
		}
		if !Verify(pub, &r.Digest, &r.Sig) {
			t.Fatalf("request %d: signature does not verify", i)
		}
	}
}
