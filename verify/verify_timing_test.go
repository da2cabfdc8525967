package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/internal/cputime"
	"github.com/shakenline/shakenline/p256verify"
	"github.com/shakenline/shakenline/passport"
)

// BenchmarkVerifyWarm measures one verification with the x5u chain and its
// trust decision cached: parse, checks, one ECDSA verify (the key has its
// p256verify table after the first two verifications). The replay filter
// is off so one PASSporT can be reused (its cost is one map operation).
func BenchmarkVerifyWarm(b *testing.B) { benchVerifyWarm(b, 0) }

// BenchmarkVerifyWarmNoTables is BenchmarkVerifyWarm with
// Config.FastKeys = -1: u2·Q by nistec's generic ScalarMult.
func BenchmarkVerifyWarmNoTables(b *testing.B) { benchVerifyWarm(b, -1) }

func benchVerifyWarm(b *testing.B, fastKeys int) {
	l := newLab(b)
	v := l.verifier(func(c *Config) { c.DisableReplay = true; c.FastKeys = fastKeys })
	now := time.Now()
	id := sign(b, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))
	in := Input{Identity: []string{id}, OrigTN: "12025550100", DestTNs: []string{"12025550199"}, Time: now}
	for range 2 {
		if r := v.Verify(context.Background(), in); r.Verstat != Passed {
			b.Fatal(r)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(id)))
	defer reportUserCPU(b)()
	for b.Loop() {
		if r := v.Verify(context.Background(), in); r.Verstat != Passed {
			b.Fatal(r)
		}
	}
	if l.hits.Load() != 1 {
		b.Fatalf("%d fetches, want 1", l.hits.Load())
	}
}

func BenchmarkVerifyWarmParallel(b *testing.B) {
	l := newLab(b)
	v := l.verifier(func(c *Config) { c.DisableReplay = true })
	now := time.Now()
	id := sign(b, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))
	in := Input{Identity: []string{id}, Time: now}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := v.Verify(context.Background(), in); r.Verstat != Passed {
				b.Error(r)
				return
			}
		}
	})
}

// BenchmarkVerifyReplayOn is BenchmarkVerifyWarm with the replay filter on,
// over a ring of distinct PASSporTs signed up front (the filter would
// reject a repeat, so the ring is bounded and the loop stops at its end).
func BenchmarkVerifyReplayOn(b *testing.B) {
	l := newLab(b)
	v := l.verifier(nil)
	now := time.Now()
	const ring = 2000
	ids := make([]string, ring)
	for i := range ids {
		ids[i] = sign(b, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == ring {
			b.StopTimer()
			v.replay = newReplayFilter(2*v.cfg.Freshness, v.cfg.ReplayCapacity)
			i = 0
			b.StartTimer()
		}
		if r := v.Verify(context.Background(), Input{Identity: []string{ids[i]}, Time: now}); r.Verstat != Passed {
			b.Fatal(r)
		}
		i++
	}
}

// TestWarmAllocsCRL: with the chain's trust and CRL verdict cached, CRL
// checking adds no allocation to Verify (two atomic loads and compares).
func TestWarmAllocsCRL(t *testing.T) {
	l := newCRLLab(t)
	withCRL := l.verifier(func(c *Config) { c.DisableReplay = true })
	without := l.verifier(func(c *Config) { c.DisableReplay = true; c.DisableCRL = true })
	now := time.Now()
	in := Input{Identity: []string{sign(t, l.leafKey, l.x5u, claims("12025550100", now))}, Time: now}
	for _, v := range []*Verifier{withCRL, without} {
		if r := v.Verify(context.Background(), in); r.Verstat != Passed {
			t.Fatal(r)
		}
	}
	a := testing.AllocsPerRun(50, func() { withCRL.Verify(context.Background(), in) })
	b := testing.AllocsPerRun(50, func() { without.Verify(context.Background(), in) })
	if a != b {
		t.Errorf("warm Verify allocs: %v with CRL checking, %v without", a, b)
	}
	if l.interHits.Load() != 1 {
		t.Errorf("%d CRL fetches, want 1", l.interHits.Load())
	}
	t.Logf("warm Verify: %v allocs", a)
}

// BenchmarkVerifyWarmCRL is BenchmarkVerifyWarm with a chain whose leaf and
// intermediate carry CRL distribution points (CRLs cached).
func BenchmarkVerifyWarmCRL(b *testing.B) {
	l := newCRLLab(b)
	v := l.verifier(func(c *Config) { c.DisableReplay = true })
	now := time.Now()
	in := Input{Identity: []string{sign(b, l.leafKey, l.x5u, claims("12025550100", now))}, Time: now}
	b.ReportAllocs()
	for b.Loop() {
		if r := v.Verify(context.Background(), in); r.Verstat != Passed {
			b.Fatal(r)
		}
	}
}

// BenchmarkVerifyCold measures a verification whose x5u is not cached:
// fetch from a local HTTP server, parse, chain verification (and the
// signature). Each iteration uses a fresh Verifier.
func BenchmarkVerifyCold(b *testing.B) {
	l := newLab(b)
	now := time.Now()
	in := Input{Identity: []string{sign(b, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))}, Time: now}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		v, err := New(Config{Trust: l.trust, AllowHTTP: true, AllowPrivate: true, DisableReplay: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if r := v.Verify(context.Background(), in); r.Verstat != Passed {
			b.Fatal(r)
		}
		b.StopTimer()
		v.Close()
		b.StartTimer()
	}
}

// BenchmarkECDSAVerifyP256 is the reference BenchmarkVerifyWarm used to
// be bounded by: one crypto/ecdsa.Verify of a P-256 signature over a
// 32-byte digest, as passport.VerifySignature calls it (r and s as
// big.Int).
func BenchmarkECDSAVerifyP256(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte("benchmark"))
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer reportUserCPU(b)()
	for b.Loop() {
		if !ecdsa.Verify(&key.PublicKey, d[:], r, s) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkVerifySigTable is the signature step of a warm verification:
// SHA-256 of the signing input and p256verify with the key's table (the
// floor under BenchmarkVerifyWarm now).
func BenchmarkVerifySigTable(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, err := p256verify.NewKey(&key.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	c := p256verify.NewCache(0)
	c.Prepare(k)
	id := &passport.Identity{SigningInput: make([]byte, 300), Signature: make([]byte, 64)}
	d := sha256.Sum256(id.SigningInput)
	if err := (signertest.CryptoSigner{Key: key}).SignDigest(context.Background(), &d, (*[64]byte)(id.Signature)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer reportUserCPU(b)()
	for b.Loop() {
		if err := verifySig(c, k, id); err != nil {
			b.Fatal(err)
		}
	}
}

// reportUserCPU starts counting the process's CPU time; the returned
// function reports it per operation as "user-µs/op" and "cpu-µs/op"
// (user+system). `openssl speed` divides by user CPU time too, so on a
// loaded machine (where ns/op also counts the time other processes hold
// the core) these are the figures to compare with its verify/s. Linux
// splits user and system time by tick sampling; their sum is exact.
func reportUserCPU(b *testing.B) func() {
	u0, t0 := cputime.Process()
	return func() {
		if b.N > 0 {
			u1, t1 := cputime.Process()
			b.ReportMetric(float64(u1-u0)/float64(b.N)/1e3, "user-µs/op")
			b.ReportMetric(float64(t1-t0)/float64(b.N)/1e3, "cpu-µs/op")
		}
	}
}
