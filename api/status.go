package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Status is what GET /status shows about the appliance beyond its metrics.
// The page's rates, error counts and signer latencies come from the metrics
// registry (the series docs/METRICS.md lists), sampled by Run: once a
// second for the last minute and every ten seconds for the last hour. Every
// field may be nil or empty; the page then leaves that part out.
type Status struct {
	Node    string    // host name shown in the title
	Mode    string    // proxy, redirect or inline
	Version string    // the build's version
	Started time.Time // process start

	// Cert returns the certificate the appliance signs with now (a renewal
	// may swap it at run time).
	Cert func() *x509.Certificate
	// Renewal returns the state of certificate renewal through ACME; nil
	// (or a nil func) when the certificate is managed by hand.
	Renewal func() *RenewalStatus
	// Signers returns the signer chain in order of preference.
	Signers func() []SignerStatus
	// XDP returns the state of each XDP interface (inline mode only).
	XDP func() []XDPStatus
	// Ready returns the latest results of the readiness checks, evaluated
	// elsewhere so that a render never waits for a probe; nil: the page
	// runs Config.Ready itself on each request.
	Ready func() []CheckResult

	// Now is the clock (default time.Now).
	Now func() time.Time

	once sync.Once
	hist *history
}

// SignerStatus is one signer of the chain, as the status page shows it.
type SignerStatus struct {
	Name      string
	Kind      string // "pkcs11" or "software"
	State     string // breaker: closed, open, half-open
	Ready     bool
	Sessions  int
	Queue     int
	LastError string
}

// RenewalStatus is the ACME renewal state the page shows beside the
// certificate.
type RenewalStatus struct {
	NextAttempt time.Time // zero: not scheduled yet
	LastSuccess time.Time // zero: none since the state directory was made
	Failures    int       // consecutive failed attempts
	ErrorStage  string    // the last failure's stage (docs/KEYS.md, "A renewal")
	LastError   string
}

// CheckResult is the outcome of one readiness check (Err nil: passed).
type CheckResult struct {
	Name string
	Err  error
}

// XDPStatus is one inline-mode interface.
type XDPStatus struct {
	Name     string
	Mode     string // native or generic
	Attached bool
	FailOpen bool // INVITEs on it pass unsigned now (detached, disabled or heartbeat stale)
	Steered  uint64
	Err      string // set when the state could not be read
}

// Sampling: one sample a second for the minute graphs (61 kept, 60 rates),
// one every ten seconds for the hour graphs (361 kept).
const (
	minuteSamples = 61
	hourSamples   = 361
	hourEvery     = 10
)

// sampledPrefixes are the series the sampler keeps. Everything the page
// shows derives from them.
var sampledPrefixes = []string{
	"shakenline_calls_", "shakenline_verifications_", "shakenline_hsm_", "shakenline_sip_malformed_total",
	"shakenline_sip_dropped_total", "shakenline_verify_results_total", "shakenline_verify_x5u_fetch_failures_total",
	"shakenline_verify_crl_fetch_failures_total", "shakenline_verify_crl_fail_open_total",
	"shakenline_verify_x5u_cache_persist_failures_total", "shakenline_api_sign_failures_total",
	"shakenline_api_reloads_total", "shakenline_audit_dropped_total", "shakenline_audit_write_errors_total",
	"shakenline_api_audit_dropped_total", "shakenline_udp_send_errors_total", "shakenline_xdp_invite_unsteered_total",
	"shakenline_acme_renewals_total",
}

// sample is the sampled series' values at one instant, indexed like
// history.keys (a key seen later is missing from older samples).
type sample struct {
	at   time.Time
	vals []float64
}

// history is the sampler's memory. keys only grow: the registry's series
// are fixed at start (per signer, per interface, per reason).
type history struct {
	sampleMu sync.Mutex   // one Sample at a time; guards buf
	buf      bytes.Buffer // the exposition being sampled
	mu       sync.Mutex   // guards the rest
	keys     []seriesKey
	index    map[string]int
	minute   [minuteSamples]sample // ring, next write at mNext
	mNext    int
	mLen     int
	hour     [hourSamples]sample
	hNext    int
	hLen     int
	ticks    int
	last     []time.Time // per key: when it last increased (zero: never seen to)
}

