package compare

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shakenline/shakenline/bench/kamailio"
	"github.com/shakenline/shakenline/bench/loadgen"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
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
		Quick: quick, Start: 500, Factor: 1.3, StepDuration: 3 * time.Second, Pause: 500 * time.Millisecond,
		Drain: time.Second, Warmup: time.Second, Fixed: 5 * time.Second, FixedFraction: 0.8, LossPct: 0.1,
		MaxSteps: 30, Refine: 3, GenCPU: 0, SUTCPU: 1, KamailioWorkers: 2, OpenSSLSeconds: 3,
		HSMBench: ".", HSMBenchtime: "1s", PerfFreq: 499, StallSeconds: 5,
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
}

// Setups are run in this order.
var Setups = []Setup{
	{Name: "floor-direct", Title: "generator → sink (no proxy)"},
	{Name: "floor-relay", Title: "generator → relay → sink (no proxy)", Relay: true},
	{Name: "kamailio-forward", Title: "Kamailio, forward only", SUT: "kamailio", Relay: true},
	{Name: "appliance-forward", Title: "appliance, forward only (anonymous INVITEs)", SUT: "appliance", Key: "soft", Relay: true},
	{Name: "kamailio-sign", Title: "Kamailio + secsipid, signing", SUT: "kamailio", Signs: true},
	{Name: "appliance-sign-soft", Title: "appliance, signing, software key", SUT: "appliance", Key: "soft", Signs: true},
	{Name: "appliance-sign-hsm", Title: "appliance, signing, softhsm2", SUT: "appliance", Key: "hsm", Signs: true},
	{Name: RemoteSetup, Title: "appliance, signing, softhsm2 behind p11-kit server (HSM on its own core)", SUT: "appliance", Key: "hsm-remote", Signs: true},
}

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

// lab is the key material shared by all setups.
type lab struct {
	dir, key, ecKey, cert, pkcs11URI, softhsmConf string
	pkcs11RemoteURI                               string // the same key through p11-kit-client.so
	hsm                                           *softhsmtest.Env
}

// readECKey reads the lab's PKCS#8 P-256 key.
func readECKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("compare: %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("compare: %s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("compare: %s: not an ECDSA key", path)
	}
	return ec, nil
}

const x5u = "https://cert.example.net/sp.pem"

func sh(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("compare: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func makeLab(bin, dir string) (*lab, error) {
	l := &lab{dir: dir}
	pki := filepath.Join(dir, "pki")
	if _, err := sh(bin, "lab-pki", "--out", pki); err != nil {
		return nil, err
	}
	l.key, l.cert = filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem")
	// secsipid wants a SEC 1 key; it is the same key.
	l.ecKey = filepath.Join(pki, "sp-sec1.key")
	if _, err := sh("openssl", "ec", "-in", l.key, "-out", l.ecKey); err != nil {
		return nil, err
	}
	// The same key in a SoftHSM token, made as the hsm tests make theirs.
	hsmEnv, err := softhsmtest.NewEnv(dir)
	if err != nil {
		return nil, err
	}
	key, err := readECKey(l.key)
	if err != nil {
		return nil, err
	}
	tk, err := hsmEnv.CreateToken("shakebench", key)
	if err != nil {
		return nil, err
	}
	l.hsm, l.softhsmConf = hsmEnv, hsmEnv.Conf
	l.pkcs11URI = tk.URI()
	l.pkcs11RemoteURI = tk.URIWith(softhsmtest.P11KitClient)
	return l, nil
}

func freePort(network string) (uint16, error) {
	switch network {
	case "udp":
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, fmt.Errorf("compare: %w", err)
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("compare: %w", err)
		}
		defer l.Close()
		return uint16(l.Addr().(*net.TCPAddr).Port), nil
	}
}

// sut is a running system under test.
type sut struct {
	pgid    int
	api     string // appliance API address
	stop    func()
	logPath string
}

