package compare

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shakenline/shakenline/bench/loadgen"
	"github.com/shakenline/shakenline/bench/nethsm"
)

// Params are the knobs of one run; Quick and full runs differ only here.
type Params struct {
	Quick           bool          `json:"quick"`
	Start           float64       `json:"start_rate"`
	Factor          float64       `json:"factor"`
	StepDuration    time.Duration `json:"step_duration_ns"`
	Pause           time.Duration `json:"pause_ns"`
	Drain           time.Duration `json:"drain_ns"`
	Warmup          time.Duration `json:"warmup_ns"`
	Fixed           time.Duration `json:"fixed_ns"`
	FixedFraction   float64       `json:"fixed_fraction"`
	LossPct         float64       `json:"loss_pct"`
	MaxSteps        int           `json:"max_steps"`
	Refine          int           `json:"refine_steps"` // bisection steps between the last clean and the first failing rate
	GenCPU          int           `json:"gen_cpu"`
	SUTCPU          int           `json:"sut_cpu"`
	KamailioWorkers int           `json:"kamailio_workers"`
	OpenSSLSeconds  int           `json:"openssl_seconds"`
	HSMBench        string        `json:"hsm_bench"`
	HSMBenchtime    string        `json:"hsm_benchtime"`
	PerfFreq        int           `json:"perf_hz"`
	StallSeconds    float64       `json:"stall_seconds"` // the stall meter on the SUT's CPU
}

// DefaultParams returns the full or the quick settings.
func DefaultParams(quick bool) Params {
	p := Params{
		Quick: quick, Start: 1000, Factor: 1.5, StepDuration: 1500 * time.Millisecond, Pause: 200 * time.Millisecond,
		Drain: 500 * time.Millisecond, Warmup: time.Second, Fixed: 4 * time.Second, FixedFraction: 0.8, LossPct: 0.1,
		MaxSteps: 30, Refine: 3, GenCPU: 0, SUTCPU: 1, KamailioWorkers: 2, OpenSSLSeconds: 3,
		HSMBench: ".", HSMBenchtime: "500ms", PerfFreq: 499, StallSeconds: 3,
	}
	if quick {
		p.Start, p.Factor, p.StepDuration, p.Pause, p.Drain = 2000, 2, time.Second, 200*time.Millisecond, 500*time.Millisecond
		p.Warmup, p.Fixed, p.OpenSSLSeconds, p.HSMBench, p.HSMBenchtime = 200*time.Millisecond, 1500*time.Millisecond, 1, "Sign", "100ms"
		p.MaxSteps, p.Refine, p.StallSeconds = 10, 0, 1
	}
	return p
}

// Setup is one system under test.
type Setup struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	SUT   string `json:"sut"` // "appliance", "kamailio" or "" (floor)
	Key   string `json:"key"` // appliance signer: "soft" or "hsm"
	Signs bool   `json:"signs"`
	Relay bool   `json:"relay"` // INVITEs go through the anonymizing relay
	// HSM is the emulated network HSM of Key "nethsm" (bench/nethsm).
	HSM *HSMModel `json:"hsm,omitempty"`
	// Transport is how calls reach the system under test and leave it:
	// "" (UDP), "tcp" or "tls" (StreamConns persistent connections from
	// the generator; the SUT connects to the sink).
	Transport string `json:"transport,omitempty"`
	// Start, when set, is where this setup's ramp starts instead of
	// Params.Start: full runs only (the setups that reach tens of
	// thousands of calls/s skip the steps far below that, so that make
	// bench stays under 15 minutes; Kamailio's rows start at Params.Start),
	// except for the emulated HSM rows, which start at 40 % of the
	// device's capacity in quick runs too.
	Start float64 `json:"start_rate,omitempty"`
	// YAML is configuration the appliance reads besides its flags.
	YAML string `json:"yaml,omitempty"`
	// AllCPUs runs the system under test on both cores, shared with the
	// generator and the sink, instead of on Params.SUTCPU alone.
	AllCPUs bool `json:"all_cpus,omitempty"`
}

// StreamConns is how many connections the generator keeps to a system
// under test over TCP or TLS: several clients, as an SBC cluster's.
const StreamConns = 8

