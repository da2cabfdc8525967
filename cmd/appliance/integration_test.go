package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/sipp"
	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
)

// freeUDP returns a loopback address whose port is free for UDP and for
// TCP: serve's --sip listens on both.
func freeUDP(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeSIPPort(t, "127.0.0.1")))
}

func freeTCP(t *testing.T) string {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuf is a goroutine-safe buffer for a subcommand's stderr.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startServe runs `appliance serve` in process until the test ends.
func startServe(t *testing.T, args ...string) *syncBuf {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuf{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve"}, args...), env{stdin: strings.NewReader(""), stdout: logs, stderr: logs, now: time.Now})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
		if t.Failed() {
			t.Logf("appliance log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, logs.String())
		default:
		}
		if strings.Contains(logs.String(), "appliance serving") {
			return logs
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("serve did not start:\n%s", logs.String())
	return nil
}

func labPKI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := labpki.Generate(dir, labpki.Options{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func leafKey(t *testing.T, dir string) *ecdsa.PublicKey {
	t.Helper()
	certs, err := loadCerts(filepath.Join(dir, "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0].PublicKey.(*ecdsa.PublicKey)
}

// sippINVITEs returns the INVITEs in a SIPp -trace_msg message log.
func sippINVITEs(t *testing.T, path string) [][]byte {
	t.Helper()
	msgs, err := sipp.ReadInvites(path)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// TestSIPpThroughAppliance drives real SIPp calls through `appliance serve`
// in proxy mode and verifies every Identity header that reaches the UAS.
func TestSIPpThroughAppliance(t *testing.T) {
	prereq.Tools(t, "sipp")
	pki := labPKI(t)
	sipAddr, uasAddr, apiAddr := freeUDP(t), freeUDP(t), freeTCP(t)
	startServe(t, "--sip", sipAddr, "--next-hop", uasAddr, "--key", filepath.Join(pki, "sp.key"),
		"--cert", filepath.Join(pki, "sp.pem"), "--x5u", "https://cert.example.org/sp.pem", "--attest", "B", "--api", apiAddr)

	work := t.TempDir()
	uasLog := filepath.Join(work, "uas.log")
	_, uasPort, _ := net.SplitHostPort(uasAddr)
	uas := exec.Command("sipp", "-sf", "../../bench/sipp/uas.xml", "-i", "127.0.0.1", "-p", uasPort, "-nostdin",
		"-trace_msg", "-message_file", uasLog, "-timeout", "60s")
	uas.Dir = mustAbs(t, ".")
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uas.Process.Kill(); _ = uas.Wait() })
	waitUDP(t, uasPort)

	const calls = 200
	uac := exec.Command("sipp", "-sf", "../../bench/sipp/uac_invite_only.xml", "-inf", "../../bench/sipp/numbers.csv",
		"-i", "127.0.0.1", "-p", "0", "-nostdin", "-m", fmt.Sprint(calls), "-r", "100", "-timeout", "60s", sipAddr)
	uac.Dir = mustAbs(t, ".")
	out, err := uac.CombinedOutput()
	if err != nil {
		t.Fatalf("SIPp UAC failed (some calls did not complete): %v\n%s", err, lastLines(out, 30))
	}
	_ = uas.Process.Kill()
	_ = uas.Wait()

	pub := leafKey(t, pki)
	invites := sippINVITEs(t, uasLog)
	if len(invites) < calls {
		t.Fatalf("UAS saw %d INVITEs, want %d", len(invites), calls)
	}
	for i, inv := range invites {
		ids := sipp.HeaderValues(inv, "Identity")
		if len(ids) != 1 {
			t.Fatalf("INVITE %d has %d Identity headers:\n%s", i, len(ids), inv)
		}
		id, err := passport.ParseIdentity(ids[0])
		if err != nil {
			t.Fatalf("INVITE %d: %v", i, err)
		}
		if err := passport.VerifySignature(pub, id); err != nil {
			t.Fatalf("INVITE %d: signature: %v", i, err)
		}
		pai := sipp.HeaderValues(inv, "P-Asserted-Identity")
		if len(pai) != 1 || pai[0] != "<tel:+"+id.Payload.Orig.TN+">" || id.Payload.Attest != "B" {
			t.Fatalf("INVITE %d: orig %q attest %s, PAI %q", i, id.Payload.Orig.TN, id.Payload.Attest, pai)
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func waitUDP(t *testing.T, port string) {
	t.Helper()
	for range 100 {
		out, _ := exec.Command("ss", "-Hlnu", "sport = :"+port).Output()
		if len(bytes.TrimSpace(out)) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on udp port %s", port)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var _ = errors.New

func runCmd(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, env{stdin: strings.NewReader(""), stdout: &o, stderr: &e, now: time.Now})
	return code, o.String(), e.String()
}

// TestServeCheckAndStartErrors covers the exit-2 contract: a bad config, a
// key that is not the certificate's, an expired certificate, and --check.
func TestServeCheckAndStartErrors(t *testing.T) {
	pki := labPKI(t)
	other := labPKI(t)
	base := []string{"serve", "--check", "--sip", "127.0.0.1:5060", "--next-hop", "127.0.0.1:5070",
		"--cert", filepath.Join(pki, "sp.pem"), "--x5u", "https://cert.example.org/sp.pem"}
	if code, out, errs := runCmd(append(base, "--key", filepath.Join(pki, "sp.key"))...); code != 0 || !strings.Contains(out, "configuration ok") {
		t.Fatalf("--check of a good config: exit %d\n%s%s", code, out, errs)
	}
	for name, args := range map[string][]string{
		"key not the cert's": append(base, "--key", filepath.Join(other, "sp.key")),
		"http x5u":           append(append([]string{}, base...), "--key", filepath.Join(pki, "sp.key"), "--x5u", "http://cert.example.org/sp.pem"),
		"bad attest":         append(append([]string{}, base...), "--key", filepath.Join(pki, "sp.key"), "--attest", "D"),
		"no key":             base,
		"unknown flag":       append(append([]string{}, base...), "--nope"),
		"pkcs11 bad uri":     append(append([]string{}, base...), "--pkcs11", "pkcs11:token=none?module-path=/nonexistent.so&pin-source=file:/nonexistent"),
	} {
		code, _, errs := runCmd(args...)
		if code != 2 || strings.Count(strings.TrimSpace(errs), "\n") > 20 || errs == "" {
			t.Errorf("%s: exit %d, stderr %q; want 2 with a reason", name, code, errs)
		}
	}
	// An expired certificate is refused at start.
	if code, _, errs := run2(t, time.Now().AddDate(5, 0, 0), append(base, "--key", filepath.Join(pki, "sp.key"))...); code != 2 || !strings.Contains(errs, "expired") {
		t.Errorf("expired cert: exit %d %q", code, errs)
	}
}

func run2(t *testing.T, now time.Time, args ...string) (int, string, string) {
	var o, e bytes.Buffer
	code := run(context.Background(), args, env{stdin: strings.NewReader(""), stdout: &o, stderr: &e, now: func() time.Time { return now }})
	return code, o.String(), e.String()
}

// TestReloadPolicyBySignal: SIGHUP applies a new policy; a broken config is
// refused with the reason logged and the running policy kept.
func TestReloadPolicyBySignal(t *testing.T) {
	pki := labPKI(t)
	sipAddr := freeUDP(t)
	next, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	cfgPath := filepath.Join(t.TempDir(), "appliance.yaml")
	apiAddr := freeTCP(t) // monitor-only API: /metrics counts the SIGHUP reloads
	writeCfg := func(def string) {
		body := fmt.Sprintf("sip: %s\nnext_hop: %s\nkey: %s\ncert: %s\nx5u: https://cert.example.org/sp.pem\napi: %s\npolicy:\n  default: %s\n",
			sipAddr, next.LocalAddr(), filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem"), apiAddr, def)
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("A")
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuf{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgPath}, env{stdin: strings.NewReader(""), stdout: logs, stderr: logs, now: time.Now, signals: hup})
	}()
	defer func() { cancel(); <-done }()
	for i := 0; !strings.Contains(logs.String(), "appliance serving"); i++ {
		if i > 500 {
			t.Fatalf("serve did not start:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	attest := func(id string) string {
		t.Helper()
		inv := "INVITE sip:+12155550123@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + client.LocalAddr().String() + ";branch=z9hG4bK" + id + "\r\n" +
			"From: <tel:+12155550100>;tag=" + id + "\r\nTo: <tel:+12155550123>\r\nCall-ID: " + id + "\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
		dst, _ := net.ResolveUDPAddr("udp4", sipAddr)
		if _, err := client.WriteTo([]byte(inv), dst); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8192)
		_ = next.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := next.ReadFrom(buf)
		if err != nil {
			t.Fatalf("nothing forwarded: %v", err)
		}
		ids := sipp.HeaderValues(buf[:n], "Identity")
		if len(ids) != 1 {
			t.Fatalf("not signed:\n%s", buf[:n])
		}
		p, err := passport.ParseIdentity(ids[0])
		if err != nil {
			t.Fatal(err)
		}
		return p.Payload.Attest
	}
	if a := attest("r1"); a != "A" {
		t.Fatalf("attest %s, want A", a)
	}
	reloads := func() (ok, refused int) {
		t.Helper()
		resp, err := http.Get("http://" + apiAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, found := strings.CutPrefix(l, `shakenline_api_reloads_total{result="ok"} `); found {
				ok, _ = strconv.Atoi(v)
			}
			if v, found := strings.CutPrefix(l, `shakenline_api_reloads_total{result="refused"} `); found {
				refused, _ = strconv.Atoi(v)
			}
		}
		return ok, refused
	}
	ok0, refused0 := reloads()
	writeCfg("B")
	hup <- syscall.SIGHUP
	waitLog(t, logs, "configuration reloaded", 1)
	if a := attest("r2"); a != "B" {
		t.Fatalf("after reload attest %s, want B", a)
	}
	writeCfg("Z") // invalid attestation
	hup <- syscall.SIGHUP
	waitLog(t, logs, "reload refused", 1)
	if a := attest("r3"); a != "B" {
		t.Fatalf("after a refused reload attest %s, want B (kept)", a)
	}
	// SIGHUP reloads are counted where ShakenlineConfigReloadRefused looks.
	if ok, refused := reloads(); ok-ok0 != 1 || refused-refused0 != 1 {
		t.Errorf("shakenline_api_reloads_total after one good and one refused SIGHUP: ok +%d, refused +%d", ok-ok0, refused-refused0)
	}
}

func waitLog(t *testing.T, logs *syncBuf, s string, n int) {
	t.Helper()
	for i := 0; strings.Count(logs.String(), s) < n; i++ {
		if i > 250 {
			t.Fatalf("log never said %q:\n%s", s, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeRCDContent: a policy whose Rich Call Data link to content that
// cannot be fetched is refused at start with the URL and the reason; once
// the content is there, it starts, its rcdi computed from the content.
func TestServeRCDContent(t *testing.T) {
	pki := labPKI(t)
	var body atomic.Value
	body.Store("")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := body.Load().(string)
		if b == "" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(b))
	}))
	defer web.Close()
	cfgPath := filepath.Join(t.TempDir(), "rcd.yaml")
	cfg := fmt.Sprintf("lab: true\nsip: 127.0.0.1:5060\nnext_hop: 127.0.0.1:5070\nkey: %s\ncert: %s\nx5u: https://cert.example.org/sp.pem\n"+
		"policy:\n  rules:\n    - name: bank\n      attest: A\n      numbers: [\"+12155550100\"]\n      rcd: {nam: Example Bank, icn: %q}\n",
		filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem"), web.URL+"/logo.png")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd("serve", "--check", "--config", cfgPath)
	if code != 2 || !strings.Contains(errs, "policy rcd") || !strings.Contains(errs, web.URL+"/logo.png") || !strings.Contains(errs, "404") || !strings.Contains(errs, `"bank"`) {
		t.Fatalf("missing logo: exit %d %q", code, errs)
	}
	body.Store("PNG")
	if code, out, errs := runCmd("serve", "--check", "--config", cfgPath); code != 0 || !strings.Contains(out, "configuration ok") {
		t.Fatalf("logo present: exit %d %s%s", code, out, errs)
	}
	// Without lab the content client is the x5u one: an http URL on a
	// loopback address is refused, with the URL, though it serves.
	noLab := filepath.Join(t.TempDir(), "rcd-nolab.yaml")
	if err := os.WriteFile(noLab, []byte(strings.Replace(cfg, "lab: true\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCmd("serve", "--check", "--config", noLab); code != 2 || !strings.Contains(errs, "policy rcd") || !strings.Contains(errs, web.URL+"/logo.png") ||
		!strings.Contains(errs, "not allowed") {
		t.Fatalf("http logo on loopback without lab: exit %d %q", code, errs)
	}
	// Running; a reload whose logo is gone is refused with the reason,
	// and the running policy stays.
	cfg = strings.Replace(cfg, "127.0.0.1:5060", freeUDP(t), 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuf{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgPath}, env{stdin: strings.NewReader(""), stdout: logs, stderr: logs, now: time.Now, signals: hup})
	}()
	defer func() { cancel(); <-done }()
	waitLog(t, logs, "appliance serving", 1)
	body.Store("")
	hup <- syscall.SIGHUP
	waitLog(t, logs, "reload refused", 1)
	if l := logs.String(); !strings.Contains(l, web.URL+"/logo.png") || !strings.Contains(l, "404") {
		t.Fatalf("reload refusal without the URL or reason:\n%s", l)
	}
}
