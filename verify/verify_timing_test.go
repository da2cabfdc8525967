package verify

import (
	"context"
	"testing"
	"time"
)

// BenchmarkVerifyWarm measures one verification with the x5u chain and its
// trust decision cached: parse, checks, one ECDSA verify. The replay filter
// is off so one PASSporT can be reused (its cost is one map operation).
func BenchmarkVerifyWarm(b *testing.B) {
	l := newLab(b)
	v := l.verifier(func(c *Config) { c.DisableReplay = true })
	now := time.Now()
	id := sign(b, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))
	in := Input{Identity: []string{id}, OrigTN: "12025550100", DestTNs: []string{"12025550199"}, Time: now}
	if r := v.Verify(context.Background(), in); r.Verstat != Passed {
		b.Fatal(r)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(id)))
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
