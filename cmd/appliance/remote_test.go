package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/loadgen"
	"github.com/shakenline/shakenline/bench/nethsm"
	"github.com/shakenline/shakenline/config"
)

// stiASProcess is another appliance, a real `appliance serve` process (this
// test binary re-executed, see TestMain), whose API is the remote STI-AS of
// the chain under test.
type stiASProcess struct {
	t    *testing.T
	args []string
	api  string
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuf
}

func startSTIAS(t *testing.T, pki, x5u, tokenFile string) *stiASProcess {
	t.Helper()
	p := &stiASProcess{t: t, api: freeTCP(t)}
	p.args = []string{"serve", "--sip", freeUDP(t), "--api", p.api, "--api-token-file", tokenFile,
		"--key", filepath.Join(pki, "sp.key"), "--cert", filepath.Join(pki, "sp.pem"), "--x5u", x5u, "--lab"}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *stiASProcess) url() string { return "http://" + p.api + "/stir/v1/signing" }

func (p *stiASProcess) start() {
	p.t.Helper()
	a, _ := json.Marshal(p.args)
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), execEnv+"="+string(a))
	p.logs = &syncBuf{}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	end := time.Now().Add(15 * time.Second)
	for time.Now().Before(end) {
		select {
		case <-p.done:
			p.t.Fatalf("STI-AS appliance exited:\n%s", p.logs.String())
		default:
		}
		if resp, err := http.Get("http://" + p.api + "/healthz"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("STI-AS appliance did not start:\n%s", p.logs.String())
}

// stop kills the process, as a crash would.
func (p *stiASProcess) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// signedBy reads shakenline_hsm_signed_total by signer from /metrics.
func signedBy(t *testing.T, api string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	out := map[string]float64{}
	for _, line := range strings.Split(b.String(), "\n") {
		rest, ok := strings.CutPrefix(line, `shakenline_hsm_signed_total{signer="`)
		if !ok {
			continue
		}
		name, val, _ := strings.Cut(rest, `"} `)
		out[name], _ = strconv.ParseFloat(val, 64)
	}
	return out
}

// remoteLab is what the sti_as tests share: a lab PKI, an x5u repository
// that serves its certificate under any name (for the links'
// own-certificate check: the remotes sign with the provider's
// certificate, same SPC) and the remotes' bearer token file.
type remoteLab struct {
	pki, dir, token string
	certPEM         []byte
	repo            *httptest.Server
}

func newRemoteLab(t *testing.T) *remoteLab {
	t.Helper()
	l := &remoteLab{pki: labPKI(t), dir: t.TempDir()}
	var err error
	if l.certPEM, err = os.ReadFile(filepath.Join(l.pki, "sp.pem")); err != nil {
		t.Fatal(err)
	}
	l.repo = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(l.certPEM) }))
	t.Cleanup(l.repo.Close)
	l.token = filepath.Join(l.dir, "token")
	if err := os.WriteFile(l.token, []byte("sti-as-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// A chain [HSM, sti_as primary, sti_as secondary], the two STI-AS other
// appliances: the HSM stops, then the primary; the calls keep being signed
// by the next link, none unsigned, every signature verifying; each comes
// back and the traffic returns to it.
func TestRemoteSTIASChain(t *testing.T) {
	mod := nethsm.Module(t)
	l := newRemoteLab(t)
	pki, dir, repo, token := l.pki, l.dir, l.repo, l.token
	primary := startSTIAS(t, pki, repo.URL+"/primary.pem", token)
	secondary := startSTIAS(t, pki, repo.URL+"/secondary.pem", token)

	dev := netHSM(t, mod, dir, pki, nethsm.Config{Latency: 300 * time.Microsecond, Pool: 20000})
	sink := verifyingSink(t, pki)
	sip, api := freeUDP(t), freeTCP(t)
	cfg := filepath.Join(dir, "appliance.yaml")
	yaml := fmt.Sprintf(`sip: %s
next_hop: %s
api: %s
cert: %s
x5u: %s/ours.pem
lab: true
attest: A
sign_budget: 500ms  # generous: the machine running the tests may be busy
signers:
  - name: hsm
    pkcs11: %q
    workers: 4
    timeout: 100ms
  - name: primary
    sti_as: %s
    token_file: %s
    timeout: 300ms
    max_in_flight: 8
    own_cert: enforce
  - name: secondary
    sti_as: %s
    token_file: %s
    timeout: 300ms
    max_in_flight: 8
    own_cert: enforce
`, sip, sink.Addr(), api, filepath.Join(pki, "sp.pem"), repo.URL, dev.URI(), primary.url(), token, secondary.url(), token)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := startServe(t, "--config", cfg)
	// At start, before any call reaches them, both remote links have
	// checked the certificate they sign with (a probe signature each).
	for _, name := range []string{"primary", "secondary"} {
		end := time.Now().Add(20 * time.Second)
		for !strings.Contains(logs.String(), `certificate of ours" signer=`+name) {
			if time.Now().After(end) {
				t.Fatalf("no own-certificate check of %s at start:\n%s", name, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	g, err := loadgen.NewGenerator(loadgen.Config{Target: netip.MustParseAddrPort(sip), Sink: sink, Drain: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := &callFlow{t: t, g: g, api: api}
	flow := func(what, signer string, n float64) { t.Helper(); f.until(ctx, what, signer, n) }
	flow("healthy", "hsm", 100)
	if err := dev.Fault(ctx, nethsm.TokenNotPresent); err != nil {
		t.Fatal(err)
	}
	flow("HSM down", "primary", 200)
	ready(t, api)
	primary.stop()
	flow("HSM and primary down", "secondary", 200)
	ready(t, api)
	primary.start()
	flow("primary back", "primary", 200)
	if err := dev.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	flow("HSM back", "hsm", 200)

	f.check()
}

// ready checks that /readyz answers 200: a remote STI-AS link that is up
// makes the appliance ready even with every key link down.
func ready(t *testing.T, api string) {
	t.Helper()
	resp, err := http.Get("http://" + api + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %s", resp.Status)
	}
}

// callFlow sends calls through the appliance under test (its API at api)
// and adds up what the sink saw.
type callFlow struct {
	t     *testing.T
	g     *loadgen.Generator
	api   string
	total loadgen.Result
}

// until sends calls, 200 a second, until signer has signed n more of them.
func (f *callFlow) until(ctx context.Context, what, signer string, n float64) {
	t := f.t
	t.Helper()
	base := signedBy(t, f.api)[signer]
	end := time.Now().Add(40 * time.Second)
	for signedBy(t, f.api)[signer] < base+n {
		if time.Now().After(end) {
			t.Fatalf("%s: %s signed %.0f in 40 s, want %.0f; by signer %v", what, signer,
				signedBy(t, f.api)[signer]-base, n, signedBy(t, f.api))
		}
		r, err := f.g.Run(ctx, loadgen.Load{Rate: 200, Duration: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		f.total.Sent += r.Sent
		f.total.Received += r.Received
		f.total.WithIdentity += r.WithIdentity
		f.total.VerifyOK += r.VerifyOK
		f.total.VerifyFailed += r.VerifyFailed
	}
	t.Logf("%s: signed by %v", what, signedBy(t, f.api))
}

// check fails the test unless every call arrived signed, and every
// signature checked verified.
func (f *callFlow) check() {
	t, r := f.t, f.total
	t.Helper()
	t.Logf("calls: sent %d, received %d, with Identity %d, verified %d, failed verification %d",
		r.Sent, r.Received, r.WithIdentity, r.VerifyOK, r.VerifyFailed)
	if r.Received != r.Sent || r.WithIdentity != r.Sent || r.VerifyFailed != 0 || r.VerifyOK == 0 {
		t.Fatalf("%d sent, %d received, %d signed, %d failed verification: want every call signed and verifying",
			r.Sent, r.Received, r.WithIdentity, r.VerifyFailed)
	}
}

// An sti_as link whose https endpoint has a certificate from a private CA
// (an STI-AS on the carrier's own network): refused with the system's
// anchors alone, trusted with tls_roots naming that CA. The endpoint is a
// TLS front (httptest) for another appliance's API.
func TestRemoteSTIASPrivateCA(t *testing.T) {
	l := newRemoteLab(t)
	pki, dir, token, certPEM := l.pki, l.dir, l.token, l.certPEM
	remote := startSTIAS(t, pki, l.repo.URL+"/sp.pem", token)
	front := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: remote.api}))
	t.Cleanup(front.Close)
	ca := filepath.Join(dir, "sti-as-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Lab = true // the x5u repository is plain http on loopback
	link := func(roots string) config.Signer {
		return config.Signer{Name: "private", StiAS: front.URL + "/stir/v1/signing", TokenFile: token, Timeout: 2 * time.Second,
			OwnCert: "enforce", TLSRoots: roots}
	}
	log := slog.New(slog.DiscardHandler)

	c, err := newRemote(cfg, link(""), leaf, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.CheckAtStart(ctx); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("without tls_roots: %v, want the private CA refused", err)
	}
	c.Close()

	c, err = newRemote(cfg, link(ca), leaf, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if own, err := c.CheckAtStart(ctx); err != nil || !own {
		t.Fatalf("with tls_roots: own %v, %v", own, err)
	}

	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("no certificate here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newRemote(cfg, link(empty), leaf, log); err == nil || !strings.Contains(err.Error(), "tls_roots") {
		t.Fatalf("a tls_roots file without a certificate: %v", err)
	}
}