// Setups are run in this order.
var Setups = []Setup{
	{Name: "floor-direct", Title: "generator → sink (no proxy)", Start: 4000},
	{Name: "floor-relay", Title: "generator → relay → sink (no proxy)", Relay: true, Start: 4000},
	{Name: "floor-direct-tcp", Title: "generator → sink over TCP (no proxy)", Transport: "tcp", Start: 20000},
	{Name: "kamailio-forward", Title: "Kamailio, forward only", SUT: "kamailio", Relay: true},
	{Name: "appliance-forward", Title: "appliance, forward only (anonymous INVITEs)", SUT: "appliance", Key: "soft", Relay: true, Start: 4000},
	{Name: "kamailio-sign", Title: "Kamailio + secsipid, signing", SUT: "kamailio", Signs: true},
	{Name: "kamailio-sign-tcp", Title: "Kamailio + secsipid, signing, over TCP", SUT: "kamailio", Signs: true, Transport: "tcp"},
	{Name: "appliance-sign-soft", Title: "appliance, signing, software key", SUT: "appliance", Key: "soft", Signs: true, Start: 4000},
	{Name: "appliance-sign-soft-tcp", Title: "appliance, signing, software key, over TCP", SUT: "appliance", Key: "soft", Signs: true, Transport: "tcp", Start: 4000},
	{Name: "appliance-sign-soft-tls", Title: "appliance, signing, software key, over TLS", SUT: "appliance", Key: "soft", Signs: true, Transport: "tls", Start: 4000},
	{Name: "appliance-sign-hsm", Title: "appliance, signing, softhsm2", SUT: "appliance", Key: "hsm", Signs: true},
	{Name: RemoteSetup, Title: "appliance, signing, softhsm2 behind p11-kit server (HSM on its own core)", SUT: "appliance", Key: "hsm-remote", Signs: true},
}

func init() { Setups = append(Setups, hsmRows()...) }

// RemoteSetup is the setup with the layout of a network HSM: SoftHSM runs
// in a `p11-kit server` process pinned to the SUT core, the appliance (with
// p11-kit-client.so) shares the generator's core.
const RemoteSetup = "appliance-sign-hsm-remote"

// FixedRun is the run at a fixed fraction of the highest clean rate.
type FixedRun struct {
	Rate       float64        `json:"rate"`
	Result     loadgen.Result `json:"result"`
	CPUSeconds float64        `json:"cpu_s"`
	Calls      uint64         `json:"calls"` // signed calls (signing setups) or received calls
	CPUMicros  float64        `json:"cpu_us_per_call"`
	// StealMs is the hypervisor steal time of all CPUs during the run
	// (StealMillis); -1 when unknown.
	StealMs float64 `json:"steal_ms"`
}

// SetupResult is what a setup produced besides its step lines.
type SetupResult struct {
	Setup   Setup               `json:"setup"`
	Summary loadgen.StepSummary `json:"summary"`
	StepCPU []float64           `json:"step_cpu_s,omitempty"` // SUT CPU seconds per step
	Retries []float64           `json:"retried_rates,omitempty"`
	Fixed   *FixedRun           `json:"fixed,omitempty"`
	Metrics map[string]float64  `json:"metrics,omitempty"`
	Relay   struct {
		Forwarded uint64 `json:"forwarded"`
		Backed    uint64 `json:"responses_dropped"`
	} `json:"relay"`
	Profile []PerfEntry `json:"profile,omitempty"`
	Error   string      `json:"error,omitempty"`
	// SLO is the highest rate at the latency objective (slo.go).
	SLO *SLOResult `json:"slo,omitempty"`
	// Device is the emulated network HSM's counters after the setup.
	Device *nethsm.Stats `json:"device,omitempty"`
}