// seriesKey is one sampled series, split once when first seen.
type seriesKey struct {
	full   string // name{labels}
	name   string
	labels map[string]string
}

func (st *Status) now() time.Time {
	if st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

func (st *Status) history() *history {
	st.once.Do(func() { st.hist = &history{index: map[string]int{}} })
	return st.hist
}

// Run samples the metrics registry every second until ctx is done. Call it
// once, from the start: the page's graphs cover the time Run has run.
func (st *Status) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	st.Sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st.Sample()
		}
	}
}

// Sample takes one sample now (Run calls it every second).
func (st *Status) Sample() {
	h := st.history()
	h.sampleMu.Lock()
	defer h.sampleMu.Unlock()
	h.buf.Reset()
	metrics.WritePrometheus(&h.buf, false)
	now := st.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.latest()
	vals := make([]float64, len(h.keys), len(h.keys)+8)
	for line := range bytes.SplitSeq(h.buf.Bytes(), []byte{'\n'}) {
		if !bytes.HasPrefix(line, []byte("shakenline_")) {
			continue
		}
		sp := bytes.LastIndexByte(line, ' ')
		if sp < 0 || !sampled(line[:sp]) {
			continue
		}
		v, err := strconv.ParseFloat(string(line[sp+1:]), 64)
		if err != nil {
			continue
		}
		i, ok := h.index[string(line[:sp])]
		if !ok {
			i = len(h.keys)
			h.keys = append(h.keys, splitSeries(string(line[:sp])))
			h.index[h.keys[i].full] = i
			h.last = append(h.last, time.Time{})
			vals = append(vals, 0)
		}
		vals[i] = v
		if prev != nil && i < len(prev.vals) && v > prev.vals[i] {
			h.last[i] = now
		}
	}
	h.minute[h.mNext] = sample{at: now, vals: vals}
	h.mNext = (h.mNext + 1) % minuteSamples
	h.mLen = min(h.mLen+1, minuteSamples)
	if h.ticks%hourEvery == 0 {
		h.hour[h.hNext] = sample{at: now, vals: vals}
		h.hNext = (h.hNext + 1) % hourSamples
		h.hLen = min(h.hLen+1, hourSamples)
	}
	h.ticks++
}

func sampled(series []byte) bool {
	for _, p := range sampledPrefixes {
		if bytes.HasPrefix(series, []byte(p)) {
			return true
		}
	}
	return false
}

// latest is the newest minute sample, nil before the first. h.mu held.
func (h *history) latest() *sample {
	if h.mLen == 0 {
		return nil
	}
	return &h.minute[(h.mNext+minuteSamples-1)%minuteSamples]
}

// minuteSeries and hourSeries return the samples oldest first. h.mu held.
func (h *history) minuteSeries() []sample { return ring(h.minute[:], h.mNext, h.mLen) }
func (h *history) hourSeries() []sample   { return ring(h.hour[:], h.hNext, h.hLen) }

func ring(r []sample, next, n int) []sample {
	out := make([]sample, 0, n)
	for i := range n {
		out = append(out, r[(next-n+i+len(r))%len(r)])
	}
	return out
}

// val returns key i's value in s (0 when s predates the key).
func (s *sample) val(i int) float64 {
	if i < len(s.vals) {
		return s.vals[i]
	}
	return 0
}

// splitSeries splits `name{a="x",b="y"}` (the exposition's own quoting).
func splitSeries(full string) seriesKey {
	k := seriesKey{full: full, name: full, labels: map[string]string{}}
	name, rest, ok := strings.Cut(full, "{")
	if !ok {
		return k
	}
	k.name = name
	rest = strings.TrimSuffix(rest, "}")
	for rest != "" {
		lab, after, ok := strings.Cut(rest, `="`)
		if !ok {
			break
		}
		var val strings.Builder
		i := 0
		for ; i < len(after); i++ {
			c := after[i]
			if c == '\\' && i+1 < len(after) {
				i++
				switch after[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(after[i])
				}
				continue
			}
			if c == '"' {
				break
			}
			val.WriteByte(c)
		}
		k.labels[lab] = val.String()
		if i+1 >= len(after) {
			break
		}
		rest = strings.TrimPrefix(after[i+1:], ",")
	}
	return k
}
