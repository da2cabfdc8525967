package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"gopkg.in/yaml.v3"

	"github.com/shakenline/shakenline/bpf/nettest"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
	"github.com/shakenline/shakenline/internal/prereq"
)

// nsProc is a process started in a test namespace (an appliance
// re-executed from the test binary, Prometheus, SIPp).
type nsProc struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuf
	done chan struct{}
}

func startNSProc(t *testing.T, name string, cmd *exec.Cmd) *nsProc {
	t.Helper()
	p := &nsProc{name: name, cmd: cmd, logs: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, lastLines([]byte(p.logs.String()), 40))
		}
	})
	return p
}

func (p *nsProc) stop() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// startServeIn runs `appliance ARGS` (re-executed test binary) in ns
// and waits for "appliance serving".
func startServeIn(t *testing.T, ns *nettest.NS, name string, args ...string) *nsProc {
	t.Helper()
	js, _ := json.Marshal(args)
	cmd := ns.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), execEnv+"="+string(js))
	p := startNSProc(t, name, cmd)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.logs.String(), "appliance serving") {
		select {
		case <-p.done:
			t.Fatalf("%s exited:\n%s", name, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start:\n%s", name, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// nsHTTP is an HTTP client whose connections are made inside ns.
func nsHTTP(ns *nettest.NS) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}, MaxIdleConnsPerHost: 8}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func httpGet(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(b)
}

// promResult is the data of a Prometheus instant query.
type promResult struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func promQuery(t *testing.T, c *http.Client, base, expr string) ([]promResult, error) {
	t.Helper()
	resp, err := c.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("%s", out.Error)
	}
	if out.Data.ResultType == "scalar" {
		var v [2]any
		if err := json.Unmarshal(out.Data.Result, &v); err != nil {
			return nil, err
		}
		return []promResult{{Value: v}}, nil
	}
	var rs []promResult
	err = json.Unmarshal(out.Data.Result, &rs)
	return rs, err
}

func (r promResult) float() float64 {
	s, _ := r.Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// dashboardQueries returns "panel title: expr" for every query of the
// committed dashboard, with Grafana's variables replaced for a direct
// Prometheus query: $node by .* (the All value), $__rate_interval by
// rateInterval.
func dashboardQueries(t *testing.T, rateInterval string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/grafana/shakenline.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for i, p := range d.Panels {
		for _, q := range p.Targets {
			e := strings.NewReplacer("$node", ".*", "$__rate_interval", rateInterval).Replace(q.Expr)
			out[fmt.Sprintf("panel %d %q [%s]", i, p.Title, q.RefID)] = e
		}
	}
	return out
}

// recordedSeries returns the record names of the recording rules.
func recordedSeries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/prometheus/shakenline-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Record)
		}
	}
	return out
}

