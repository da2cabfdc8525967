package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
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

	"github.com/shakenline/shakenline/bench/kamailio"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/verify"
)

// TestACMERenewalUnderLoad is the end-to-end run of issue 18 with real
// processes: lab-sti (STI-PA + STI-CA, 24 s certificates), the appliance
// with a softhsm2 token managing its certificate through ACME, SIPp at 200
// calls/s for 70 s (more than two lifetimes) through the appliance and
// Kamailio, which verifies every INVITE with the certificate its x5u
// serves, chained to the lab root (438 otherwise). Every call must arrive
// signed and verified, the x5u must change at each renewal (each one
// serving another certificate for another key), no call unsigned or
// bypassed, /readyz ready throughout.
func TestACMERenewalUnderLoad(t *testing.T) {
	prereq.Tools(t, "sipp")
	needKamailio(t)
	env := softhsmtest.New(t)
	tk := env.NewToken("acme", nil)
	const lifetime = 24 * time.Second
	l := startLabSTI(t, false, lifetime)

	work := t.TempDir()
	uasPort := freePortOn(t, "udp", acmeUASIP)
	kam := startKamailio(t, kamailio.Options{Listen: netip.MustParseAddrPort(fmt.Sprintf("%s:%d", acmeKamIP, freePortOn(t, "udp", acmeKamIP))),
		NextHop: netip.MustParseAddrPort(fmt.Sprintf("%s:%d", acmeUASIP, uasPort)), VerifyCAFile: filepath.Join(l.labDir, "root.pem"), Workers: 1, Log: kamLog(t, work)})
	start := time.Now()
	l.startAppliance(t, tk.URI(), kam.Addr().String(), "  unready_before: 2s\n")
	t.Logf("first certificate obtained and serving after %v", time.Since(start).Round(time.Millisecond))

	// Watch the run: each x5u the appliance switches to is fetched at once
	// (before it retires) and kept; /readyz is read every 200 ms.
	var mu sync.Mutex
	served := map[string][]byte{}
	notAfter := map[int64]bool{} // shakenline_cert_not_after_seconds as scraped
	var bypassAt []string        // when the bypass counter grew (a failure's diagnosis)
	lastBypass := 0.0
	unready := 0
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-tick.C:
			}
			for _, m := range x5uInUse.FindAllStringSubmatch(l.app.logs.String(), -1) {
				u := m[1]
				mu.Lock()
				_, seen := served[u]
				mu.Unlock()
				if seen {
					continue
				}
				resp, err := http.Get(u)
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				served[u] = b
				mu.Unlock()
			}
			if l.readyz() != 200 {
				mu.Lock()
				unready++
				mu.Unlock()
			}
			if m, err := l.metrics(); err == nil {
				mu.Lock()
				notAfter[int64(m["shakenline_cert_not_after_seconds"])] = true
				if b := sumPrefix(m, "shakenline_calls_bypassed_total"); b > lastBypass {
					bypassAt = append(bypassAt, fmt.Sprintf("%s +%v", time.Now().UTC().Format("15:04:05.0"), b-lastBypass))
					lastBypass = b
				}
				mu.Unlock()
			}
		}
	}()

	const rate, seconds = 200, 70
	const calls = rate * seconds
	// SIPp's own -timeout is not trusted to end a stuck run: the
	// processes are killed at the context's deadline too.
	sippCtx, sippCancel := context.WithTimeout(context.Background(), (seconds+50)*time.Second)
	defer sippCancel()
	uas := exec.CommandContext(sippCtx, "sipp", "-sf", mustAbs(t, "../../bench/sipp/uas.xml"), "-i", acmeUASIP, "-p", strconv.Itoa(uasPort),
		"-m", strconv.Itoa(calls), "-trace_logs", "-trace_err", "-nostdin", "-timeout", strconv.Itoa(seconds+40)+"s")
	uas.Dir = work
	var uasOut bytes.Buffer
	uas.Stdout, uas.Stderr = &uasOut, &uasOut
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uas.Process.Kill(); _ = uas.Wait() })
	waitUDP(t, strconv.Itoa(uasPort))
	before := l.scrape(t)
	uac := exec.CommandContext(sippCtx, "sipp", l.sipAddr, "-sf", mustAbs(t, "../../bench/sipp/uac_invite_only.xml"),
		"-inf", mustAbs(t, "../../bench/sipp/numbers.csv"), "-i", acmeUACIP, "-p", strconv.Itoa(freePortOn(t, "udp", acmeUACIP)),
		"-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate), "-nostdin", "-timeout", strconv.Itoa(seconds+30)+"s", "-timeout_error", "-trace_stat", "-fd", "5", "-trace_err")
	uac.Dir = work
	out, uacErr := uac.CombinedOutput()
	// The UAS waits for -m calls; calls lost on the way (UDP on a loaded
	// box) would keep it to its timeout: BYEs get 3 s to drain, then it
	// is stopped.
	time.Sleep(3 * time.Second)
	_ = uas.Process.Signal(syscall.SIGUSR1) // SIPp: stop cleanly, logs flushed
	uasDone := make(chan error, 1)
	go func() { uasDone <- uas.Wait() }()
	select {
	case <-uasDone:
	case <-time.After(5 * time.Second):
		_ = uas.Process.Kill()
		<-uasDone
	}
	close(stopWatch)
	<-watched
	elapsed := time.Since(start)
	after := l.scrape(t)

	// The UAC's outcome: a 438 from Kamailio is a call whose PASSporT did
	// not verify with the certificate of its x5u: none may occur. A call
	// may be lost to UDP on a shared two-core box: counted, reported,
	// bounded (1 %); the appliance's own counters must show every INVITE
	// it saw signed.
	errLogs, _ := filepath.Glob(filepath.Join(work, "uac_invite_only_*_errors.log"))
	var uacErrs []byte
	if len(errLogs) > 0 {
		uacErrs, _ = os.ReadFile(errLogs[0])
	}
	unsigned := sumPrefix(after, "shakenline_calls_unsigned_total") - sumPrefix(before, "shakenline_calls_unsigned_total")
	bypassed := sumPrefix(after, "shakenline_calls_bypassed_total") - sumPrefix(before, "shakenline_calls_bypassed_total")
	if unsigned != 0 || bypassed != 0 {
		var reasons []string
		for k, v := range after {
			if strings.HasPrefix(k, "shakenline_calls_bypassed_total") || strings.HasPrefix(k, "shakenline_calls_unsigned_total") {
				reasons = append(reasons, fmt.Sprintf("%s %v", k, v-before[k]))
			}
		}
		sort.Strings(reasons)
		mu.Lock()
		t.Fatalf("appliance: %v unsigned, %v bypassed calls: %v; bypasses seen at %v (switches in the serve log)", unsigned, bypassed, reasons, bypassAt)
	}
	if n := bytes.Count(uacErrs, []byte("SIP/2.0 438")); n > 0 {
		t.Fatalf("%d calls answered 438 by Kamailio (PASSporT not verified with its x5u's certificate):\n%s", n, lastLines(uacErrs, 60))
	}
	successful, failed := sippTotals(t, work)
	if successful < calls*99/100 {
		t.Fatalf("SIPp UAC (%v): %d of %d calls completed, %d failed\n%s\nUAC errors:\n%s\nKamailio:\n%s",
			uacErr, successful, calls, failed, lastLines(out, 40), lastLines(uacErrs, 40), lastLines([]byte(kam.Log()), 20))
	}

	// Every INVITE that reached the UAS passed Kamailio's verification and
	// was signed; the x5u in their PASSporTs is the set the appliance
	// switched through.
	logs, _ := filepath.Glob(filepath.Join(work, "uas_*_logs.log"))
	if len(logs) != 1 {
		t.Fatalf("UAS logs: %v", logs)
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	idRE := regexp.MustCompile(`Identity: ?([A-Za-z0-9_-]+)\.`)
	perX5U := map[string]int{}
	signed, lines := 0, 0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "INVITE ") {
			continue
		}
		lines++
		m := idRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		signed++
		hdr, err := base64.RawURLEncoding.DecodeString(m[1])
		var h struct{ X5U string }
		if err != nil || json.Unmarshal(hdr, &h) != nil {
			t.Fatalf("PASSporT header: %q", m[1])
		}
		perX5U[h.X5U]++
	}
	if signed != lines || lines < successful {
		t.Fatalf("UAS saw %d INVITEs, %d signed; %d calls completed", lines, signed, successful)
	}
	seen := sumPrefix(after, "shakenline_calls_seen_total{") - sumPrefix(before, "shakenline_calls_seen_total{")
	signedByApp := sumPrefix(after, "shakenline_calls_signed_total{") - sumPrefix(before, "shakenline_calls_signed_total{")
	if signedByApp != seen {
		t.Fatalf("appliance: %v INVITEs seen, %v signed", seen, signedByApp)
	}
	okRenewals := after[`shakenline_acme_renewals_total{result="ok"}`]
	errRenewals := sumPrefix(after, `shakenline_acme_renewals_total{result="error"`)
	mu.Lock()
	defer mu.Unlock()
	var x5us []string
	for u := range perX5U {
		x5us = append(x5us, u)
	}
	sort.Strings(x5us)
	if len(x5us) < 3 {
		t.Fatalf("calls carried %d x5u over %v with %v certificates: %v", len(x5us), elapsed, lifetime, perX5U)
	}
	// Each x5u served its own certificate: another serial and key, chained
	// to the lab root, TNAuthList {1234}.
	roots := x509.NewCertPool()
	rb, _ := os.ReadFile(filepath.Join(l.labDir, "root.pem"))
	roots.AppendCertsFromPEM(rb)
	keys := map[string]bool{}
	for _, u := range x5us {
		body, ok := served[u]
		if !ok {
			t.Fatalf("x5u %s carried by calls was never announced by the appliance", u)
		}
		chain, err := verify.ParseChain(body)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: chain[0].NotBefore.Add(time.Second),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("%s does not chain to the lab root: %v", u, err)
		}
		pk, _ := x509.MarshalPKIXPublicKey(chain[0].PublicKey)
		if keys[string(pk)] {
			t.Fatalf("%s: the key of an earlier certificate", u)
		}
		keys[string(pk)] = true
		if u != x5us[len(x5us)-1] && !notAfter[chain[0].NotAfter.Unix()] {
			// (the last one may have been switched to after the last scrape)
			t.Fatalf("shakenline_cert_not_after_seconds never showed %s's NotAfter %v (seen: %v)", u, chain[0].NotAfter, notAfter)
		}
	}
	if unready != 0 {
		t.Fatalf("/readyz was unready %d times during the run", unready)
	}
	var took []string
	for _, m := range tookRE.FindAllStringSubmatch(l.app.logs.String(), -1) {
		took = append(took, m[1])
	}
	t.Logf("%d calls at %d/s in %v: %d completed, %d failed (lost in transit); the appliance saw %v INVITEs and signed %v, "+
		"%v unsigned, %v bypassed; the UAS got %d INVITEs, all signed and verified by Kamailio against the lab root, 0 answered 438",
		calls, rate, elapsed.Round(time.Second), successful, failed, seen, signedByApp, unsigned, bypassed, lines)
	t.Logf("renewals ok %v, failed %v; x5u carried by the calls (calls each): %v", okRenewals, errRenewals, perX5U)
	t.Logf("renewal time end to end (token, order, challenge, key in the token, CSR, finalize, validate, publish and fetch back): %v", took)
}

