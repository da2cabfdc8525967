package verify

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func TestMetrics(t *testing.T) {
	l := newLab(t)
	v := l.verifier(nil)
	passed, stale, noID, hits, misses := mPassed.Get(), mFailed403.Get(), mNoTN428.Get(), mX5UHits.Get(), mX5UMisses.Get()
	now := time.Now()
	for i := 0; i < 2; i++ {
		if r := v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))}}); r.Verstat != Passed {
			t.Fatal(r)
		}
	}
	v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now.Add(-time.Hour)))}})
	v.Verify(context.Background(), Input{})
	if mPassed.Get()-passed != 2 || mFailed403.Get()-stale != 1 || mNoTN428.Get()-noID != 1 ||
		mX5UHits.Get()-hits != 1 || mX5UMisses.Get()-misses != 1 {
		t.Errorf("passed +%d stale +%d noID +%d hits +%d misses +%d", mPassed.Get()-passed, mFailed403.Get()-stale,
			mNoTN428.Get()-noID, mX5UHits.Get()-hits, mX5UMisses.Get()-misses)
	}
	if s := v.Stats(); s.CacheHits != 1 || s.CacheMisses != 1 {
		t.Errorf("stats %+v", s)
	}
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	for _, name := range []string{
		`shakenline_verify_results_total{verstat="TN-Validation-Failed",code="437"}`,
		`shakenline_verify_x5u_fetch_failures_total`, `shakenline_verify_crl_fail_open_total`,
	} {
		if !strings.Contains(b.String(), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for verstat, codes := range map[string][]int{Passed: {0}, Failed: {403, 436, 437, 438}, NoTN: {428, 438}} {
		for _, c := range codes {
			if resultCounter(verstat, c) == mResultsOther {
				t.Errorf("%s/%d has no counter", verstat, c)
			}
		}
	}
}