// Env describes the machine during the run.
type Env struct {
	CPUModel   string `json:"cpu_model"`
	Cores      int    `json:"cores"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Appliance  string `json:"appliance_version"`
	Kamailio   string `json:"kamailio_version"`
	OpenSSL    string `json:"openssl_version"`
	LoadStart  string `json:"load_start"`
	LoadEnd    string `json:"load_end"`
	TopStart   string `json:"top_start"`
	TopEnd     string `json:"top_end"`
	Layout     string `json:"layout"`
	PerfWorked bool   `json:"perf_worked"`
}

// Run is everything one run measured (run.json).
type Run struct {
	Started    time.Time     `json:"started"`
	Finished   time.Time     `json:"finished"`
	Params     Params        `json:"params"`
	Env        Env           `json:"env"`
	OpenSSL    *OpenSSLSpeed `json:"openssl,omitempty"`
	HSMRaw     []BenchLine   `json:"hsmraw,omitempty"`
	HSMRawErr  string        `json:"hsmraw_error,omitempty"`
	Setups     []SetupResult `json:"setups"`
	ProfileErr string        `json:"profile_error,omitempty"`
	// bench/hsmraw BenchmarkRemote: through p11-kit-client.so to a p11-kit
	// server on the SUT core, the benchmark on the generator's core.
	HSMRemote []BenchLine `json:"hsmraw_remote,omitempty"`
	RemoteErr string      `json:"hsmraw_remote_error,omitempty"`
	// The stall meter on the SUT's CPU before the setups ran.
	Stalls    *Stalls `json:"stalls,omitempty"`
	StallsErr string  `json:"stalls_error,omitempty"`
}

// ramp steps the rate up like loadgen's Step, with one difference for a
// shared machine: a step that fails is retried once at the same rate
// before the ramp stops, so one scheduling hiccup of another tenant does
// not end it. Each accepted step (and the final failed one) goes to each.
//
// For a signing setup a call that arrives without an Identity header (the
// proxy bypassed signing) counts against the threshold like a lost one: the
// ramp then stops with "unsigned".
func ramp(ctx context.Context, g *loadgen.Generator, p Params, signs bool, cpu func() float64, each func(loadgen.Result, float64)) (loadgen.StepSummary, []float64, error) {
	var (
		sum     loadgen.StepSummary
		retries []float64
	)
	rate := p.Start
	retried := false
	for i := 0; ; i++ {
		if i == p.MaxSteps {
			sum.Stop = "max-steps"
			return sum, retries, nil
		}
		c0 := cpu()
		res, err := g.Run(ctx, loadgen.Load{Rate: rate, Duration: p.StepDuration})
		c1 := cpu()
		if err != nil {
			sum.Steps = append(sum.Steps, res)
			each(res, c1-c0)
			sum.Stop = "error"
			return sum, retries, err
		}
		if ctx.Err() != nil {
			sum.Stop = "canceled"
			return sum, retries, ctx.Err()
		}
		stop := ""
		switch {
		case res.LossPct > p.LossPct:
			stop = "loss"
		case signs && UnsignedPct(res) > p.LossPct:
			stop = "unsigned"
		case res.AchievedRate < 0.97*rate:
			stop = "generator"
		}
		if stop != "" && !retried {
			retried = true
			retries = append(retries, rate)
			time.Sleep(2 * p.Pause)
			continue
		}
		sum.Steps = append(sum.Steps, res)
		each(res, c1-c0)
		if stop != "" {
			sum.Stop = stop
			if stop == "loss" || stop == "unsigned" {
				refine(ctx, g, p, signs, cpu, each, &sum, &retries, rate)
			}
			return sum, retries, nil
		}
		retried = false
		sum.MaxCleanRate = rate
		best := res
		sum.Best = &best
		rate *= p.Factor
		time.Sleep(p.Pause)
	}
}

// refine bisects between the highest clean rate and the first failing one,
// p.Refine times, with the ramp's rules (a failing step is retried once), so
// that the reported maximum is not up to a whole ramp factor low. Every
// setup gets the same refinement.
func refine(ctx context.Context, g *loadgen.Generator, p Params, signs bool, cpu func() float64,
	each func(loadgen.Result, float64), sum *loadgen.StepSummary, retries *[]float64, failed float64) {
	lo, hi := sum.MaxCleanRate, failed
	for k := 0; k < p.Refine && lo > 0 && hi > lo*1.02 && ctx.Err() == nil; k++ {
		mid := (lo + hi) / 2
		var res loadgen.Result
		var c0, c1 float64
		clean := false
		for try := 0; try < 2 && !clean; try++ {
			if try == 1 {
				*retries = append(*retries, mid)
			}
			time.Sleep(2 * p.Pause)
			c0 = cpu()
			r, err := g.Run(ctx, loadgen.Load{Rate: mid, Duration: p.StepDuration})
			c1 = cpu()
			if err != nil {
				return
			}
			res = r
			clean = res.LossPct <= p.LossPct && !(signs && UnsignedPct(res) > p.LossPct) && res.AchievedRate >= 0.97*mid
		}
		sum.Steps = append(sum.Steps, res)
		each(res, c1-c0)
		if clean {
			lo = mid
			sum.MaxCleanRate = mid
			best := res
			sum.Best = &best
		} else {
			hi = mid
		}
	}
}

// UnsignedPct is the share of sent calls that did not arrive signed.
func UnsignedPct(r loadgen.Result) float64 {
	if r.Sent == 0 || r.WithIdentity >= r.Sent {
		return 0
	}
	return 100 * float64(r.Sent-r.WithIdentity) / float64(r.Sent)
}

// runSetup runs one setup end to end.
func runSetup(ctx context.Context, bin string, p Params, l *lab, s Setup, out string, perfOK bool) SetupResult {
	r := SetupResult{Setup: s}
	fail := func(err error) SetupResult {
		r.Error = err.Error()
		return r
	}
	sinkCfg := loadgen.SinkConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Transport: s.Transport}
	if s.Transport == "tls" {
		sinkCfg.TLS = l.tlsServer(l.sinkTLS)
	}
	if s.Signs {
		k, err := loadgen.LoadPublicKey(l.cert)
		if err != nil {
			return fail(err)
		}
		sinkCfg.VerifyKey, sinkCfg.VerifyEvery = k, 100
	}
	sink, err := loadgen.NewSink(sinkCfg)
	if err != nil {
		return fail(err)
	}
	defer sink.Close()

	target := sink.Addr()
	var u *sut
	logPath := filepath.Join(out, "log-"+s.Name+".txt")
	var dev *device
	if s.HSM != nil {
		if dev, err = makeDevice(l, s, p); err != nil {
			return fail(err)
		}
	}
	if s.Start > 0 && (!p.Quick || s.HSM != nil) {
		p.Start = s.Start
	}
	switch s.SUT {
	case "appliance":
		u, target, err = startAppliance(ctx, bin, p, l, s, sink.Addr(), logPath, dev)
	case "kamailio":
		u, target, err = startKamailio(ctx, p, l, s, sink.Addr(), l.dir, logPath)
	}
	if err != nil {
		return fail(err)
	}
	if u != nil {
		defer u.stop()
	}
	if s.Relay {
		rl, err := NewRelay(target)
		if err != nil {
			return fail(err)
		}
		defer func() {
			r.Relay.Forwarded, r.Relay.Backed = rl.Forwarded.Load(), rl.Backed.Load()
			rl.Close()
		}()
		target = rl.Addr()
	}
	gc := loadgen.Config{Target: target, Sink: sink, Drain: p.Drain, Transport: s.Transport}
	if s.Transport != "" {
		gc.Sockets, gc.TLS = StreamConns, l.tlsClient()
	}
	g, err := loadgen.NewGenerator(gc)
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	cpu := func() float64 {
		if u == nil {
			return 0
		}
		c, _ := GroupCPU(u.pgid)
		return c
	}

	if dev != nil {
		if err := dev.waitPool(ctx); err != nil {
			return fail(err)
		}
	}
	// Warm up (not recorded): first packets pay for page faults, Kamailio
	// worker start-up and the Go scheduler settling.
	if _, err := g.Run(ctx, loadgen.Load{Rate: p.Start, Duration: p.Warmup}); err != nil {
		return fail(err)
	}
	time.Sleep(p.Pause)

	stepsF, err := os.Create(filepath.Join(out, "steps-"+s.Name+".jsonl"))
	if err != nil {
		return fail(err)
	}
	defer stepsF.Close()
	enc := json.NewEncoder(stepsF)
	sum, retries, err := ramp(ctx, g, p, s.Signs, cpu, func(res loadgen.Result, c float64) {
		_ = enc.Encode(struct {
			Step loadgen.Result `json:"step"`
		}{res})
		r.StepCPU = append(r.StepCPU, c)
		fmt.Fprintf(os.Stderr, "  %-20s %s\n", s.Name, res.String())
	})
	r.Retries = retries
	_ = enc.Encode(struct {
		Summary loadgen.StepSummary `json:"summary"`
	}{sum})
	r.Summary = sum
	if err != nil {
		return fail(err)
	}
	if sum.MaxCleanRate > 0 {
		time.Sleep(2 * p.Pause)
		rate := p.FixedFraction * sum.MaxCleanRate
		st0 := StealMillis()
		c0 := cpu()
		res, err := g.Run(ctx, loadgen.Load{Rate: rate, Duration: p.Fixed})
		c1 := cpu()
		st1 := StealMillis()
		if err != nil {
			return fail(err)
		}
		calls := res.Received
		if s.Signs {
			calls = res.WithIdentity
		}
		f := &FixedRun{Rate: rate, Result: res, CPUSeconds: c1 - c0, Calls: calls, StealMs: -1}
		if st0 >= 0 && st1 >= 0 {
			f.StealMs = st1 - st0
		}
		if calls > 0 && u != nil {
			f.CPUMicros = 1e6 * f.CPUSeconds / float64(calls)
		}
		r.Fixed = f
		fmt.Fprintf(os.Stderr, "  %-20s fixed %.0f%%: %s cpu %.2fs steal %.0fms\n", s.Name, 100*p.FixedFraction, res.String(), f.CPUSeconds, f.StealMs)
		// The profile is taken in a second run at the same rate: perf's
		// sampling interrupts and its own process would otherwise sit in
		// the latency and CPU figures above.
		// (Not for the stream setups and the emulated HSM rows: make bench
		// stays short.)
		if perfOK && u != nil && s.SUT == "appliance" && s.Signs && s.HSM == nil && s.Transport == "" {
			r.Profile = profile(ctx, g, u.pgid, rate, p, out, s.Name)
		}
	}
	// The highest rate at the latency objective, from the ramp's steps
	// and bisected further.
	r.SLO = sloSearch(ctx, g, p, s, sum.Steps, func(res loadgen.Result) {
		_ = enc.Encode(struct {
			Step loadgen.Result `json:"slo_step"`
		}{res})
		fmt.Fprintf(os.Stderr, "  %-20s slo %s\n", s.Name, res.String())
	})
	fmt.Fprintf(os.Stderr, "  %-20s at the objective (p99 ≤ %.0f µs): %.0f/s\n", s.Name, r.SLO.TargetMicros, r.SLO.Rate)
	if u != nil && u.api != "" {
		r.Metrics = scrapeMetrics(u.api)
	}
	if dev != nil { // the module lives in the appliance: before it stops
		if st, err := dev.dev.Stats(ctx); err == nil {
			r.Device = &st
		}
	}
	return r
}

// profile records the appliance (process group pgid) with perf while the
// generator offers rate for p.Fixed, and returns the report by DSO and
// symbol (also written to perf-<name>.txt). The run's own results are not
// kept. Nil when perf fails.
func profile(ctx context.Context, g *loadgen.Generator, pgid int, rate float64, p Params, out, name string) []PerfEntry {
	perfData := filepath.Join(out, "perf-"+name+".data")
	defer os.Remove(perfData)
	perf := exec.Command("perf", "record", "-q", "-F", strconv.Itoa(p.PerfFreq), "-p", strconv.Itoa(pgid), "-o", perfData,
		"--", "sleep", strconv.FormatFloat(p.Fixed.Seconds(), 'f', 1, 64))
	perf.Stdout, perf.Stderr = io.Discard, io.Discard
	if perf.Start() != nil {
		return nil
	}
	_, _ = g.Run(ctx, loadgen.Load{Rate: rate, Duration: p.Fixed})
	if perf.Wait() != nil {
		return nil
	}
	rep, err := exec.Command("perf", "report", "-i", perfData, "--stdio", "--no-children", "--sort", "dso,symbol",
		"--percent-limit", "0.2", "-q").Output()
	if err != nil {
		return nil
	}
	_ = os.WriteFile(filepath.Join(out, "perf-"+name+".txt"), rep, 0o644)
	prof, _ := ParsePerfReport(rep)
	return prof
}
