package certmgr

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// The series of docs/METRICS.md, "ACME": registered when the first Manager
// is made, so an appliance without acme: shows none.
var (
	acmeSet      = metrics.NewSet()
	registerOnce sync.Once
	mOK          = acmeSet.NewCounter(`shakenline_acme_renewals_total{result="ok"}`)
	mErr         = map[string]*metrics.Counter{}
	lastSuccess  atomic.Int64
	nextAttempt  atomic.Int64
)

func init() {
	for _, s := range []string{StageToken, StageOrder, StageChallenge, StageKey, StageFinalize, StageValidate, StagePublish, StageSwitch} {
		mErr[s] = acmeSet.NewCounter(`shakenline_acme_renewals_total{result="error",stage="` + s + `"}`)
	}
	acmeSet.NewGauge(`shakenline_acme_last_success_timestamp_seconds`, func() float64 { return float64(lastSuccess.Load()) })
	acmeSet.NewGauge(`shakenline_acme_next_attempt_timestamp_seconds`, func() float64 { return float64(nextAttempt.Load()) })
}

func registerMetrics() { registerOnce.Do(func() { metrics.RegisterSet(acmeSet) }) }

func countOK() { mOK.Inc() }

func countError(stage string) {
	if c := mErr[stage]; c != nil {
		c.Inc()
	}
}

func setLastSuccess(t time.Time) { lastSuccess.Store(t.Unix()) }
func setNextAttempt(t time.Time) { nextAttempt.Store(t.Unix()) }
