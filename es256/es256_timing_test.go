package es256

import (
	"crypto/ecdsa"
	"crypto/rand"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"runtime"
	"testing"
	"time"

	"filippo.io/nistec"

	"github.com/shakenline/shakenline/internal/cputime"
	"github.com/shakenline/shakenline/internal/p256"
	"github.com/shakenline/shakenline/internal/p256/p256test"
)

// TestSignZeroAllocs: the warm path (a token in the pool) allocates nothing.
func TestSignZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	s := newSigner(t, newKey(t), Options{PoolSize: 4096, Workers: -1})
	fillPool(t, s)
	var d [32]byte
	var sig [64]byte
	allocs := testing.AllocsPerRun(1000, func() {
		d[0]++
		if err := s.Sign(&d, &sig); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("warm Sign allocates %.1f times per call", allocs)
	}
	if st := s.Stats(); st.InlineFallbacks != 0 {
		t.Fatalf("pool ran dry during the allocation test: %+v", st)
	}
}

// reportPerCore adds metrics from process CPU time over the benchmark:
// signatures per user-CPU second (the divisor `openssl speed` uses by
// default) and per user+system CPU second.
func reportPerCore(b *testing.B, user0, total0 time.Duration) {
	user1, total1 := cputime.Process()
	if u := (user1 - user0).Seconds(); u > 0 {
		b.ReportMetric(float64(b.N)/u, "sign/s/user-cpu")
	}
	if c := (total1 - total0).Seconds(); c > 0 {
		b.ReportMetric(float64(b.N)/c, "sign/s/cpu")
	}
}

// BenchmarkSignWarm is the online latency: a token is always in the pool.
// Making b.N fresh tokens would take minutes, so the benchmark pools one
// batch of real tokens once and, with the timer stopped, copies that
// snapshot back whenever the pool runs dry. Reusing nonces is fatal in real
// use; here the signatures are thrown away and only the time is kept.
func BenchmarkSignWarm(b *testing.B) {
	s := newSigner(b, newKey(b), Options{PoolSize: 4096, Workers: -1, BatchSize: 256})
	fillPool(b, s)
	snapshot := append([]token(nil), s.pool...)
	b.Cleanup(func() { clear(snapshot) })
	var d [32]byte
	var sig [64]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if s.count == 0 { // only this goroutine touches s
			b.StopTimer()
			copy(s.pool, snapshot)
			s.count = len(snapshot)
			b.StartTimer()
		}
		d[0] = byte(i)
		if err := s.Sign(&d, &sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOnlineStep is the arithmetic of the online step alone.
func BenchmarkOnlineStep(b *testing.B) {
	tok := token{kinv: p256.Elem{1, 2, 3, 4}, t: p256.Elem{5, 6, 7, 8}, r: [32]byte{1}}
	e := p256.Elem{9, 10, 11, 12}
	var sig [64]byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e[0]++
		online(&tok, &e, &sig)
	}
}

// benchSustained signs b.N digests on one P (GOMAXPROCS=1) with a fresh
// signer, so the pool starts empty and every token signed is also made
// during the run: workers, inline fallbacks and all. Per-core rates come
// from process CPU time.
func benchSustained(b *testing.B, o Options) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	key := newKey(b)
	var d [32]byte
	var sig [64]byte
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	user0, total0 := cputime.Process()
	s, err := New(key, o)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		d[0], d[1] = byte(i), byte(i>>8)
		if err := s.Sign(&d, &sig); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	b.StopTimer()
	reportPerCore(b, user0, total0)
	st := s.Stats()
	b.ReportMetric(float64(st.InlineFallbacks)/float64(b.N), "inline/op")
}

func BenchmarkSignSustained(b *testing.B) { benchSustained(b, Options{}) }

func BenchmarkSignSustainedInlineOnly(b *testing.B) { benchSustained(b, Options{Workers: -1}) }

