package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The ACME tests run on loopback addresses of their own.
const (
	acmeLabIP  = "127.0.118.10" // lab-sti (https, CRL http on the next port)
	acmeAppIP  = "127.0.118.11" // the appliance: SIP, API, x5u repository
	acmeKamIP  = "127.0.118.12" // Kamailio, the independent verifier
	acmeUASIP  = "127.0.118.13"
	acmeUACIP  = "127.0.118.14"
	acmeLabIP2 = "127.0.118.20" // the CA of the split lab (failure test)
)

func freePortOn(t *testing.T, network, ip string) int {
	t.Helper()
	if network == "udp" {
		return freeSIPPort(t, ip) // free for TCP too: serve listens on both
	}
	l, err := net.Listen("tcp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeTCPPair returns a port p on ip with p+1 free too (lab-sti's CRL
// listener is its https port + 1).
func freeTCPPair(t *testing.T, ip string) int {
	for range 50 {
		p := freePortOn(t, "tcp", ip)
		if l, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", ip, p+1)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// proc is a subcommand of this binary run as its own process (TestMain's
// execEnv), so it can be stopped and started like the real thing.
type proc struct {
	cmd  *exec.Cmd
	logs *syncBuf
	done chan struct{}
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	b, _ := json.Marshal(args)
	p := &proc{cmd: exec.Command(os.Args[0]), logs: &syncBuf{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), execEnv+"="+string(b))
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that started the child exits, not
	// the process: the child is started, and waited for, on a thread kept
	// until it ends.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := p.cmd.Start()
		started <- err
		if err == nil {
			_ = p.cmd.Wait()
		}
		close(p.done)
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s log tail:\n%s", args[0], lastLines([]byte(p.logs.String()), 60))
		}
	})
	return p
}

// stop ends the process (SIGTERM, SIGKILL after 5 s).
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// wait waits for s in the logs.
func (p *proc) wait(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.logs.String(), s) {
		select {
		case <-p.done:
			t.Fatalf("process exited before %q:\n%s", s, lastLines([]byte(p.logs.String()), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %v:\n%s", s, d, lastLines([]byte(p.logs.String()), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// acmeLab is lab-sti and an appliance configured to manage its
// certificate from it.
type acmeLab struct {
	dir, labDir string
	labURL      string // https://ip:port
	lab, pa, ca *proc
	paArgs      []string
	caArgs      []string
	tlsClient   *http.Client
	app         *proc
	apiAddr     string
	sipAddr     string
	config      string
}

// startLabSTI runs lab-sti (both roles, or PA and CA as two processes).
func startLabSTI(t *testing.T, split bool, lifetime time.Duration) *acmeLab {
	l := &acmeLab{dir: t.TempDir()}
	l.labDir = filepath.Join(l.dir, "lab")
	port := freeTCPPair(t, acmeLabIP)
	l.labURL = fmt.Sprintf("https://%s:%d", acmeLabIP, port)
	listen := fmt.Sprintf("%s:%d", acmeLabIP, port)
	if !split {
		l.lab = startProc(t, "lab-sti", "--listen", listen, "--out", l.labDir, "--lifetime", lifetime.String())
		l.lab.wait(t, "STI-CA ACME directory", 10*time.Second)
	} else {
		l.paArgs = []string{"lab-sti", "--role", "pa", "--listen", listen, "--out", l.labDir}
		l.pa = startProc(t, l.paArgs...)
		l.pa.wait(t, "STI-PA token API", 10*time.Second)
		cport := freeTCPPair(t, acmeLabIP2)
		l.caArgs = []string{"lab-sti", "--role", "ca", "--listen", fmt.Sprintf("%s:%d", acmeLabIP2, cport), "--out", l.labDir,
			"--url", fmt.Sprintf("https://%s:%d", acmeLabIP2, cport), "--lifetime", lifetime.String()}
		l.ca = startProc(t, l.caArgs...)
		l.ca.wait(t, "STI-CA ACME directory", 10*time.Second)
	}
	roots := x509.NewCertPool()
	b, err := os.ReadFile(filepath.Join(l.labDir, "tls-root.pem"))
	if err != nil || !roots.AppendCertsFromPEM(b) {
		t.Fatalf("tls-root.pem: %v", err)
	}
	l.tlsClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	return l
}

// caURL is the STI-CA's base.
func (l *acmeLab) caURL(t *testing.T) string {
	if l.ca == nil {
		return l.labURL
	}
	m := regexp.MustCompile(`STI-CA ACME directory: (https://[^/]+)/`).FindStringSubmatch(l.ca.logs.String())
	if m == nil {
		t.Fatal("no CA URL in the CA's log")
	}
	return m[1]
}

// fault sets a lab fault on the process serving component.
func (l *acmeLab) fault(t *testing.T, component, f string) {
	t.Helper()
	base := l.labURL
	if component == "ca" {
		base = l.caURL(t)
	}
	resp, err := l.tlsClient.Post(base+"/lab/fault", "application/json", strings.NewReader(fmt.Sprintf(`{%q:%q}`, component, f)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("fault %s=%s: %d %s", component, f, resp.StatusCode, b)
	}
}

// startAppliance writes the appliance's config (softhsm2 token, acme: to
// the lab, built-in x5u repository over http) and runs serve; it returns
// once serve has its first certificate and serves. The signing budget is
// 1 s (not 100 ms) and the token's timeout per signature 500 ms (not
// 50 ms): these tests share two cores with other benchmarks, and a
// scheduling stall past those would bypass calls (correctly, and counted:
// the breaker opens on a slow signer) for a reason that is not the
// renewal under test.
func (l *acmeLab) startAppliance(t *testing.T, tokenURI, nextHop string, extra string) {
	t.Helper()
	sipPort := freePortOn(t, "udp", acmeAppIP)
	l.sipAddr = fmt.Sprintf("%s:%d", acmeAppIP, sipPort)
	l.apiAddr = fmt.Sprintf("%s:%d", acmeAppIP, freePortOn(t, "tcp", acmeAppIP))
	repo := fmt.Sprintf("%s:%d", acmeAppIP, freePortOn(t, "tcp", acmeAppIP))
	l.config = filepath.Join(l.dir, "appliance.yaml")
	cfg := fmt.Sprintf(`mode: proxy
sip: %s
next_hop: %s
signers:
  - {name: hsm, pkcs11: %q, timeout: 500ms}
api: %s
lab: true
loops: 2
log_level: info
sign_budget: 1s
trust: {lab: %s}
acme:
  directory: %s/acme/directory
  spc: "1234"
  organization: Shakenline Test SP
  country: US
  spc_token:
    api: %s/sti-pa
    credentials: %s
  tls_roots: %s
  publish:
    url: http://%s/x5u/
    listen: %s
    timeout: 10s
  state_dir: %s
  retry_min: 500ms
%s`, l.sipAddr, nextHop, tokenURI, l.apiAddr, filepath.Join(l.labDir, "root.pem"), l.caURL(t), l.labURL,
		filepath.Join(l.labDir, "stipa-1234.json"), filepath.Join(l.labDir, "tls-root.pem"), repo, repo,
		filepath.Join(l.dir, "acme"), extra)
	if err := os.WriteFile(l.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l.app = startProc(t, "serve", "--config", l.config)
	l.app.wait(t, "appliance serving", 60*time.Second)
}

// scrape reads the appliance's /metrics.
func (l *acmeLab) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	m, err := l.metrics()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// statusPage is GET /status.
func (l *acmeLab) statusPage(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + l.apiAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /status: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

func (l *acmeLab) metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + l.apiAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] += v
		}
	}
	return out, sc.Err()
}

func sumPrefix(m map[string]float64, prefix string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}

func (l *acmeLab) readyz() int {
	resp, err := http.Get("http://" + l.apiAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

var (
	x5uInUse = regexp.MustCompile(`msg="certificate in use" x5u=(\S+)`)
	tookRE   = regexp.MustCompile(`acme: certificate obtained, validated and published".* took=(\S+)`)
)

// sippTotals reads the last line of the UAC's -trace_stat file:
// SuccessfulCall(C) and FailedCall(C).
func sippTotals(t *testing.T, dir string) (ok, failed int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "uac_invite_only_*_.csv"))
	if len(files) != 1 {
		t.Fatalf("UAC statistics: %v", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(b)), "\n")
	head, last := strings.Split(rows[0], ";"), strings.Split(rows[len(rows)-1], ";")
	for i, h := range head {
		if i >= len(last) {
			break
		}
		switch h {
		case "SuccessfulCall(C)":
			ok, _ = strconv.Atoi(last[i])
		case "FailedCall(C)":
			failed, _ = strconv.Atoi(last[i])
		}
	}
	return ok, failed
}

func kamLog(t *testing.T, dir string) io.Writer {
	f, err := os.Create(filepath.Join(dir, "kamailio.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
