package compare

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/shakenline/shakenline/bench/loadgen"
)

// Goal targets of issue 8.
const (
	goalSpeedup   = 5.0    // appliance signed calls/s over Kamailio + secsipid
	goalCostRatio = 1.5    // appliance CPU per signed call over one openssl signature
	goalP99Micros = 1000.0 // added latency p99 at 80 % of the highest clean rate
	goalTCPShare  = 0.70   // appliance signed calls/s over TCP as a share of over UDP (issue 22)
)

// Report reads run.json and the step files in dir and writes dir/README.md
// and the plots there. latest (if set) gets the same report, detached from
// the raw files (see Markdown): the copy that is committed. history (if
// set) gets the run's row (UpdateHistory).
func Report(dir, latest, history string) error {
	r, err := LoadRun(dir)
	if err != nil {
		return err
	}
	plotErr := plots(dir, r)
	md := Markdown(r, "", methodLink(dir), plotErr, false)
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	if latest != "" {
		md := Markdown(r, displayDir(dir), methodLink(filepath.Dir(latest)), plotErr, true)
		if err := os.WriteFile(latest, []byte(md), 0o644); err != nil {
			return fmt.Errorf("compare: %w", err)
		}
	}
	if history != "" {
		return UpdateHistory(history, r)
	}
	return nil
}

// LoadRun reads run.json of the run directory dir, with the ramps read back
// from its step files (the raw record).
func LoadRun(dir string) (*Run, error) {
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("compare: %s/run.json: %w", dir, err)
	}
	for i := range r.Setups {
		f, err := os.Open(filepath.Join(dir, "steps-"+r.Setups[i].Setup.Name+".jsonl"))
		if err != nil {
			continue
		}
		sum, err := ParseSteps(f, r.Params.LossPct)
		f.Close()
		if err == nil {
			r.Setups[i].Summary = sum
		}
	}
	return &r, nil
}

// displayDir is dir as a reader finds it: relative to the module root
// (bench/results/2026-11-23-2142/) where it lies below it, else as given;
// with a trailing slash.
func displayDir(dir string) string {
	shown := dir
	if root, err := moduleRoot(); err == nil {
		if abs, err := filepath.Abs(dir); err == nil {
			if rel, err := filepath.Rel(root, abs); err == nil && !strings.HasPrefix(rel, "..") {
				shown = rel
			}
		}
	}
	return filepath.ToSlash(shown) + "/"
}

func (r *Run) setup(name string) *SetupResult {
	for i := range r.Setups {
		if r.Setups[i].Setup.Name == name {
			return &r.Setups[i]
		}
	}
	return nil
}