// BenchmarkCryptoECDSA is the standard library on the same terms.
func BenchmarkCryptoECDSA(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	key := newKey(b)
	var d [32]byte
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	user0, total0 := cputime.Process()
	for i := 0; i < b.N; i++ {
		d[0], d[1] = byte(i), byte(i>>8)
		if _, err := ecdsa.SignASN1(rand.Reader, key, d[:]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportPerCore(b, user0, total0)
}

// BenchmarkSignParallel uses every P, workers included.
func BenchmarkSignParallel(b *testing.B) {
	s := newSigner(b, newKey(b), Options{})
	b.ReportAllocs()
	b.ResetTimer()
	user0, total0 := cputime.Process()
	b.RunParallel(func(pb *testing.PB) {
		var d [32]byte
		var sig [64]byte
		for pb.Next() {
			d[0]++
			if err := s.Sign(&d, &sig); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportPerCore(b, user0, total0)
}

// Breakdown of the offline cost.

func BenchmarkScalarBaseMult(b *testing.B) {
	k := make([]byte, 32)
	rand.Read(k)
	k[0] &= 0x7f
	p := nistec.NewP256Point()
	for i := 0; i < b.N; i++ {
		k[31] = byte(i)
		p.ScalarBaseMult(k)
	}
}

func BenchmarkInvert(b *testing.B) {
	x := p256.Elem{1, 2, 3, 4}
	for i := 0; i < b.N; i++ {
		invert(&x, &x, &p256.FieldP)
	}
}

// BenchmarkOfflineToken is the cost per token of drawK+finish for several
// batch sizes.
func BenchmarkOfflineToken(b *testing.B) {
	for _, n := range []int{1, 8, 32, 128} {
		b.Run(itoa(n), func(b *testing.B) {
			bt := newBatch(n)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := bt.drawK(n); err != nil {
					b.Fatal(err)
				}
				bt.finish(n, false)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/token")
		})
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// Timing sanity checks in the style of dudect (Reparaz, Balasch, Verbauwhede
// 2017): measurements of two input classes, fixed and random, interleaved at
// random; the metric |t| is Welch's t statistic of the two timing
// distributions. dudect treats |t| > 4.5 as evidence of a leak. On a shared
// machine outliers inflate t, so this is a benchmark to read, not a test
// that passes or fails. BenchmarkDudectControl runs the same harness on
// variable-time math/big code to show that it can see a leak.

type welch struct{ n, mean, m2 [2]float64 }

func (w *welch) add(class int, x float64) {
	w.n[class]++
	d := x - w.mean[class]
	w.mean[class] += d / w.n[class]
	w.m2[class] += d * (x - w.mean[class])
}

func (w *welch) t() float64 {
	if w.n[0] < 2 || w.n[1] < 2 {
		return 0
	}
	v0 := w.m2[0] / (w.n[0] - 1) / w.n[0]
	v1 := w.m2[1] / (w.n[1] - 1) / w.n[1]
	return math.Abs(w.mean[0]-w.mean[1]) / math.Sqrt(v0+v1)
}

// dudect runs b.N measurements of f(class, i). Samples are capped at the
// 90th percentile of a warm-up run, a simple form of dudect's cropping that
// keeps preemptions by other processes from dominating the statistic.
func dudect(b *testing.B, f func(class, i int)) {
	classes := make([]uint8, 4096)
	for i := range classes {
		classes[i] = uint8(mrand.IntN(2))
	}
	// Warm up and find a cap at roughly the 90th percentile.
	samples := make([]float64, 0, 200)
	for i := 0; i < 200; i++ {
		t0 := time.Now()
		f(int(classes[i]), i)
		samples = append(samples, float64(time.Since(t0)))
	}
	capAt := percentile(samples, 0.9)
	var w welch
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := int(classes[i%len(classes)])
		t0 := time.Now()
		f(c, i)
		d := float64(time.Since(t0))
		w.add(c, math.Min(d, capAt))
	}
	b.StopTimer()
	b.ReportMetric(w.t(), "|t|")
}

func percentile(xs []float64, p float64) float64 {
	s := append([]float64(nil), xs...)
	for i := 1; i < len(s); i++ { // insertion sort, 200 samples
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[int(p*float64(len(s)-1))]
}

// BenchmarkDudectOnline: class 0 uses a fixed low-weight token and digest
// (k⁻¹ = 1, t = 0, e = 1), class 1 random ones; 64 online steps per sample.
// Both classes are read from the same array slots so memory layout does
// not differ between them.
func BenchmarkDudectOnline(b *testing.B) {
	const slots = 256
	var fixed [2][slots]token
	var fixedE [2][slots]p256.Elem
	for i := 0; i < slots; i++ {
		fixed[0][i].kinv = p256.OrderN.One // k⁻¹ = 1 (Montgomery form)
		fixedE[0][i] = p256.Elem{1}
		fixed[1][i].kinv = randomScalar()
		fixed[1][i].t = randomScalar()
		fixedE[1][i] = randomScalar()
	}
	toks := make([]token, slots)
	es := make([]p256.Elem, slots)
	var sig [64]byte
	dudect(b, func(class, i int) {
		j := i % slots
		toks[j], es[j] = fixed[class][j], fixedE[class][j]
		for range 64 {
			online(&toks[j], &es[j], &sig)
		}
	})
}

func randomScalar() p256.Elem {
	var kb [32]byte
	rand.Read(kb[:])
	var e p256.Elem
	p256.SetBytes(&e, &kb)
	p256.ReduceOnce(&e, &e, &p256.OrderN)
	return e
}

// BenchmarkDudectOffline: class 0 makes a token from k = 1, class 1 from
// a random k; each sample is one k·G, both inversions and the token
// arithmetic (a batch of one).
func BenchmarkDudectOffline(b *testing.B) {
	bt := newBatch(1)
	bt.dM = randomScalar()
	const slots = 256
	var ks [2][slots][32]byte
	for i := 0; i < slots; i++ {
		ks[0][i][31] = 1
		if err := bt.drawK(1); err != nil {
			b.Fatal(err)
		}
		ks[1][i] = [32]byte(bt.kbuf)
	}
	dudect(b, func(class, i int) {
		k := &ks[class][i%slots]
		copy(bt.kbuf, k[:])
		p256.SetBytes(&bt.k[0], k)
		bt.finish(1, false)
	})
}

// BenchmarkDudectControl is the harness's positive control: math/big's
// variable-time modular exponentiation with a 1-bit exponent (class 0)
// versus a random 256-bit one (class 1). Expect a very large |t|.
func BenchmarkDudectControl(b *testing.B) {
	base := new(big.Int).Sub(p256test.N, big.NewInt(12345))
	small := big.NewInt(1)
	random := make([]*big.Int, 256)
	for i := range random {
		random[i], _ = rand.Int(rand.Reader, p256test.N)
	}
	z := new(big.Int)
	dudect(b, func(class, i int) {
		e := small
		if class == 1 {
			e = random[i%256]
		}
		z.Exp(base, e, p256test.N)
	})
}