// TestPrometheusLive runs the operations kit against real components: an
// inline appliance (XDP on both links, signer chain softhsm2 token then
// software key, audit log) signs SIPp calls that a second appliance in
// proxy mode verifies (x5u over http from the server namespace) before
// the SIPp UAS answers; a real Prometheus (Debian package, loopback of the
// appliance namespace, its own temporary directory) scrapes both every
// second and loads deploy/prometheus's rules. Under load, every query of
// every dashboard panel and every recording rule must return data with at
// least one number, every rule must evaluate without error and no alert
// may fire. Then the XDP link of ac0 is detached behind the appliance's
// back: shakenline_xdp_attached drops to 0, /readyz fails and Prometheus
// fires ShakenlineXDPDetached.
func TestPrometheusLive(t *testing.T) {
	prereq.Tools(t, "sipp", "prometheus", "bpftool", "ip")
	softhsmtest.Require(t)
	topo := nettest.New(t, nettest.Options{})
	pki := labPKI(t)
	dir := t.TempDir()
	key, err := credential.ReadKeyFile(filepath.Join(pki, "sp.key"))
	if err != nil {
		t.Fatal(err)
	}
	hsmEnv := softhsmtest.New(t)
	tok := hsmEnv.NewToken("shakenline-live", key)

	// x5u server in the server namespace.
	const x5uAddr = "198.18.2.2:8088"
	var x5uLn net.Listener
	if err := topo.Server.Do(func() (err error) { x5uLn, err = net.Listen("tcp", x5uAddr); return err }); err != nil {
		t.Fatal(err)
	}
	x5uSrv := &http.Server{Handler: http.FileServer(http.Dir(pki)), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = x5uSrv.Serve(x5uLn) }()
	t.Cleanup(func() { _ = x5uSrv.Close() })

	// The originating appliance, inline.
	const signerAPI, verifierAPI = "198.18.1.1:18080", "198.18.2.2:18081"
	signerCfg := filepath.Join(dir, "signer.yml")
	writeFileT(t, signerCfg, fmt.Sprintf(`mode: inline
iface: [%s, %s]
cert: %s
x5u: http://%s/sp.pem
attest: A
api: %s
lab: true
loops: 1
audit_log: %s
signers:
  - {name: hsm, pkcs11: %q, timeout: 500ms}
  - {name: soft, key: %s}
`, nettest.ApplianceClientIf, nettest.ApplianceServerIf, filepath.Join(pki, "sp.pem"), x5uAddr, signerAPI,
		filepath.Join(dir, "audit.log"), tok.URI(), filepath.Join(pki, "sp.key")))
	startServeIn(t, topo.Appliance, "inline signer", "serve", "--config", signerCfg)

	// The terminating appliance: verifies everything and forwards to the UAS.
	verifierCfg := filepath.Join(dir, "verifier.yml")
	writeFileT(t, verifierCfg, "policy:\n  rules:\n    - {name: interconnect, action: verify}\n")
	startServeIn(t, topo.Server, "verifier", "serve", "--config", verifierCfg, "--mode", "proxy",
		"--sip", "198.18.2.2:5060", "--next-hop", "198.18.2.2:5070", "--key", filepath.Join(pki, "sp.key"),
		"--cert", filepath.Join(pki, "sp.pem"), "--x5u", "http://"+x5uAddr+"/sp.pem",
		"--trust", "lab="+filepath.Join(pki, "root.pem"), "--api", verifierAPI, "--lab", "--loops", "1")

	// Prometheus on the appliance namespace's loopback.
	const promAddr = "127.0.0.1:19090"
	rules, _ := filepath.Abs("../../deploy/prometheus")
	promCfg := filepath.Join(dir, "prometheus.yml")
	writeFileT(t, promCfg, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%s/shakenline-rules.yml, %s/shakenline-alerts.yml]
scrape_configs:
  - job_name: shakenline
    static_configs:
      - targets: [%q, %q]
`, rules, rules, signerAPI, verifierAPI))
	startNSProc(t, "prometheus", topo.Appliance.Command("prometheus", "--config.file="+promCfg,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+promAddr, "--log.level=warn"))
	hc := nsHTTP(topo.Appliance)
	prom := "http://" + promAddr
	waitUntil(t, 30*time.Second, "Prometheus scraping both appliances", func() bool {
		rs, err := promQuery(t, hc, prom, `sum(up{job="shakenline"})`)
		return err == nil && len(rs) == 1 && rs[0].float() == 2
	})

	// SIPp: UAS behind the verifier, UAC in the client namespace, 100
	// calls/s for at most 45 s; HTTP signing requests alongside.
	sippDir := t.TempDir()
	uas := topo.Server.Command("sipp", "-sf", mustAbs(t, "../../bench/sipp/uas.xml"), "-i", "198.18.2.2", "-p", "5070",
		"-nostdin", "-timeout", "120s")
	uas.Dir = sippDir
	startNSProc(t, "sipp uas", uas)
	time.Sleep(300 * time.Millisecond)
	uac := topo.Client.Command("sipp", "198.18.2.2:5060", "-sf", mustAbs(t, "../../bench/sipp/uac_invite_only.xml"),
		"-inf", mustAbs(t, "../../bench/sipp/numbers.csv"), "-i", nettest.ClientV4.String(), "-p", "5070",
		"-nostdin", "-r", "100", "-m", "4500", "-timeout", "60s")
	uac.Dir = sippDir
	startNSProc(t, "sipp uac", uac)
	stopAPI := make(chan struct{})
	var apiWG sync.WaitGroup
	apiWG.Go(func() {
		for i := 0; i < 200; i++ {
			select {
			case <-stopAPI:
				return
			case <-time.After(250 * time.Millisecond):
			}
			body := fmt.Sprintf(`{"signingRequest":{"attest":"A","dest":{"tn":["12155550199"]},"iat":%d,"orig":{"tn":"12155550100"}}}`, time.Now().Unix())
			if resp, err := hc.Post("http://"+signerAPI+"/stir/v1/signing", "application/json", strings.NewReader(body)); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	})
	defer func() { close(stopAPI); apiWG.Wait() }()

	// Calls flow end to end: signed by the signer and passed by the verifier.
	waitUntil(t, 30*time.Second, "verified calls at the verifier", func() bool {
		rs, err := promQuery(t, hc, prom, `sum(rate(shakenline_verifications_total{verstat="TN-Validation-Passed"}[5s]))`)
		return err == nil && len(rs) == 1 && rs[0].float() > 10
	})
	time.Sleep(15 * time.Second) // fill the rate windows and the recording rules

	// Every dashboard query and every recorded series returns data.
	queries := dashboardQueries(t, "10s")
	for _, r := range recordedSeries(t) {
		queries["recording rule "+r] = r
	}
	names := make([]string, 0, len(queries))
	for n := range queries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rs, err := promQuery(t, hc, prom, queries[n])
		if err != nil {
			t.Errorf("%s: %q: %v", n, queries[n], err)
			continue
		}
		numbers := 0
		for _, r := range rs {
			if !math.IsNaN(r.float()) {
				numbers++
			}
		}
		if len(rs) == 0 || numbers == 0 {
			t.Errorf("%s: %q returned %d series, %d with a number", n, queries[n], len(rs), numbers)
		}
	}
	t.Logf("checked %d dashboard queries and recorded series", len(queries))
	for _, c := range []struct{ expr, why string }{
		{`shakenline:calls_signed:rate1m{instance="` + signerAPI + `"}`, "the inline signer signs"},
		{`shakenline:verifications_by_verstat:rate1m{instance="` + verifierAPI + `",verstat="TN-Validation-Passed"}`, "the verifier passes the calls"},
		{`shakenline:signer_latency_seconds:p99_rate5m{instance="` + signerAPI + `",signer="hsm"}`, "the HSM's latency is measured"},
		{`sum(rate(shakenline_xdp_packets_total{action="steered"}[10s]))`, "XDP steers INVITEs"},
		{`shakenline:api_signed:rate1m{instance="` + signerAPI + `"}`, "HTTP signing works"},
	} {
		rs, err := promQuery(t, hc, prom, c.expr)
		if err != nil || len(rs) == 0 || !(rs[0].float() > 0) {
			t.Errorf("%s: %s = %v (%v)", c.why, c.expr, rs, err)
		}
	}

	// Every rule evaluates cleanly, and a healthy fleet fires nothing.
	var rulesResp struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name, Health, LastError string
					State                   string `json:"state"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if code, body := httpGet(t, hc, prom+"/api/v1/rules"); code != 200 || json.Unmarshal([]byte(body), &rulesResp) != nil {
		t.Fatalf("/api/v1/rules: %d", code)
	}
	nRules := 0
	for _, g := range rulesResp.Data.Groups {
		for _, r := range g.Rules {
			nRules++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
			}
			// Firing is a wiring error (or a real fault) on a healthy fleet.
			// Pending is logged only: an alert with a for: clause can be
			// pending for a real, transient reason on a loaded CI machine
			// (a starved loop's stale heartbeat, a signer timeout).
			switch r.State {
			case "firing":
				t.Errorf("alert %s is firing on a healthy fleet", r.Name)
			case "pending":
				t.Logf("alert %s is pending", r.Name)
			}
		}
	}
	if nRules < 40 {
		t.Errorf("Prometheus loaded %d rules", nRules)
	}

	// The status page of the inline signer shows the chain and XDP.
	sigC := nsHTTP(topo.Appliance)
	if code, page := httpGet(t, sigC, "http://"+signerAPI+"/status"); code != 200 ||
		!strings.Contains(page, `signer-name">hsm<`) || !strings.Contains(page, `signer-name">soft<`) ||
		strings.Count(page, `<span class="pill ok">attached</span>`) != 2 {
		t.Errorf("/status of the inline signer: %d\n%s", code, page)
	}

	// Detach the XDP link of ac0 behind the appliance's back.
	detachXDP(t, topo.Appliance, nettest.ApplianceClientIf)
	waitUntil(t, 10*time.Second, "shakenline_xdp_attached 0 and shakenline_ready{check=\"xdp\"} 0 on /metrics", func() bool {
		_, m := httpGet(t, sigC, "http://"+signerAPI+"/metrics")
		return regexp.MustCompile(`(?m)^shakenline_xdp_attached\{iface="ac0",mode="[a-z]+"\} 0$`).MatchString(m) &&
			regexp.MustCompile(`(?m)^shakenline_xdp_fail_open\{iface="ac0"\} 1$`).MatchString(m) &&
			regexp.MustCompile(`(?m)^shakenline_xdp_attached\{iface="as0",mode="[a-z]+"\} 1$`).MatchString(m) &&
			regexp.MustCompile(`(?m)^shakenline_ready\{check="xdp"\} 0$`).MatchString(m)
	})
	if code, body := httpGet(t, sigC, "http://"+signerAPI+"/readyz"); code != 503 || !strings.Contains(body, "xdp") {
		t.Errorf("/readyz with ac0 detached: %d %s", code, body)
	}
	waitUntil(t, 15*time.Second, "ShakenlineXDPDetached firing for ac0", func() bool {
		rs, err := promQuery(t, hc, prom, `ALERTS{alertname="ShakenlineXDPDetached",alertstate="firing",iface="ac0"}`)
		return err == nil && len(rs) == 1
	})
	if code, page := httpGet(t, sigC, "http://"+signerAPI+"/status"); code != 200 || !strings.Contains(page, "XDP ac0: detached") {
		t.Errorf("/status does not report ac0 detached")
	}
}