func us(v float64) string {
	switch {
	case v == 0:
		return "–"
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// cleanRate is the highest clean rate as text, "≥" when the generator,
// not the system under test, ended the ramp.
func cleanRate(s *SetupResult) string {
	if s == nil || s.Error != "" && s.Summary.MaxCleanRate == 0 {
		return "failed"
	}
	v := fmt.Sprintf("%.0f", s.Summary.MaxCleanRate)
	if s.Summary.Stop == "generator" || s.Summary.Stop == "max-steps" || s.Summary.Stop == "max-rate" {
		v = "≥ " + v
	}
	return v
}

// Goals holds the three issue 8 goals as computed from a run.
type Goals struct {
	Speedup, CostRatio, P99 float64
	SpeedupLowerBound       bool
	// Known[i] says goal i was measured, OK[i] that it was met (0 speedup,
	// 1 cost per call, 2 latency).
	Known, OK [3]bool
}

// ComputeGoals evaluates the goals from a run.
func ComputeGoals(r *Run) Goals {
	var g Goals
	app, kam := r.setup("appliance-sign-soft"), r.setup("kamailio-sign")
	if app != nil && kam != nil && kam.Summary.MaxCleanRate > 0 && app.Summary.MaxCleanRate > 0 {
		g.Speedup = app.Summary.MaxCleanRate / kam.Summary.MaxCleanRate
		g.SpeedupLowerBound = app.Summary.Stop == "generator"
		g.Known[0], g.OK[0] = true, g.Speedup >= goalSpeedup
	}
	if app != nil && app.Fixed != nil && app.Fixed.CPUMicros > 0 && r.OpenSSL != nil && r.OpenSSL.SignPerSec > 0 {
		g.CostRatio = app.Fixed.CPUMicros / r.OpenSSL.SignMicros()
		g.Known[1], g.OK[1] = true, g.CostRatio <= goalCostRatio
	}
	if app != nil && app.Fixed != nil && app.Fixed.Result.Received > 0 {
		g.P99 = app.Fixed.Result.Latency.P99
		g.Known[2], g.OK[2] = true, g.P99 < goalP99Micros
	}
	return g
}

func verdict(known, ok bool) string {
	switch {
	case !known:
		return "not measured"
	case ok:
		return "**met**"
	default:
		return "**not met**"
	}
}

// floorAt returns the floor-direct step nearest to rate (latency context).
func floorAt(r *Run, rate float64) *loadgen.Result {
	f := r.setup("floor-direct")
	if f == nil {
		return nil
	}
	var best *loadgen.Result
	for i := range f.Summary.Steps {
		st := &f.Summary.Steps[i]
		if best == nil || math.Abs(st.TargetRate-rate) < math.Abs(best.TargetRate-rate) {
			best = st
		}
	}
	return best
}

// kernelStamped reports whether the run's latencies come from kernel
// timestamps (runs before the harness used them have none recorded).
func kernelStamped(r *Run) (rx, tx bool) {
	for _, s := range r.Setups {
		for _, st := range s.Summary.Steps {
			rx = rx || st.RxKernelStamped > 0
			tx = tx || st.TxKernelStamped > 0
		}
	}
	return rx, tx
}

// latencyWhat is the short name of what the latency columns measure.
func latencyWhat(r *Run) string {
	switch rx, tx := kernelStamped(r); {
	case rx && tx:
		return "sink kernel RX stamp − generator kernel TX stamp"
	case rx:
		return "sink kernel RX stamp − send time before sendmmsg"
	default:
		return "sink read time − send time, one process clock"
	}
}

// LatencyMethod is the sentence that says how the run's latency was taken.
func LatencyMethod(r *Run) string {
	switch rx, tx := kernelStamped(r); {
	case rx && tx:
		return "Latency is one-way per INVITE: the kernel's software receive timestamp at the sink's socket (SO_TIMESTAMPNS) minus the kernel's software transmit timestamp of the generator's datagram (SO_TIMESTAMPING, read from the error queue), both CLOCK_REALTIME; that is the proxy's time plus two loopback hops, without the generator's batching or the sink's scheduling."
	case rx:
		return "Latency is one-way per INVITE: the kernel's software receive timestamp at the sink's socket (SO_TIMESTAMPNS) minus the wall-clock time read just before the generator's sendmmsg, both CLOCK_REALTIME."
	default:
		return "Latency is one-way, generator → proxy → sink, same process clock (sink read time minus send time: the sink's scheduling and the generator's batching count)."
	}
}

// Summary is the headline table and goals. prefix leads from the report to
// the run directory; detached says the run directory's files are not beside
// the report (Markdown).
func Summary(r *Run, prefix string, detached bool) string {
	var b strings.Builder
	kind := "full run"
	if r.Params.Quick {
		kind = "QUICK run (short steps: indicative only)"
	}
	full := fmt.Sprintf("Full report: [%sREADME.md](%sREADME.md).", prefix, prefix)
	if detached {
		full = fmt.Sprintf("Full report with plots: `%sREADME.md` on the machine that ran it (not in git).", prefix)
	}
	fmt.Fprintf(&b, "Run of %s, %s, %s (%d cores, kernel %s), load average %s at start and %s at end (cores shared with other work). %s\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), kind, r.Env.CPUModel, r.Env.Cores, r.Env.Kernel, r.Env.LoadStart, r.Env.LoadEnd, full)
	b.WriteString("Highest clean rate: the highest offered rate whose step lost at most " + fmt.Sprintf("%.1f", r.Params.LossPct) + " % of INVITEs at the sink and, for signing setups, also delivered at least " + fmt.Sprintf("%.1f", 100-r.Params.LossPct) + " % of them signed (a bypassed call counts as lost). " + LatencyMethod(r) + "\n\n")
	fmt.Fprintf(&b, "| setup | highest clean rate (calls/s) | p50 / p99 at it (µs, %[1]s) | highest rate at the latency objective (calls/s; p99 at it, µs) | at 80 %%: rate, p50 / p99 (µs, %[1]s) | SUT CPU per call (µs) | with Identity |\n", latencyWhat(r))
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for i := range r.Setups {
		s := &r.Setups[i]
		best := "–"
		if s.Summary.Best != nil {
			best = us(s.Summary.Best.Latency.P50) + " / " + us(s.Summary.Best.Latency.P99)
		}
		fixed, cpu, ident := "–", "–", "–"
		if f := s.Fixed; f != nil {
			fixed = fmt.Sprintf("%.0f/s, %s / %s", f.Rate, us(f.Result.Latency.P50), us(f.Result.Latency.P99)) + notSustained(s, r.Params)
			if f.CPUMicros > 0 {
				cpu = fmt.Sprintf("%.1f", f.CPUMicros)
			}
			if f.Result.Received > 0 {
				ident = fmt.Sprintf("%.1f %%", 100*float64(f.Result.WithIdentity)/float64(f.Result.Received))
			}
		}
		name := s.Setup.Title
		if s.Error != "" {
			name += " (error: see report)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", name, cleanRate(s), best, sloCell(s), fixed, cpu, ident)
	}
	g := ComputeGoals(r)
	b.WriteString("\n| goal | target | measured | verdict |\n|---|---|---|---|\n")
	sp := fmt.Sprintf("%.1f×", g.Speedup)
	if g.SpeedupLowerBound {
		sp = "≥ " + sp + " (appliance ramp ended by the generator)"
	}
	fmt.Fprintf(&b, "| appliance signed calls/s vs Kamailio + secsipid | ≥ %.0f× | %s | %s |\n", goalSpeedup, sp, verdict(g.Known[0], g.OK[0]))
	ossl := "–"
	if r.OpenSSL != nil {
		ossl = us(r.OpenSSL.SignMicros())
	}
	cost := "–"
	if app := r.setup("appliance-sign-soft"); app != nil && app.Fixed != nil {
		cost = fmt.Sprintf("%.1f µs / %s µs = %.2f×", app.Fixed.CPUMicros, ossl, g.CostRatio)
	}
	fmt.Fprintf(&b, "| appliance CPU per signed call vs one `openssl speed ecdsap256` signature | ≤ %.1f× | %s | %s |\n", goalCostRatio, cost, verdict(g.Known[1], g.OK[1]))
	p99 := fmt.Sprintf("%s µs", us(g.P99))
	if app := r.setup("appliance-sign-soft"); app != nil && app.Fixed != nil {
		if f := floorAt(r, app.Fixed.Rate); f != nil {
			p99 += fmt.Sprintf(" (generator → sink alone at %.0f/s: %s µs)", f.TargetRate, us(f.Latency.P99))
		}
		if app.Fixed.Result.RxKernelStamped > 0 && app.Fixed.StealMs >= 0 {
			p99 += fmt.Sprintf("; hypervisor steal during that run: %.0f ms", app.Fixed.StealMs)
		}
	}
	if st := r.Stalls; st != nil {
		p99 += "; " + stallSentence(st)
	}
	fmt.Fprintf(&b, "| added latency p99 at 80 %% of the appliance's highest clean rate | < %.0f µs | %s | %s |\n", goalP99Micros, p99, verdict(g.Known[2], g.OK[2]))
	b.WriteString(sloGoalRows(r))
	b.WriteString(streamSummary(r))
	return b.String()
}

// streamSummary is the SIP over TCP and TLS goals (issue 22), when the run
// has the stream setups: signed calls/s over TCP against UDP on the same
// core, and against Kamailio + secsipid over TCP, all in the same run; TLS
// beside TCP.
// sustainedNote qualifies a goal computed from s's highest clean rate when
// s's run at 80 % of it was not clean.
func sustainedNote(s *SetupResult, p Params) string {
	if s == nil || notSustained(s, p) == "" {
		return ""
	}
	f := s.Fixed
	return fmt.Sprintf(" (steps of %.1f s; the %.0f s run at 80 %% lost %.1f %%, %.1f %% not delivered signed: not sustained)",
		p.StepDuration.Seconds(), p.Fixed.Seconds(), f.Result.LossPct, UnsignedPct(f.Result))
}

// notSustained flags a setup whose run at 80 % of its highest clean rate
// (longer than a ramp step) was not clean itself: the ramp's steps were
// carried by queues and buffers (a stream's socket buffers hold about a
// second of calls) rather than by throughput. "" when it was clean.
func notSustained(s *SetupResult, p Params) string {
	f := s.Fixed
	if f == nil || f.Result.Sent == 0 || clean(f.Result, p, s.Setup.Signs) {
		return ""
	}
	if !s.Setup.Signs {
		return fmt.Sprintf(" **not sustained: %.1f %% lost**", f.Result.LossPct)
	}
	return fmt.Sprintf(" **not sustained: %.1f %% lost, %.1f %% not delivered signed**", f.Result.LossPct, UnsignedPct(f.Result))
}

func streamSummary(r *Run) string {
	udp, tcp, tls, kam := r.setup("appliance-sign-soft"), r.setup("appliance-sign-soft-tcp"), r.setup("appliance-sign-soft-tls"), r.setup("kamailio-sign-tcp")
	if tcp == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nSIP over TCP and TLS (" + strconv.Itoa(StreamConns) + " persistent connections from the generator; the SUT connects to the sink over the same transport; latency over a stream is the sink's read time minus the send time in the Call-ID, so the generator's and the sink's scheduling count):\n\n")
	b.WriteString("| goal | target | measured | verdict |\n|---|---|---|---|\n")
	rate := func(s *SetupResult) float64 {
		if s == nil {
			return 0
		}
		return s.Summary.MaxCleanRate
	}
	lower := func(s *SetupResult) string {
		if s != nil && (s.Summary.Stop == "generator" || s.Summary.Stop == "max-steps") {
			return "≥ "
		}
		return ""
	}
	if rate(tcp) > 0 && rate(udp) > 0 {
		share := rate(tcp) / rate(udp)
		fmt.Fprintf(&b, "| appliance signed calls/s over TCP vs over UDP, same core | ≥ %.0f %% | %s%.0f / %s%.0f = %s%.0f %%%s | %s |\n", 100*goalTCPShare,
			lower(tcp), rate(tcp), lower(udp), rate(udp), lower(tcp), 100*share, sustainedNote(tcp, r.Params), verdict(true, share >= goalTCPShare))
	} else {
		fmt.Fprintf(&b, "| appliance signed calls/s over TCP vs over UDP, same core | ≥ %.0f %% | – | not measured |\n", 100*goalTCPShare)
	}
	if rate(tcp) > 0 && rate(kam) > 0 {
		sp := rate(tcp) / rate(kam)
		fmt.Fprintf(&b, "| appliance signed calls/s over TCP vs Kamailio + secsipid over TCP | ≥ %.0f× | %s%.0f / %.0f = %s%.1f×%s | %s |\n", goalSpeedup,
			lower(tcp), rate(tcp), rate(kam), lower(tcp), sp, sustainedNote(tcp, r.Params), verdict(true, sp >= goalSpeedup))
	} else {
		fmt.Fprintf(&b, "| appliance signed calls/s over TCP vs Kamailio + secsipid over TCP | ≥ %.0f× | – | not measured |\n", goalSpeedup)
	}
	cpu := func(s *SetupResult) string {
		if s == nil || s.Fixed == nil || s.Fixed.CPUMicros == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f µs", s.Fixed.CPUMicros)
	}
	if tls != nil {
		fmt.Fprintf(&b, "| TLS beside TCP: signed calls/s, CPU per signed call at 80 %% | (reported) | TLS %s%.0f/s, %s; TCP %s%.0f/s, %s; UDP %s | – |\n",
			lower(tls), rate(tls), cpu(tls), lower(tcp), rate(tcp), cpu(tcp), cpu(udp))
	}
	return b.String()
}

// Markdown is the full report; prefix is prepended to image and file links
// ("" in the run directory). A detached report (detached true, prefix the
// run directory as a reader finds it) is the one committed as
// bench/results/latest.md, while the run directory stays out of git: it
// shows no images, links no raw file, and says how to regenerate them.
func Markdown(r *Run, prefix, method, plotErr string, detached bool) string {
	var b strings.Builder
	b.WriteString("# Shakenline side-by-side benchmark\n\n")
	b.WriteString("Generated by `make bench` (bench/run.sh, bench/compare); method in [bench/README.md](" + method + ").\n\n")
	if detached {
		fmt.Fprintf(&b, "This is the summary of the newest full run that is kept in git; each full run also adds its row to history.md beside it. "+
			"The raw data (run.json, steps-*.jsonl, plots, tool outputs, logs) stays in `%s` and out of git: "+
			"`make bench` measures a new run, and `bin/shakecompare report --out %s --latest bench/results/latest.md` redraws this report from that directory.\n\n", prefix, prefix)
	}
	b.WriteString(Summary(r, prefix, detached))
	fmt.Fprintf(&b, "\n## Machine and layout\n\n- CPU: %s, %d cores; kernel %s; %s\n- %s\n- %s; %s; %s\n- ramp: from %.0f calls/s, ×%.2f per step, %v per step, stop when loss > %.1f %% (a failing step is retried once), then %d bisection steps between the last clean and the first failing rate; then %v at %.0f %% of the highest clean rate for CPU and latency\n- run from %s to %s\n",
		r.Env.CPUModel, r.Env.Cores, r.Env.Kernel, r.Env.Go, r.Env.Layout, r.Env.Appliance, r.Env.Kamailio, r.Env.OpenSSL,
		r.Params.Start, r.Params.Factor, r.Params.StepDuration, r.Params.LossPct, r.Params.Refine, r.Params.Fixed, 100*r.Params.FixedFraction,
		r.Started.Format("15:04:05"), r.Finished.Format("15:04:05 UTC"))
	if st := r.Stalls; st != nil {
		fmt.Fprintf(&b, "- stall meter on CPU %d before the setups (a thread that only reads the clock, %.0f s; `shakecompare stalls`): %s\n\n", st.CPU, st.Seconds, stallTable(st))
	} else if r.StallsErr != "" {
		fmt.Fprintf(&b, "- stall meter: %s\n", r.StallsErr)
	}
	fmt.Fprintf(&b, "- other load on the machine at start (ps, %%CPU):\n\n```\n%s\n```\n", r.Env.TopStart)

	b.WriteString("\n## Signing cost separated from SIP cost\n\n")
	b.WriteString("CPU of the system under test per call at 80 % of its own highest clean rate (each call: INVITE in and out, 200 OK in and out).\n\n")
	b.WriteString("| | forward only (µs/call) | signing (µs/call) | signing cost (µs/call) |\n|---|---:|---:|---:|\n")
	for _, pair := range [][3]string{{"appliance (software key)", "appliance-forward", "appliance-sign-soft"}, {"appliance (softhsm2)", "appliance-forward", "appliance-sign-hsm"}, {"Kamailio + secsipid", "kamailio-forward", "kamailio-sign"}} {
		fw, sg := r.setup(pair[1]), r.setup(pair[2])
		if fw == nil || sg == nil || fw.Fixed == nil || sg.Fixed == nil {
			fmt.Fprintf(&b, "| %s | – | – | – |\n", pair[0])
			continue
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f |\n", pair[0], fw.Fixed.CPUMicros, sg.Fixed.CPUMicros, sg.Fixed.CPUMicros-fw.Fixed.CPUMicros)
	}
	if r.OpenSSL != nil {
		fmt.Fprintf(&b, "\n`openssl speed -seconds %d ecdsap256` on CPU %d, same run: %.0f sign/s = **%.1f µs per signature**, %.0f verify/s.\n",
			r.Params.OpenSSLSeconds, r.Params.SUTCPU, r.OpenSSL.SignPerSec, r.OpenSSL.SignMicros(), r.OpenSSL.VerifyPerSec)
	}

	b.WriteString("\n## softhsm2: raw C_Sign beside the appliance\n\n")
	if len(r.HSMRaw) > 0 {
		b.WriteString("`bench/hsmraw` pinned to the same core as the appliance (one core: more sessions cannot add CPU, they show locking and queueing cost).\n\n| sessions | raw C_Sign/s | hsm.Chain sig/s |\n|---:|---:|---:|\n")
		writeSessionTable(&b, r.HSMRaw, "Sign/")
		if h := r.setup("appliance-sign-hsm"); h != nil {
			fmt.Fprintf(&b, "\nAppliance signed calls/s through softhsm2 (highest clean rate): %s.\n", cleanRate(h))
		}
		var other []string
		for _, l := range r.HSMRaw {
			if !strings.HasPrefix(l.Name, "Sign/") {
				var ms []string
				for k, v := range l.Metrics {
					if k != "ns/op" && k != "B/op" && k != "allocs/op" {
						ms = append(ms, fmt.Sprintf("%s %.4g", k, v))
					}
				}
				sort.Strings(ms)
				other = append(other, fmt.Sprintf("- %s: %s", l.Name, strings.Join(ms, ", ")))
			}
		}
		if len(other) > 0 {
			b.WriteString("\nOther bench/hsmraw results:\n\n" + strings.Join(other, "\n") + "\n")
		}
	} else {
		fmt.Fprintf(&b, "Not measured: %s\n", r.HSMRawErr)
	}

	b.WriteString(hsmRatioText(r))
	b.WriteString(netHSMText(r))

	b.WriteString("\n## Where the time goes\n\n")
	b.WriteString(profileText(r))

	b.WriteString("\n## Plots\n\n")
	switch {
	case plotErr != "":
		fmt.Fprintf(&b, "Plots not drawn: %s\n", plotErr)
	case detached:
		fmt.Fprintf(&b, "`throughput.png`, `latency-p99.png` and `latency-<setup>.png` in `%s` (not in git).\n", prefix)
	default:
		fmt.Fprintf(&b, "![throughput](%sthroughput.png)\n\n![p99 latency](%slatency-p99.png)\n\n", prefix, prefix)
		for _, s := range r.Setups {
			if len(s.Summary.Steps) > 0 {
				fmt.Fprintf(&b, "![%s](%slatency-%s.png)\n", s.Setup.Name, prefix, s.Setup.Name)
			}
		}
	}

	b.WriteString("\n## Per setup\n\n")
	for _, s := range r.Setups {
		fmt.Fprintf(&b, "### %s (`%s`)\n\n", s.Setup.Title, s.Setup.Name)
		if s.Error != "" {
			fmt.Fprintf(&b, "Error: `%s`\n\n", s.Error)
		}
		raw := fmt.Sprintf("[steps-%s.jsonl](%ssteps-%s.jsonl)", s.Setup.Name, prefix, s.Setup.Name)
		if detached {
			raw = fmt.Sprintf("`%ssteps-%s.jsonl`", prefix, s.Setup.Name)
		}
		fmt.Fprintf(&b, "Ramp stopped by: %s. Steps retried once: %v. Raw steps: %s.\n\n", s.Summary.Stop, s.Retries, raw)
		if f := s.Fixed; f != nil && f.Result.RxKernelStamped > 0 {
			fmt.Fprintf(&b, "Latency of the 80 %% run timed by kernel stamps: receive %d of %d INVITEs, transmit %d of %d; %d arrived stamped before their send time.\n\n",
				f.Result.RxKernelStamped, f.Result.Received, f.Result.TxKernelStamped, f.Result.Sent, f.Result.LatencyNegative)
			if f.StealMs >= 0 {
				fmt.Fprintf(&b, "Hypervisor steal time (all vCPUs, /proc/stat) during the 80 %% run: %.0f ms of %.1f s.\n\n", f.StealMs, r.Params.Fixed.Seconds())
			}
		}
		b.WriteString("| offered/s | sent/s | loss % | signed % | p50 µs | p90 µs | p99 µs | p99.9 µs | SUT CPU % |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for i, st := range s.Summary.Steps {
			cpu := "–"
			if i < len(s.StepCPU) && s.Setup.SUT != "" && st.SendSeconds > 0 {
				cpu = fmt.Sprintf("%.0f", 100*s.StepCPU[i]/(st.SendSeconds+r.Params.Drain.Seconds()/2))
			}
			l := st.Latency
			signed := "–"
			if s.Setup.Signs && st.Sent > 0 {
				signed = fmt.Sprintf("%.2f", 100-UnsignedPct(st))
			}
			fmt.Fprintf(&b, "| %.0f | %.0f | %.3f | %s | %s | %s | %s | %s | %s |\n", st.TargetRate, st.AchievedRate, st.LossPct, signed, us(l.P50), us(l.P90), us(l.P99), us(l.P999), cpu)
		}
		if len(s.Metrics) > 0 {
			var ks []string
			for k := range s.Metrics {
				if strings.Contains(k, "calls_") || strings.Contains(k, "bypass") || strings.Contains(k, "unsigned") {
					ks = append(ks, k)
				}
			}
			sort.Strings(ks)
			b.WriteString("\nAppliance counters at the end:\n\n```\n")
			for _, k := range ks {
				fmt.Fprintf(&b, "%s %.0f\n", k, s.Metrics[k])
			}
			b.WriteString("```\n")
		}
		if s.Fixed != nil && s.Fixed.Result.VerifyOK+s.Fixed.Result.VerifyFailed > 0 {
			fmt.Fprintf(&b, "\nSink verified %d of a sample of Identity headers, %d failed.\n", s.Fixed.Result.VerifyOK, s.Fixed.Result.VerifyFailed)
		}
		if s.Setup.Relay {
			fmt.Fprintf(&b, "\nRelay: %d datagrams forwarded, %d responses routed back to it dropped.\n", s.Relay.Forwarded, s.Relay.Backed)
		}
		if o := s.SLO; o != nil && len(o.Steps) > 0 {
			fmt.Fprintf(&b, "\nSteps run for the highest rate at the latency objective (p99 ≤ %s µs, loss ≤ %.1f %%; the ramp's steps above count too; retried once: %v):\n\n", us(o.TargetMicros), r.Params.LossPct, o.Retries)
			b.WriteString("| offered/s | loss % | signed % | p50 µs | p99 µs | within |\n|---:|---:|---:|---:|---:|---|\n")
			for _, st := range o.Steps {
				signed := "–"
				if s.Setup.Signs && st.Sent > 0 {
					signed = fmt.Sprintf("%.2f", 100-UnsignedPct(st))
				}
				within := "no"
				if meets(st, r.Params, s.Setup.Signs, o.TargetMicros) {
					within = "yes"
				}
				fmt.Fprintf(&b, "| %.0f | %.3f | %s | %s | %s | %s |\n", st.TargetRate, st.LossPct, signed, us(st.Latency.P50), us(st.Latency.P99), within)
			}
		}
		if d := s.Device; d != nil {
			fmt.Fprintf(&b, "\nEmulated HSM at the end: %d signatures, %d C_Sign errors, at most %d C_Sign in flight, %d sessions; nonce pool %d of %d used, %d computed on the spot.\n",
				d.Signs, d.SignErrors, d.MaxInFlight, d.Sessions, min(d.PoolUsed, d.PoolSize), d.PoolSize, d.PoolMisses)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// methodLink is the relative link from directory from to bench/README.md.
func methodLink(from string) string {
	root, err := moduleRoot()
	if err != nil {
		return "bench/README.md"
	}
	abs, err := filepath.Abs(from)
	if err != nil {
		return "bench/README.md"
	}
	rel, err := filepath.Rel(abs, filepath.Join(root, "bench", "README.md"))
	if err != nil {
		return "bench/README.md"
	}
	return rel
}

func profileText(r *Run) string {
	var b strings.Builder
	found := false
	for _, name := range []string{"appliance-sign-soft", "appliance-sign-hsm"} {
		s := r.setup(name)
		if s == nil || len(s.Profile) == 0 {
			continue
		}
		found = true
		cats := Categorize(s.Profile)
		var parts []string
		for _, c := range cats {
			if c.Percent >= 1 {
				parts = append(parts, fmt.Sprintf("%.0f %% %s", c.Percent, c.Name))
			}
		}
		fmt.Fprintf(&b, "**%s** (perf record at %d Hz on the appliance in a second run at the 80 %% rate, not the measured one; by DSO and symbol): %s.\n\n",
			s.Setup.Title, r.Params.PerfFreq, strings.Join(parts, "; "))
		b.WriteString("Top symbols:\n\n| % | where | symbol |\n|---:|---|---|\n")
		for i, e := range s.Profile {
			if i == 10 {
				break
			}
			fmt.Fprintf(&b, "| %.1f | %s | `%s` |\n", e.Percent, e.DSO, e.Symbol)
		}
		b.WriteString("\n")
	}
	if !found {
		fmt.Fprintf(&b, "No profile recorded (%s). Use `go test -run '^$' -bench LoopSoftwareSigner -cpuprofile cpu.prof ./fastpath/` and `go tool pprof -top cpu.prof`.\n", r.ProfileErr)
	}
	return b.String()
}
