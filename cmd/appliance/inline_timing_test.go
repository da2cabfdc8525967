package main

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/bench/loadgen"
	"github.com/shakenline/shakenline/bpf/nettest"
	"github.com/shakenline/shakenline/labpki"
)

// BenchmarkInline measures signed INVITEs per second and the one-way
// latency they see, in inline mode against proxy mode, in one run on one
// nettest topology (issue 5), with the same key (lab PKI, --key).
//
// The loadgen Generator sends from the client namespace and its Sink
// answers in the server namespace; both live in this process (their
// sockets were created inside the namespaces), so latency is sink arrival
// minus send time on one clock. Three setups, alternating at each rate
// (each appliance is started for its step and stopped after it, so only
// one runs at a time and slow drifts in the machine's other load hit all
// setups alike):
//
//   - inline: `serve --mode inline --iface ac0,as0`; INVITEs to
//     198.18.2.2:5060, steered by XDP, signed, reinjected.
//   - proxy: `serve --mode proxy --sip 198.18.1.1:5060 --next-hop
//     198.18.2.2:5060`; INVITEs to the appliance.
//   - base: no appliance process; INVITEs to 198.18.2.2:5060, forwarded
//     by the appliance namespace's kernel: the path's own latency.
//
// Each setup steps through inlineRates, inlineStep each after an
// unrecorded warm-up, and stops at the first step that is not clean: more
// than 0.1 % of INVITEs missing at the sink, or (appliance setups) missing
// an Identity header (an INVITE passed unsigned by fail-open counts as
// lost), or the generator not reaching 97 % of the rate. The ramp ends
// when both appliances have stopped. With two or more CPUs the appliance runs on CPU 1 with
// GOMAXPROCS=1 and this process on CPU 0, as in bench/run.sh.
//
// Reported: <setup>-max-rate (highest clean rate, calls/s), inline/proxy,
// and at common-rate (the highest step clean in all three setups and at
// most 80 % of the lower appliance's highest clean rate, else the lowest
// step clean in all) each setup's p50 and p99 and the appliances' added
// latency (setup minus base), in microseconds. A setup clean at the top
// step has a highest clean rate of at least that step (the ramp is capped,
// not the setup). Run with -benchtime=1x; it takes at most about 55 s.
func BenchmarkInline(b *testing.B) {
	const (
		inlineStep   = 2 * time.Second
		inlineWarmup = 100 * time.Millisecond // at 1000/s, unrecorded
	)
	inlineRates := []float64{2000, 4000, 8000, 12000, 16000, 24000}

	topo := nettest.New(b, nettest.Options{}) // neighbours as ip-link makes them
	pki := b.TempDir()
	if err := labpki.Generate(pki, labpki.Options{}); err != nil {
		b.Fatal(err)
	}
	certs, err := loadCerts(filepath.Join(pki, "sp.pem"))
	if err != nil {
		b.Fatal(err)
	}
	pub := certs[0].PublicKey.(*ecdsa.PublicKey)

	appCPU := -1
	if runtime.NumCPU() >= 2 {
		if _, err := exec.LookPath("taskset"); err == nil {
			appCPU = 1
			restore := pinProcess(b, 0)
			b.Cleanup(restore)
		}
	}
	if appCPU >= 0 {
		b.Logf("layout: appliance on CPU %d (GOMAXPROCS=1), generator and sink on CPU 0", appCPU)
	} else {
		b.Logf("layout: unpinned (one CPU or no taskset)")
	}

	srv := netip.AddrPortFrom(nettest.ServerV4, 5060)
	var sink *loadgen.Sink
	if err := topo.Server.Do(func() (err error) {
		sink, err = loadgen.NewSink(loadgen.SinkConfig{Listen: srv, VerifyKey: pub})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sink.Close() })

	common := []string{"--key", filepath.Join(pki, "sp.key"), "--cert", filepath.Join(pki, "sp.pem"),
		"--x5u", "https://cert.example.org/sp.pem", "--attest", "A", "--api", "198.18.1.1:18080", "--lab"}
	setups := []struct {
		name   string
		target netip.AddrPort
		args   []string // nil: no appliance
	}{
		{"inline", srv, append([]string{"serve", "--mode", "inline",
			"--iface", nettest.ApplianceClientIf + "," + nettest.ApplianceServerIf}, common...)},
		{"proxy", netip.AddrPortFrom(nettest.ApplianceClientV4, 5060), append([]string{"serve", "--mode", "proxy",
			"--sip", "198.18.1.1:5060", "--next-hop", srv.String()}, common...)},
		{"base", srv, nil},
	}

	type outcome struct {
		gen     *loadgen.Generator
		done    bool // a step was not clean: no higher rates
		maxRate float64
		steps   map[float64]loadgen.Result
	}
	out := map[string]*outcome{}
	for _, s := range setups {
		o := &outcome{steps: map[float64]loadgen.Result{}}
		if err := topo.Client.Do(func() (err error) {
			o.gen, err = loadgen.NewGenerator(loadgen.Config{Target: s.target, Local: nettest.ClientV4, Sink: sink})
			return err
		}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { o.gen.Close() })
		out[s.name] = o
	}
	ctx := context.Background()
	b.ResetTimer()
	for _, rate := range inlineRates {
		if out["inline"].done && out["proxy"].done {
			break // base is only the reference for the appliances' rates
		}
		for _, s := range setups {
			o := out[s.name]
			if o.done {
				continue
			}
			var stop func()
			if s.args != nil {
				stop = startApplianceIn(b, topo.Appliance, s.args, appCPU)
			}
			if _, err := o.gen.Run(ctx, loadgen.Load{Rate: 1000, Duration: inlineWarmup}); err != nil {
				b.Fatal(err)
			}
			res, err := o.gen.Run(ctx, loadgen.Load{Rate: rate, Duration: inlineStep})
			if err != nil {
				b.Fatal(err)
			}
			if stop != nil {
				stop()
			}
			o.steps[rate] = res
			lost := res.LossPct
			if s.args != nil && res.Sent > 0 {
				lost = 100 * float64(res.Sent-min(res.Sent, res.WithIdentity)) / float64(res.Sent)
			}
			clean := lost <= 0.1 && res.AchievedRate >= 0.97*rate
			b.Logf("%-6s %s (lost or unsigned %.3f%%, clean %v)", s.name, res, lost, clean)
			if clean {
				o.maxRate = rate
			} else {
				o.done = true
			}
		}
	}
	b.StopTimer()

	st := sink.Stats()
	b.Logf("sink: %d INVITEs, %d with Identity, %d sampled signatures verified, %d failed", st.Invites, st.WithIdentity, st.VerifyOK, st.VerifyFailed)
	if st.VerifyFailed > 0 {
		b.Fatalf("%d Identity headers did not verify", st.VerifyFailed)
	}
	for _, name := range []string{"inline", "proxy"} {
		if r := out[name].steps[inlineRates[0]]; r.WithIdentity == 0 {
			b.Fatalf("%s: no signed INVITE arrived at %v/s: %s", name, inlineRates[0], r)
		}
	}
	for _, name := range []string{"inline", "proxy", "base"} {
		if !out[name].done {
			b.Logf("%s was clean at the top step: its limit is above %.0f/s", name, out[name].maxRate)
		}
	}
	inline, proxy := out["inline"], out["proxy"]
	b.ReportMetric(out["base"].maxRate, "base-max-rate")
	b.ReportMetric(inline.maxRate, "inline-max-rate")
	b.ReportMetric(proxy.maxRate, "proxy-max-rate")
	if proxy.maxRate > 0 {
		b.ReportMetric(inline.maxRate/proxy.maxRate, "inline/proxy")
	}
	// Compare latency at the highest rate clean everywhere and at most 80 %
	// of the lower appliance's highest clean rate: at its limit a setup
	// shows its queue, not its latency.
	commonRate := 0.0
	for _, r := range inlineRates {
		if r <= min(out["base"].maxRate, inline.maxRate, proxy.maxRate) && (r <= 0.8*min(inline.maxRate, proxy.maxRate) || commonRate == 0) {
			commonRate = r
		}
	}
	b.ReportMetric(commonRate, "common-rate")
	b.ReportMetric(0, "ns/op")
	if commonRate == 0 {
		b.Logf("no rate was clean in all three setups; no latency comparison")
		return
	}
	base := out["base"].steps[commonRate].Latency
	for _, name := range []string{"base", "inline", "proxy"} {
		l := out[name].steps[commonRate].Latency
		b.ReportMetric(l.P50, name+"-p50-us")
		b.ReportMetric(l.P99, name+"-p99-us")
		if name != "base" {
			b.ReportMetric(l.P50-base.P50, name+"-added-p50-us")
			b.ReportMetric(l.P99-base.P99, name+"-added-p99-us")
		}
		b.Logf("at %.0f/s %-6s p50 %.0f us, p99 %.0f us (added p50 %.0f us, p99 %.0f us)",
			commonRate, name, l.P50, l.P99, l.P50-base.P50, l.P99-base.P99)
	}
	for _, name := range []string{"inline", "proxy"} {
		o := out[name]
		if o.maxRate > 0 {
			l := o.steps[o.maxRate].Latency
			b.Logf("%s at its highest clean rate %.0f/s: p50 %.0f us, p99 %.0f us", name, o.maxRate, l.P50, l.P99)
		}
	}
}

