package api

import (
	"bytes"
	"crypto/x509"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// fakeClock is a settable clock for Status.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// statusEnv serves an API whose /status shows st.
func statusEnv(t *testing.T, st *Status, monitorOnly bool) *testEnv {
	return newEnv(t, func(c *Config) {
		c.Status = st
		if monitorOnly {
			c.MonitorOnly, c.Tokens = true, nil
		}
	})
}

// The series the sampler reads, as fastpath, hsm and verify register them
// (the package-level counters of those packages are not linked into this
// test binary, so the test registers the same names).
var (
	tSigned    = metrics.GetOrCreateCounter(`shakenline_calls_signed_total{attest="A"}`)
	tBypassed  = metrics.GetOrCreateCounter(`shakenline_calls_bypassed_total{reason="timeout"}`)
	tVerPassed = metrics.GetOrCreateCounter(`shakenline_verifications_total{verstat="TN-Validation-Passed"}`)
	tHSMSigned = metrics.GetOrCreateCounter(`shakenline_hsm_signed_total{signer="hsm-a"}`)
	tHSMFail   = metrics.GetOrCreateCounter(`shakenline_hsm_failures_total{signer="hsm-a",reason="timeout"}`)
	tHSMLat    = metrics.GetOrCreateHistogram(`shakenline_hsm_sign_duration_seconds{signer="hsm-a"}`)
	tVerFailed = metrics.GetOrCreateCounter(`shakenline_verify_results_total{verstat="TN-Validation-Failed",code="438"}`)
)

func TestStatusPage(t *testing.T) {
	h := hierarchy(t)
	clk := &fakeClock{t: time.Now()}
	cert := h.SP
	xdp := []XDPStatus{{Name: "eth0", Mode: "native", Attached: true, Steered: 42}, {Name: "eth1", Mode: "native", Attached: true}}
	st := &Status{Node: "sl-test-1", Mode: "inline", Version: "v9.9-test", Started: clk.t.Add(-90 * time.Minute), Now: clk.now,
		Cert: func() *x509.Certificate { return cert },
		Signers: func() []SignerStatus {
			return []SignerStatus{
				{Name: "hsm-a", Kind: "pkcs11", State: "closed", Ready: true, Sessions: 4},
				{Name: "<soft&fallback>", Kind: "software", State: "closed", Ready: true, Sessions: 2},
			}
		},
		XDP: func() []XDPStatus { return xdp },
	}
	e := statusEnv(t, st, false)

	// 30 s of 200 signed calls/s and 50 verified/s (one a second fails
	// with 438: the caller's problem, listed but not a degradation); the
	// HSM signs 20/s at about 3 ms.
	st.Sample()
	for range 30 {
		clk.t = clk.t.Add(time.Second)
		tSigned.Add(200)
		tVerPassed.Add(50)
		tVerFailed.Inc()
		tHSMSigned.Add(20)
		for range 20 {
			tHSMLat.Update(0.003)
		}
		st.Sample()
	}
	r := e.do(t, "GET", "/status", "", "Authorization", "")
	page := string(r.body)
	if r.status != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /status: %d %q\n%s", r.status, r.header.Get("Content-Type"), page)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`, "sl-test-1", "v9.9-test", "inline", "OK: signing normally",
		`<b class="signer-name">hsm-a</b>`, "&lt;soft&amp;fallback&gt;", // names escaped
		">200</div><div class=\"l\">signed calls/s (10 s)", ">50.0</div><div class=\"l\">verified calls/s (10 s)",
		"<polyline", "expires in", cert.Subject.String(), ">eth0<", "attached", "up <b>1 h 30 min</b>",
		"verification failed: SIP 438</td><td class=\"n\">30</td>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The HSM's p50 over the last minute is in the 3 ms vmrange bucket.
	if m := regexp.MustCompile(`signer-rate">([0-9.]+)</td><td class="n">([0-9.]+) ms</td>`).FindStringSubmatch(page); m == nil {
		t.Errorf("no HSM rate and latency in the signer table")
	} else if rate, _ := strconv.ParseFloat(m[1], 64); rate != 20 {
		t.Errorf("HSM signed/s %v, want 20", rate)
	} else if p50, _ := strconv.ParseFloat(m[2], 64); p50 < 2.7 || p50 > 3.3 {
		t.Errorf("HSM p50 %v ms, want about 3", p50)
	}
	// The graph's signed line is flat at 200/s: every point has the same y.
	if m := regexp.MustCompile(`stroke="#1a7f37"[^>]*points="([^"]+)"`).FindStringSubmatch(page); m == nil {
		t.Error("no signed line in the minute graph")
	} else {
		pts := strings.Fields(m[1])
		ys := map[string]bool{}
		for _, p := range pts {
			ys[p[strings.IndexByte(p, ',')+1:]] = true
		}
		if len(pts) != 30 || len(ys) != 1 {
			t.Errorf("signed line: %d points at %d heights, want 30 at one", len(pts), len(ys))
		}
	}
	// Self-contained: no scripts, no external resources.
	for _, bad := range []string{"<script", "src=", "http://", "https://", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}

	// Trouble: bypasses over 1 %, HSM timeouts, a detached interface and a
	// certificate 2 days from expiry.
	for range 5 {
		clk.t = clk.t.Add(time.Second)
		tSigned.Add(100)
		tBypassed.Add(10)
		tHSMFail.Add(3)
		st.Sample()
	}
	xdp[1].Attached, xdp[1].FailOpen = false, true
	clk.t = cert.NotAfter.Add(-48 * time.Hour)
	r = e.do(t, "GET", "/status", "", "Authorization", "")
	page = string(r.body)
	for _, want := range []string{
		"ACTION NEEDED", "of calls bypassed in the last minute", "call bypassed (P-Identity-Bypass): timeout",
		"signer hsm-a: timeout", "XDP eth1: detached, INVITEs pass unsigned", "DETACHED", "FAIL-OPEN",
		"certificate: expires in 2 days 0 h", "[ACTION NEEDED]",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page in trouble lacks %q", want)
		}
	}
	// The error table counts the last minute: 15 timeouts at hsm-a.
	if !regexp.MustCompile(`signer hsm-a: timeout</td><td class="n">15</td>`).MatchString(page) {
		t.Errorf("error table does not count 15 HSM timeouts in the last minute")
	}

	// HEAD: headers only. POST: refused. Counted under route="status".
	if r := e.do(t, "HEAD", "/status", "", "Authorization", ""); r.status != 200 || len(r.body) != 0 {
		t.Errorf("HEAD /status: %d, %d bytes", r.status, len(r.body))
	}
	checkErr(t, e.do(t, "POST", "/status", "{}"), 405, "policyException", "POL4050")
	if m := scrape(t, e); m[`shakenline_api_requests_total{route="status",code="200"}`] < 3 {
		t.Errorf("status requests not counted: %v", m[`shakenline_api_requests_total{route="status",code="200"}`])
	}
}

