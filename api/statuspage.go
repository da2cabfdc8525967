package api

import (
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// statusRefresh is how often the page reloads itself (meta refresh).
const statusRefresh = 5

//go:embed statuspage.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Parse(statusHTML))

// outcome is one line of the calls/s graphs.
type outcome struct {
	label, color string
	match        func(k *seriesKey) bool
}

var outcomes = []outcome{
	{"signed", "#1a7f37", func(k *seriesKey) bool { return k.name == "shakenline_calls_signed_total" }},
	{"bypassed", "#cf222e", func(k *seriesKey) bool { return k.name == "shakenline_calls_bypassed_total" }},
	{"unsigned", "#6e7781", func(k *seriesKey) bool { return k.name == "shakenline_calls_unsigned_total" }},
	{"verified: passed", "#0969da", func(k *seriesKey) bool {
		return k.name == "shakenline_verifications_total" && k.labels["verstat"] == "TN-Validation-Passed"
	}},
	{"verified: failed", "#bc4c00", func(k *seriesKey) bool {
		return k.name == "shakenline_verifications_total" && k.labels["verstat"] == "TN-Validation-Failed"
	}},
	{"not verified", "#8250df", func(k *seriesKey) bool {
		return k.name == "shakenline_verifications_total" && k.labels["verstat"] == "No-TN-Validation"
	}},
}

const verifyFailedReason = "verification failed: SIP "

// errorReason names a sampled series as an error reason for the "last
// errors" table, or returns "" for series that are not errors.
func errorReason(k *seriesKey) string {
	l := k.labels
	switch k.name {
	case "shakenline_calls_bypassed_total":
		return "call bypassed (P-Identity-Bypass): " + l["reason"]
	case "shakenline_calls_unsigned_total":
		if l["reason"] == "malformed" {
			return "call unsigned: malformed INVITE"
		}
	case "shakenline_hsm_failures_total":
		return "signer " + l["signer"] + ": " + l["reason"]
	case "shakenline_sip_malformed_total":
		return "malformed SIP " + l["kind"]
	case "shakenline_sip_dropped_total":
		return "SIP dropped: " + l["reason"]
	case "shakenline_verify_results_total":
		if l["verstat"] == "TN-Validation-Failed" {
			return verifyFailedReason + l["code"]
		}
	case "shakenline_verifications_skipped_total":
		return "verification skipped: " + l["reason"]
	case "shakenline_verify_x5u_fetch_failures_total":
		return "x5u fetch failed"
	case "shakenline_verify_x5u_cache_persist_failures_total":
		return "x5u cache not persisted"
	case "shakenline_verify_crl_fetch_failures_total":
		return "CRL fetch failed"
	case "shakenline_verify_crl_fail_open_total":
		return "verified without a usable CRL"
	case "shakenline_api_sign_failures_total":
		return "API signing failed: " + l["reason"]
	case "shakenline_api_reloads_total":
		if l["result"] == "refused" {
			return "configuration reload refused"
		}
	case "shakenline_audit_dropped_total", "shakenline_api_audit_dropped_total":
		return "audit record dropped"
	case "shakenline_audit_write_errors_total":
		return "audit write error"
	case "shakenline_udp_send_errors_total":
		return "UDP send error"
	case "shakenline_xdp_invite_unsteered_total":
		return "XDP " + l["iface"] + ": INVITE passed unsigned (" + l["reason"] + ")"
	case "shakenline_acme_renewals_total":
		if l["result"] == "error" {
			return "ACME renewal failed"
		}
	}
	return ""
}

// Page model (statuspage.html).
type statusPage struct {
	Node, Mode, Version, Uptime, Started, Now string
	Refresh                                   int
	Level                                     string // ok, warn, crit
	Headline                                  string
	Problems                                  []problem
	Tiles                                     []tile
	Graphs                                    []graph
	Signers                                   []signerRow
	Cert                                      *certView
	XDP                                       []XDPStatus
	XDPNote                                   string
	Checks                                    []checkRow
	Errors                                    []errorRow
	Sampled                                   string
}

type tile struct{ Label, Value, Level string }

// problem is one line of the banner: crit (needs action) or warn.
type problem struct{ Text, Level string }

type graph struct {
	Title      string
	W, H       int
	Left, Top  int
	PlotW      int
	PlotH      int
	YMax       string
	YMid       string
	MidY       int
	XLabels    []axisLabel
	Lines      []graphLine
	Empty      bool
	Bottom     int
	LabelY     int
	GridRight  int
	LegendNote string
}

type axisLabel struct {
	X    int
	Text string
}

type graphLine struct {
	Label, Color, Points, Now string
}

type signerRow struct {
	Pos                                int
	Name, Kind, State, StateLevel      string
	Ready                              bool
	Sessions, Queue                    int
	Rate, P50, P99, LastError, Samples string
}

type certView struct {
	Subject, Issuer, Serial, Fingerprint, NotBefore, NotAfter, Left, Level string
	Renewal                                                                *renewalView
}

type renewalView struct {
	State, Level, NextAttempt, LastSuccess, ErrorStage, LastError string
}

type checkRow struct{ Name, Result, Level string }

type errorRow struct {
	Reason, Minute, Hour, Total, Seen, Level string
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Status
	p := st.page(s.cfg.Ready)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	if err := statusTmpl.Execute(w, p); err != nil {
		s.log.Debug("status page", "err", err)
	}
}

// page computes the page from the sampled history and the live state.
func (st *Status) page(ready []Check) *statusPage {
	now := st.now()
	p := &statusPage{Mode: st.Mode, Version: st.Version, Refresh: statusRefresh, Now: now.UTC().Format("2006-01-02 15:04:05 UTC")}
	if p.Node = st.Node; p.Node == "" {
		p.Node = "appliance"
	}
	if !st.Started.IsZero() {
		p.Uptime = fmtDuration(now.Sub(st.Started))
		p.Started = st.Started.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	var crit, warn []string

	// Readiness.
	var results []CheckResult
	if st.Ready != nil {
		results = st.Ready()
	} else {
		for _, c := range ready {
			results = append(results, CheckResult{Name: c.Name, Err: c.Fn()})
		}
	}
	for _, c := range results {
		row := checkRow{Name: c.Name, Result: "ok", Level: "ok"}
		if c.Err != nil {
			row.Result, row.Level = c.Err.Error(), "crit"
			crit = append(crit, "not ready: "+c.Name+": "+c.Err.Error())
		}
		p.Checks = append(p.Checks, row)
	}

	h := st.history()
	h.mu.Lock()
	mins, hours := h.minuteSeries(), h.hourSeries()
	keys := h.keys
	last := append([]time.Time(nil), h.last...)
	h.mu.Unlock()
	if len(mins) > 0 {
		p.Sampled = fmt.Sprintf("%d samples over %s", len(mins), fmtDuration(mins[len(mins)-1].at.Sub(mins[0].at)))
	}

	// Rates now (last 10 s) and over the last minute.
	ten := window(mins, 10)
	rate := func(o outcome, ss []sample) float64 { return rateOver(keys, ss, o.match) }
	signed, bypassed, unsigned := rate(outcomes[0], ten), rate(outcomes[1], ten), rate(outcomes[2], ten)
	verified := rate(outcomes[3], ten) + rate(outcomes[4], ten) + rate(outcomes[5], ten)
	mSigned, mBypassed := rate(outcomes[0], mins), rate(outcomes[1], mins)
	bypassLevel := "ok"
	ratio := 0.0
	if mSigned+mBypassed > 0 {
		ratio = mBypassed / (mSigned + mBypassed)
	}
	switch {
	case ratio > 0.01:
		bypassLevel = "crit"
		crit = append(crit, fmt.Sprintf("%.1f%% of calls bypassed in the last minute", 100*ratio))
	case mBypassed > 0:
		bypassLevel = "warn"
		warn = append(warn, fmt.Sprintf("%.2f%% of calls bypassed in the last minute", 100*ratio))
	}
	p.Tiles = []tile{
		{"signed calls/s (10 s)", fmtRate(signed), "ok"},
		{"bypassed calls/s (10 s)", fmtRate(bypassed), map[bool]string{true: "crit", false: "ok"}[bypassed > 0]},
		{"unsigned calls/s (10 s)", fmtRate(unsigned), "ok"},
		{"verified calls/s (10 s)", fmtRate(verified), "ok"},
		{"bypass ratio (1 min)", fmt.Sprintf("%.2f%%", 100*ratio), bypassLevel},
	}
	p.Graphs = []graph{
		drawGraph("Calls/s by outcome, last minute (1 s steps)", keys, mins, now, time.Minute, []string{"-60 s", "-45 s", "-30 s", "-15 s", "now"}),
		drawGraph("Calls/s by outcome, last hour (10 s steps)", keys, hours, now, time.Hour, []string{"-60 min", "-45 min", "-30 min", "-15 min", "now"}),
	}

	// Signers.
	if st.Signers != nil {
		for i, sg := range st.Signers() {
			row := signerRow{Pos: i + 1, Name: sg.Name, Kind: sg.Kind, State: sg.State, Ready: sg.Ready,
				Sessions: sg.Sessions, Queue: sg.Queue, LastError: sg.LastError, StateLevel: "ok"}
			switch {
			case sg.State == "open":
				row.StateLevel = "crit"
				warn = append(warn, "signer "+sg.Name+": breaker open")
			case sg.State != "closed":
				row.StateLevel = "warn"
				warn = append(warn, "signer "+sg.Name+": breaker "+sg.State)
			case !sg.Ready:
				row.StateLevel = "crit"
				warn = append(warn, "signer "+sg.Name+": not ready")
			}
			n := sg.Name
			row.Rate = fmtRate(rateOver(keys, mins, func(k *seriesKey) bool {
				return k.name == "shakenline_hsm_signed_total" && k.labels["signer"] == n
			}))
			p50, p99, cnt := latencyOver(keys, mins, n)
			row.P50, row.P99 = fmtLatency(p50), fmtLatency(p99)
			row.Samples = strconv.FormatUint(cnt, 10)
			p.Signers = append(p.Signers, row)
		}
	}

	// Certificate.
	if st.Cert != nil {
		if c := st.Cert(); c != nil {
			cv := certOf(c, now)
			switch cv.Level {
			case "crit":
				crit = append(crit, "certificate: "+cv.Left)
			case "warn":
				warn = append(warn, "certificate: "+cv.Left)
			}
			if st.Renewal != nil {
				if r := st.Renewal(); r != nil {
					cv.Renewal = renewalOf(r, now)
					if r.Failures > 0 {
						warn = append(warn, "certificate renewal: "+cv.Renewal.State+" (stage "+r.ErrorStage+")")
					}
				}
			}
			p.Cert = cv
		}
	}

	// XDP.
	if st.XDP != nil {
		p.XDP = st.XDP()
		for _, x := range p.XDP {
			switch {
			case x.Err != "":
				crit = append(crit, "XDP "+x.Name+": "+x.Err)
			case !x.Attached:
				crit = append(crit, "XDP "+x.Name+": detached, INVITEs pass unsigned")
			case x.FailOpen:
				crit = append(crit, "XDP "+x.Name+": failing open, INVITEs pass unsigned")
			}
		}
	} else {
		p.XDPNote = "no XDP in " + st.Mode + " mode"
	}

	// Last errors by reason.
	p.Errors = errorRows(keys, mins, hours, last, now)
	for _, e := range p.Errors {
		// Calls that fail verification are the callers' problem, not the
		// appliance's: listed, but they do not make the page amber.
		if e.Level == "warn" && !strings.HasPrefix(e.Reason, verifyFailedReason) && len(warn) < 8 {
			warn = append(warn, e.Reason+" (last minute: "+e.Minute+")")
		}
	}

	for _, c := range crit {
		p.Problems = append(p.Problems, problem{c, "crit"})
	}
	for _, w := range warn {
		p.Problems = append(p.Problems, problem{w, "warn"})
	}
	switch {
	case len(crit) > 0:
		p.Level, p.Headline = "crit", "ACTION NEEDED"
	case len(warn) > 0:
		p.Level, p.Headline = "warn", "DEGRADED"
	default:
		p.Level, p.Headline = "ok", "OK: signing normally"
	}
	return p
}

func certOf(c *x509.Certificate, now time.Time) *certView {
	fp := sha256.Sum256(c.Raw)
	cv := &certView{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: c.SerialNumber.Text(16),
		Fingerprint: hex.EncodeToString(fp[:8]) + "…", NotBefore: c.NotBefore.UTC().Format("2006-01-02 15:04 UTC"),
		NotAfter: c.NotAfter.UTC().Format("2006-01-02 15:04 UTC"), Level: "ok",
	}
	left := c.NotAfter.Sub(now)
	switch {
	case left <= 0:
		cv.Left, cv.Level = "EXPIRED "+fmtDuration(-left)+" ago", "crit"
	case now.Before(c.NotBefore):
		cv.Left, cv.Level = "not valid before "+cv.NotBefore, "crit"
	case left < 3*24*time.Hour:
		cv.Left, cv.Level = "expires in "+fmtDuration(left), "crit"
	case left < 14*24*time.Hour:
		cv.Left, cv.Level = "expires in "+fmtDuration(left), "warn"
	default:
		cv.Left = "expires in " + fmtDuration(left)
	}
	return cv
}

func renewalOf(r *RenewalStatus, now time.Time) *renewalView {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "none"
		}
		s := t.UTC().Format("2006-01-02 15:04 UTC")
		if d := t.Sub(now); d > 0 {
			return s + " (in " + fmtDuration(d) + ")"
		}
		return s + " (" + fmtDuration(now.Sub(t)) + " ago)"
	}
	v := &renewalView{State: "renewing through ACME", Level: "ok", NextAttempt: at(r.NextAttempt), LastSuccess: at(r.LastSuccess)}
	if r.Failures > 0 {
		v.Level, v.ErrorStage, v.LastError = "warn", r.ErrorStage, r.LastError
		v.State = strconv.Itoa(r.Failures) + " consecutive failures"
		if r.Failures == 1 {
			v.State = "1 failure"
		}
	}
	return v
}

func fmtRate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func fmtCount(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

func fmtLatency(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v < 1e-3:
		return fmt.Sprintf("%.0f µs", v*1e6)
	case v < 1:
		return fmt.Sprintf("%.1f ms", v*1e3)
	default:
		return fmt.Sprintf("%.2f s", v)
	}
}

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%d days %d h", int(d.Hours())/24, int(d.Hours())%24)
	}
}