// startApplianceIn runs `appliance <args>` (the re-executed test binary) in
// ns, on cpu with GOMAXPROCS=1 when cpu >= 0, and waits until it serves.
// The returned stop (also registered as cleanup) sends SIGTERM and waits.
func startApplianceIn(b *testing.B, ns *nettest.NS, args []string, cpu int) (stop func()) {
	b.Helper()
	js, _ := json.Marshal(args)
	bin := []string{os.Args[0], "-test.run=^$"}
	env := append(os.Environ(), execEnv+"="+string(js))
	if cpu >= 0 {
		bin = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, bin...)
		env = append(env, "GOMAXPROCS=1")
	}
	cmd := ns.Command(bin[0], bin[1:]...)
	cmd.Env = env
	logs := &syncBuf{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if b.Failed() {
			b.Logf("appliance %s log:\n%s", args[2], logs.String())
		}
	}
	b.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "appliance serving") {
		select {
		case <-done:
			b.Fatalf("appliance %v exited:\n%s", args[:3], logs.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("appliance %v did not start:\n%s", args[:3], logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return stop
}

// pinProcess binds every thread of this process to cpu (threads created
// later inherit it) and returns a function that restores the old mask.
func pinProcess(b *testing.B, cpu int) (restore func()) {
	var old, want unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		b.Fatal(err)
	}
	want.Set(cpu)
	setAll := func(m *unix.CPUSet) {
		tids, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return
		}
		for _, e := range tids {
			if tid, err := strconv.Atoi(e.Name()); err == nil {
				_ = unix.SchedSetaffinity(tid, m) // a thread may be gone
			}
		}
	}
	setAll(&want)
	return func() { setAll(&old) }
}