// With acme: the certificate section says when the next renewal attempt
// is and when the last one succeeded; failing renewals are a warning with
// their stage and error, while the certificate itself is still fine.
func TestStatusPageRenewal(t *testing.T) {
	h := hierarchy(t)
	clk := &fakeClock{t: h.SP.NotBefore.Add(24 * time.Hour)}
	ren := &RenewalStatus{NextAttempt: clk.t.Add(90 * time.Minute), LastSuccess: clk.t.Add(-24 * time.Hour)}
	st := &Status{Mode: "proxy", Version: "v1", Now: clk.now, Cert: func() *x509.Certificate { return h.SP },
		Renewal: func() *RenewalStatus { return ren }}
	e := statusEnv(t, st, false)
	page := string(e.do(t, "GET", "/status", "", "Authorization", "").body)
	next := clk.t.Add(90*time.Minute).UTC().Format("2006-01-02 15:04 UTC") + " (in 1 h 30 min)"
	for _, want := range []string{`<dd id="renewal"><span class="pill ok">renewing through ACME</span>`, next, "(24 h 0 min ago)", "OK: signing normally"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	ren.Failures, ren.ErrorStage, ren.LastError = 3, "challenge", "tkauth-01 <refused>"
	page = string(e.do(t, "GET", "/status", "", "Authorization", "").body)
	for _, want := range []string{`<span class="pill warn">3 consecutive failures</span>`, "stage challenge: tkauth-01 &lt;refused&gt;",
		"certificate renewal: 3 consecutive failures (stage challenge)"} {
		if !strings.Contains(page, want) {
			t.Errorf("page with failing renewals lacks %q", want)
		}
	}
	st.Renewal = nil
	if page := string(e.do(t, "GET", "/status", "", "Authorization", "").body); strings.Contains(page, `id="renewal"`) {
		t.Error("renewal shown without acme")
	}
}

// /status has the auth rules of /metrics: open, also on a monitor-only
// API (no tokens), and absent when no Status is configured.
func TestStatusAuthAndAbsence(t *testing.T) {
	e := statusEnv(t, &Status{Mode: "proxy", Version: "v1"}, true)
	if r := e.do(t, "GET", "/status", "", "Authorization", ""); r.status != 200 || !bytes.Contains(r.body, []byte("no signer chain")) {
		t.Fatalf("monitor-only /status: %d\n%s", r.status, r.body)
	}
	e = newEnv(t, nil)
	checkErr(t, e.do(t, "GET", "/status", "", "Authorization", ""), 404, "serviceException", "SVC4003")
}

// Every vmrange histogram is also exposed with cumulative le buckets that
// agree exactly with the vmrange counts.
func TestExpositionLeBuckets(t *testing.T) {
	hist := metrics.GetOrCreateHistogram(`shakenline_test_latency_seconds{loop="7"}`)
	obs := []float64{4e-6, 3e-5, 0.0008, 0.0015, 0.0015, 0.003, 0.05, 0.05, 0.05, 2, 25}
	for _, v := range obs {
		hist.Update(v)
	}
	e := newEnv(t, nil)
	m := scrape(t, e)
	var prev float64
	for i, le := range leLabels {
		v, ok := m[`shakenline_test_latency_seconds_le_bucket{loop="7",le="`+le+`"}`]
		if !ok {
			t.Fatalf("no le=%q bucket", le)
		}
		bound := math.Inf(1)
		if i < len(leBounds) {
			bound = leBounds[i]
		}
		want := 0.0
		for _, o := range obs {
			if o <= bound {
				want++
			}
		}
		if v != want || v < prev {
			t.Errorf("le=%s: %v, want %v", le, v, want)
		}
		prev = v
	}
	if c := m[`shakenline_test_latency_seconds_count{loop="7"}`]; c != prev {
		t.Errorf("+Inf bucket %v, _count %v", prev, c)
	}
	// A histogram without labels gets le as its only label.
	var buf bytes.Buffer
	appendLeBuckets(&buf, []byte("x_bucket{vmrange=\"1.000e-03...1.136e-03\"} 3\nx_sum 0.003\nx_count 3\n"), new(expoBuf))
	if !strings.Contains(buf.String(), "x_le_bucket{le=\"0.001\"} 0\n") || !strings.Contains(buf.String(), "x_le_bucket{le=\"0.002154\"} 3\n") {
		t.Errorf("label-less histogram:\n%s", buf.String())
	}
}