// detachXDP detaches the XDP link of dev in ns (bpftool link detach), as
// an operator or another tool could.
func detachXDP(t *testing.T, ns *nettest.NS, dev string) {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns.Name, "-j", "link", "show", "dev", dev).Output()
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Ifindex int `json:"ifindex"`
		XDP     struct {
			Prog struct {
				ID int `json:"id"`
			} `json:"prog"`
		} `json:"xdp"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 || links[0].XDP.Prog.ID == 0 {
		t.Fatalf("ip link show %s: %v %s", dev, err, out)
	}
	out, err = exec.Command("bpftool", "-j", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var bl []struct {
		ID     int    `json:"id"`
		Type   string `json:"type"`
		ProgID int    `json:"prog_id"`
	}
	if err := json.Unmarshal(out, &bl); err != nil {
		t.Fatal(err)
	}
	for _, l := range bl {
		if l.Type != "xdp" || l.ProgID != links[0].XDP.Prog.ID {
			continue
		}
		// The program is attached to both links; Debian's bpftool does not
		// print the interface, the link's info does.
		lk, err := link.NewFromID(link.ID(l.ID))
		if err != nil {
			t.Fatal(err)
		}
		info, err := lk.Info()
		lk.Close()
		if err != nil || info.XDP() == nil || int(info.XDP().Ifindex) != links[0].Ifindex {
			continue
		}
		if b, err := exec.Command("bpftool", "link", "detach", "id", strconv.Itoa(l.ID)).CombinedOutput(); err != nil {
			t.Fatalf("bpftool link detach: %v %s", err, b)
		}
		return
	}
	t.Fatalf("no XDP link for %s (prog %d) in %s", dev, links[0].XDP.Prog.ID, out)
}

func writeFileT(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