// TestACMEFailuresKeepCertificate breaks each stage a renewal depends on,
// with real processes (the STI-PA and the STI-CA of lab-sti in two, so
// either can be stopped): STI-PA down, STI-CA down, token refused,
// challenge failed, a certificate with a wrong TNAuthList, a certificate
// from an untrusted CA. Each failure leaves the certificate in use
// (no switch, /readyz ready), is counted under its stage and reported in
// the log; once the fault is gone the next attempt switches.
func TestACMEFailuresKeepCertificate(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("acmefail", nil)
	l := startLabSTI(t, true, time.Minute)
	// Renewal due 3 s after each issuance: attempts follow each other.
	l.startAppliance(t, tk.URI(), fmt.Sprintf("%s:%d", acmeUASIP, freePortOn(t, "udp", acmeUASIP)),
		"  renew_before: 57s\n")
	switches := func() int { return strings.Count(l.app.logs.String(), `msg="certificate in use"`) }
	waitMetric := func(name string, above float64, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for l.scrape(t)[name] <= above {
			if time.Now().After(deadline) {
				t.Fatalf("%s stayed at %v for %v\n%s", name, above, d, lastLines([]byte(l.app.logs.String()), 20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	okName := `shakenline_acme_renewals_total{result="ok"}`
	waitMetric(okName, 1, 15*time.Second) // a renewal after the first certificate: the loop runs
	for _, tc := range []struct {
		name, stage string
		set, clear  func()
	}{
		{"STI-PA down", "token", func() { l.pa.stop() }, func() { l.pa = startProc(t, l.paArgs...); l.pa.wait(t, "STI-PA token API", 10*time.Second) }},
		{"STI-CA down", "order", func() { l.ca.stop() }, func() { l.ca = startProc(t, l.caArgs...); l.ca.wait(t, "STI-CA ACME directory", 10*time.Second) }},
		{"token refused", "token", func() { l.fault(t, "pa", "refuse") }, func() { l.fault(t, "pa", "ok") }},
		{"challenge failed", "challenge", func() { l.fault(t, "ca", "challenge-fail") }, func() { l.fault(t, "ca", "ok") }},
		{"wrong TNAuthList", "validate", func() { l.fault(t, "ca", "wrong-tnauth") }, func() { l.fault(t, "ca", "ok") }},
		{"untrusted chain", "validate", func() { l.fault(t, "ca", "untrusted") }, func() { l.fault(t, "ca", "ok") }},
	} {
		errName := `shakenline_acme_renewals_total{result="error",stage="` + tc.stage + `"}`
		before := l.scrape(t)
		tc.set()
		n := switches()
		// Two failed attempts in a row, the certificate in use untouched.
		waitMetric(errName, before[errName]+1, 30*time.Second)
		if got := switches(); got != n {
			t.Fatalf("%s: the certificate in use changed during the fault", tc.name)
		}
		if code := l.readyz(); code != 200 {
			t.Fatalf("%s: /readyz %d while the certificate in use is valid", tc.name, code)
		}
		if page := l.statusPage(t); !strings.Contains(page, "<dt>last error</dt><dd>stage "+tc.stage+": ") ||
			!strings.Contains(page, "certificate renewal: ") {
			t.Fatalf("%s: /status does not show the failing renewal at stage %s", tc.name, tc.stage)
		}
		if !strings.Contains(l.app.logs.String(), `certificate renewal failed; signing continues with the current certificate" component=acme stage=`+tc.stage) {
			t.Fatalf("%s: no error log line for stage %s", tc.name, tc.stage)
		}
		ok := l.scrape(t)[okName]
		tc.clear()
		waitMetric(okName, ok, 30*time.Second)
		// The switch follows the successful attempt (logged just after).
		for deadline := time.Now().Add(5 * time.Second); switches() <= n; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no switch after the fault cleared", tc.name)
			}
		}
		after := l.scrape(t)
		t.Logf("%s: %v failed attempt(s) counted under stage %s, certificate in use kept, renewed once cleared",
			tc.name, after[errName]-before[errName], tc.stage)
	}
}

// serve --check with acme: a fresh configuration is ok (no certificate
// yet) and nothing is written; a chain that cannot follow a key rotation
// (an HSM link and a software link) is refused, naming the software link.
func TestServeCheckACME(t *testing.T) {
	dir := t.TempDir()
	pki := labPKI(t)
	state := filepath.Join(dir, "state")
	base := fmt.Sprintf(`sip: 127.0.0.1:5060
next_hop: 127.0.0.1:5070
lab: true
trust: {lab: %s}
acme:
  directory: http://127.0.0.1:9/acme/directory
  spc: "1234"
  spc_token: {file: %s}
  publish: {url: "http://127.0.0.1:9/x5u/", dir: %s}
  state_dir: %s
`, filepath.Join(pki, "root.pem"), filepath.Join(dir, "token"), filepath.Join(dir, "x5u"), state)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	soft := write("soft.yaml", "key: "+filepath.Join(pki, "sp.key")+"\n"+base)
	code, out, errs := runCmd("serve", "--check", "--config", soft)
	if code != 0 || !strings.Contains(out, "no certificate yet") {
		t.Fatalf("--check of a fresh acme config: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("--check created the state directory: %v", err)
	}
	mixed := write("mixed.yaml", fmt.Sprintf(`signers:
  - {name: hsm-a, pkcs11: "pkcs11:token=a;object=k?module-path=/nonexistent.so&pin-source=file:/nonexistent"}
  - {name: fallback, key: %s}
`, filepath.Join(pki, "sp.key"))+base)
	code, _, errs = runCmd("serve", "--check", "--config", mixed)
	if code != 2 || !strings.Contains(errs, `signer "fallback" (software) would keep the old key`) {
		t.Fatalf("mixed chain: exit %d %q", code, errs)
	}
}