func startAppliance(ctx context.Context, bin string, p Params, l *lab, s Setup, next netip.AddrPort, logPath string) (*sut, netip.AddrPort, error) {
	sipPort, err := freePort("udp")
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	apiPort, err := freePort("tcp")
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sipPort)
	api := fmt.Sprintf("127.0.0.1:%d", apiPort)
	cpu := p.SUTCPU
	var hsmSrv *hsmServer
	if s.Key == "hsm-remote" {
		// The HSM gets the SUT core; the appliance shares the generator's.
		srv, err := l.hsm.StartServer("shakebench", p.SUTCPU)
		if err != nil {
			return nil, listen, fmt.Errorf("compare: %w (make deps installs p11-kit p11-kit-modules)", err)
		}
		hsmSrv = &hsmServer{srv: srv, logPath: logPath + ".p11kit"}
		cpu = p.GenCPU
	}
	args := []string{"-c", strconv.Itoa(cpu), bin, "serve", "--sip", listen.String(), "--next-hop", next.String(),
		"--cert", l.cert, "--x5u", x5u, "--attest", "A", "--api", api}
	switch s.Key {
	case "hsm":
		args = append(args, "--pkcs11", l.pkcs11URI)
	case "hsm-remote":
		args = append(args, "--pkcs11", l.pkcs11RemoteURI)
	default:
		args = append(args, "--key", l.key)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, listen, fmt.Errorf("compare: %w", err)
	}
	cmd := exec.Command("taskset", args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+l.softhsmConf)
	if hsmSrv != nil {
		cmd.Env = append(cmd.Env, "P11_KIT_SERVER_ADDRESS="+hsmSrv.srv.Address)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		hsmSrv.stop()
		return nil, listen, fmt.Errorf("compare: appliance: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	u := &sut{pgid: cmd.Process.Pid, api: api, logPath: logPath}
	u.stop = func() {
		_ = syscall.Kill(-u.pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-u.pgid, syscall.SIGKILL)
			<-done
		}
		hsmSrv.stop()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			hsmSrv.stop()
			b, _ := os.ReadFile(logPath)
			return nil, listen, fmt.Errorf("compare: appliance exited: %s", tail(b, 2000))
		default:
		}
		if udpListening(listen) && httpUp("http://"+api+"/metrics") {
			time.Sleep(200 * time.Millisecond)
			return u, listen, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			u.stop()
			b, _ := os.ReadFile(logPath)
			return nil, listen, fmt.Errorf("compare: appliance not ready: %s", tail(b, 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startKamailio(ctx context.Context, p Params, l *lab, s Setup, next netip.AddrPort, dir, logPath string) (*sut, netip.AddrPort, error) {
	port, err := freePort("udp")
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	kbin, err := exec.LookPath("kamailio")
	if err != nil {
		kbin = "/usr/sbin/kamailio"
	}
	// A wrapper pins Kamailio (and so every worker it forks) to the SUT
	// core and records its pid, which is also its process group.
	pidFile := filepath.Join(dir, "kamailio-"+s.Name+".pid")
	wrapper := filepath.Join(dir, "kamailio-pinned.sh")
	script := fmt.Sprintf("#!/bin/sh\necho $$ > %q\nexec taskset -c %d %q \"$@\"\n", pidFile, p.SUTCPU, kbin)
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		return nil, listen, fmt.Errorf("compare: %w", err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, listen, fmt.Errorf("compare: %w", err)
	}
	o := kamailio.Options{Listen: listen, NextHop: next, Workers: p.KamailioWorkers, Binary: wrapper, Log: logf}
	if s.Signs {
		o.Sign, o.KeyPath, o.X5U, o.Attest = true, l.ecKey, x5u, "A"
	}
	proc, err := kamailio.Start(ctx, o)
	if err != nil {
		logf.Close()
		return nil, listen, err
	}
	b, err := os.ReadFile(pidFile)
	pid, err2 := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || err2 != nil {
		_ = proc.Stop()
		logf.Close()
		return nil, listen, fmt.Errorf("compare: kamailio pid file: %w", errors.Join(err, err2))
	}
	return &sut{pgid: pid, logPath: logPath, stop: func() { _ = proc.Stop(); logf.Close() }}, listen, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

func httpUp(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return true
}

// udpListening reports whether an IPv4 UDP socket is bound to ap.
func udpListening(ap netip.AddrPort) bool {
	b := ap.Addr().As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], ap.Port())
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 1 && fs[1] == want {
			return true
		}
	}
	return false
}

// scrapeMetrics returns the shakenline_* samples of /metrics.
func scrapeMetrics(api string) map[string]float64 {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + api + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "shakenline_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil && v != 0 {
			m[line[:i]] = v
		}
	}
	return m
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
	sinkCfg := loadgen.SinkConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0")}
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
	switch s.SUT {
	case "appliance":
		u, target, err = startAppliance(ctx, bin, p, l, s, sink.Addr(), logPath)
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
	g, err := loadgen.NewGenerator(loadgen.Config{Target: target, Sink: sink, Drain: p.Drain})
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
		if perfOK && u != nil && s.SUT == "appliance" && s.Signs {
			r.Profile = profile(ctx, g, u.pgid, rate, p, out, s.Name)
		}
	}
	if u != nil && u.api != "" {
		r.Metrics = scrapeMetrics(u.api)
	}
	return r
}

// envInfo fills what is known before the run.
func envInfo(bin string, p Params, procs int) Env {
	e := Env{Go: runtime.Version(), LoadStart: LoadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			// Count processors here: runtime.NumCPU sees only our taskset.
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "processor" {
				e.Cores++
			} else if ok && strings.TrimSpace(k) == "model name" && e.CPUModel == "" {
				e.CPUModel = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	first := func(s string, _ error) string { return strings.TrimSpace(strings.SplitN(s, "\n", 2)[0]) }
	e.Appliance = first(sh(bin, "version"))
	e.Kamailio = first(sh("kamailio", "-v"))
	e.OpenSSL = first(sh("openssl", "version"))
	e.TopStart = topProcs()
	e.Layout = fmt.Sprintf("generator, sink and relay (this process, GOMAXPROCS %d, INVITEs paced with nanosleep) on CPU %d; system under test, openssl speed and the hsmraw benchmark on CPU %d (taskset); Kamailio %d UDP workers; appliance one event loop (GOMAXPROCS 1 under taskset)",
		procs, p.GenCPU, p.SUTCPU, p.KamailioWorkers)
	return e
}

func topProcs() string {
	out, _ := sh("ps", "-eo", "pcpu,pid,comm", "--sort=-pcpu")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 8 {
		lines = lines[:8]
	}
	return strings.Join(lines, "\n")
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
