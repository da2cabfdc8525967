package hsm

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// Requests a Chain gave up on (Submit error or Done with Err), by
// BypassReason. Per-signer metrics: linkMetrics below.
var (
	unsignedTimeout    = metrics.NewCounter(`shakenline_hsm_unsigned_total{reason="timeout"}`)
	unsignedQueueFull  = metrics.NewCounter(`shakenline_hsm_unsigned_total{reason="queue-full"}`)
	unsignedSignerDown = metrics.NewCounter(`shakenline_hsm_unsigned_total{reason="signer-down"}`)
	unsignedError      = metrics.NewCounter(`shakenline_hsm_unsigned_total{reason="error"}`)
)

func countUnsigned(err error) {
	switch BypassReason(err) {
	case "timeout":
		unsignedTimeout.Inc()
	case "queue-full":
		unsignedQueueFull.Inc()
	case "signer-down":
		unsignedSignerDown.Inc()
	default:
		unsignedError.Inc()
	}
}

// linkMetrics are the per-signer series (label signer = the link's name).
// Several chains may hold a link of one name at once: a certificate
// renewal builds the chain for the new key while the old chain still
// finishes its calls (docs/KEYS.md, "A renewal"). They share one set of
// series, so a scrape never sees a series twice: the counters and the
// latency histogram count every live link of that name, the gauges show
// the newest. The set is registered while at least one link holds it.
type linkMetrics struct {
	name     string
	set      *metrics.Set
	refs     int     // guarded by linkRegistry.mu
	live     []*link // guarded by linkRegistry.mu; newest last
	cur      atomic.Pointer[link]
	mSigned  *metrics.Counter
	mFail    [nFail]*metrics.Counter
	mLatency *metrics.Histogram
}

var linkRegistry struct {
	mu sync.Mutex
	m  map[string]*linkMetrics
}

// metrics attaches l to the series of its name, creating and registering
// them for the first live link of that name.
func (l *link) metrics() {
	linkRegistry.mu.Lock()
	defer linkRegistry.mu.Unlock()
	if linkRegistry.m == nil {
		linkRegistry.m = map[string]*linkMetrics{}
	}
	lm := linkRegistry.m[l.name]
	if lm == nil {
		lm = newLinkMetrics(l.name)
		linkRegistry.m[l.name] = lm
		metrics.RegisterSet(lm.set)
	}
	lm.refs++
	lm.live = append(lm.live, l)
	lm.cur.Store(l)
	l.linkMetrics = lm
}

// releaseMetrics detaches l; the last link of a name unregisters its
// series.
func (l *link) releaseMetrics() {
	lm := l.linkMetrics
	if lm == nil {
		return
	}
	linkRegistry.mu.Lock()
	defer linkRegistry.mu.Unlock()
	for i, x := range lm.live {
		if x == l {
			lm.live = append(lm.live[:i], lm.live[i+1:]...)
			break
		}
	}
	lm.refs--
	if lm.refs > 0 {
		lm.cur.Store(lm.live[len(lm.live)-1])
		return
	}
	lm.cur.Store(nil)
	delete(linkRegistry.m, lm.name)
	metrics.UnregisterSet(lm.set, true)
}

func newLinkMetrics(name string) *linkMetrics {
	lm := &linkMetrics{name: name, set: metrics.NewSet()}
	set := lm.set
	n := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", " ").Replace(name)
	lab := `{signer="` + n + `"}`
	lm.mSigned = set.NewCounter(`shakenline_hsm_signed_total` + lab)
	for i := range lm.mFail {
		lm.mFail[i] = set.NewCounter(`shakenline_hsm_failures_total{signer="` + n + `",reason="` + failNames[i] + `"}`)
	}
	lm.mLatency = set.NewHistogram(`shakenline_hsm_sign_duration_seconds` + lab)
	gauge := func(metric string, f func(l *link) float64) {
		set.NewGauge(metric+lab, func() float64 {
			if l := lm.cur.Load(); l != nil {
				return f(l)
			}
			return 0
		})
	}
	gauge(`shakenline_hsm_breaker_state`, func(l *link) float64 { return float64(l.br.state.Load()) })
	gauge(`shakenline_hsm_sessions`, func(l *link) float64 { return float64(l.sessions()) })
	gauge(`shakenline_hsm_queue_depth`, func(l *link) float64 { return float64(len(l.q)) })
	gauge(`shakenline_hsm_ready`, func(l *link) float64 {
		if l.usable() {
			return 1
		}
		return 0
	})
	return lm
}
