package nethsm

import (
	"context"
	"crypto/sha256"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"
)

// processCPU is this process's user + system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCSign is the host's cost of one signature of the emulated HSM
// with no latency and no capacity limit, through package hsm's PKCS#11
// signer on one session (one cgo call: C_SignInit and C_Sign): cpu-ns/op
// is the process's CPU time per signature, compute-ns/op the module's own
// arithmetic (two Montgomery multiplications with a precomputed nonce).
// Raw softhsm2 C_Sign (bench/hsmraw) computes k·G on the caller's CPU.
// Run it with at most `pool` iterations (-benchtime 200000x): past the pool
// each C_Sign computes its own nonce (pool-misses).
func BenchmarkCSign(b *testing.B) {
	const pool = 250000
	l := newLab(b, Config{Pool: pool, PoolThreads: 2})
	p := l.open(b, 1)
	c := ctx(b)
	if err := l.dev.WaitPool(c); err != nil {
		b.Fatal(err)
	}
	st0, _ := l.dev.Stats(c)
	d := sha256.Sum256([]byte("digest"))
	var sig [64]byte
	b.ResetTimer()
	cpu0 := processCPU()
	for b.Loop() {
		if err := p.SignDigest(context.Background(), &d, &sig); err != nil {
			b.Fatal(err)
		}
	}
	cpu := processCPU() - cpu0
	b.StopTimer()
	st, err := l.dev.Stats(c)
	if err != nil {
		b.Fatal(err)
	}
	n := float64(st.Signs - st0.Signs)
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/op")
	b.ReportMetric(float64(st.ComputeNS-st0.ComputeNS)/n, "compute-ns/op")
	b.ReportMetric(float64(st.PoolMisses-st0.PoolMisses), "pool-misses")
	if st.PoolMisses > st0.PoolMisses {
		b.Logf("%d of %.0f signatures computed their own nonce (the pool holds %d): the figures are not the device's; run with -benchtime %dx",
			st.PoolMisses-st0.PoolMisses, n, pool, pool*4/5)
	}
}

// BenchmarkDevice runs the emulated device as the benchmark's rows use it
// (1 ms latency, 200 µs jitter, 10,000 signatures/s) with 32 sessions
// signing back to back: sig/s is what the device delivered (at most its
// capacity), p50/p99-µs the time of one C_Sign as its caller saw it, and
// cpu-µs/sig the process's CPU per signature (the callers included).
// Run it with at most 150000 iterations (the pool).
func BenchmarkDevice(b *testing.B) {
	const sessions, lat, capacity = 32, time.Millisecond, 10000
	l := newLab(b, Config{Latency: lat, Jitter: 200 * time.Microsecond, Capacity: capacity, Pool: 150000, PoolThreads: 2, MaxSessions: sessions + 1})
	p := l.open(b, sessions)
	c := ctx(b)
	if err := l.dev.WaitPool(c); err != nil {
		b.Fatal(err)
	}
	per := max(b.N/sessions, 1)
	lats := make([][]time.Duration, sessions)
	b.ResetTimer()
	cpu0, t0 := processCPU(), time.Now()
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			d := sha256.Sum256([]byte{byte(i)})
			var sig [64]byte
			for range per {
				s := time.Now()
				if err := p.SignDigest(context.Background(), &d, &sig); err != nil {
					b.Error(err)
					return
				}
				lats[i] = append(lats[i], time.Since(s))
			}
		})
	}
	wg.Wait()
	el, cpu := time.Since(t0), processCPU()-cpu0
	b.StopTimer()
	var all []time.Duration
	for _, x := range lats {
		all = append(all, x...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	n := float64(len(all))
	b.ReportMetric(n/el.Seconds(), "sig/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(cpu.Seconds()*1e6/n, "cpu-µs/sig")
}
