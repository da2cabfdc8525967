package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/kamailio"
	"github.com/shakenline/shakenline/bench/loadgen"
	"github.com/shakenline/shakenline/bench/sipp"
	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/verify"
)

// Interoperability with an independent STIR/SHAKEN implementation: the
// Debian packages of Kamailio and its secsipid module (libsecsipid). The
// appliance's PASSporTs must verify in secsipid_check_identity, and
// PASSporTs made by secsipid_add_identity must pass the appliance's full
// STI-VS path (x5u over http, chain to the lab root, TNAuthList).

// needKamailio skips (fails under CI=true) without kamailio and secsipid.so.
func needKamailio(t *testing.T) {
	t.Helper()
	prereq.Tool(t, "kamailio")
	prereq.Need(t, kamailio.Available())
}

// startKamailio runs Kamailio until the test ends; Listen defaults to a
// free loopback port.
func startKamailio(t *testing.T, o kamailio.Options) *kamailio.Process {
	t.Helper()
	if !o.Listen.IsValid() {
		o.Listen = netip.MustParseAddrPort(freeUDP(t))
	}
	p, err := kamailio.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Logf("kamailio log tail:\n%s", p.Log())
		}
	})
	return p
}

// writePublicKeyPEM writes the SP certificate's public key as a PKIX
// "PUBLIC KEY" PEM file, the form secsipid_check_identity reads.
func writePublicKeyPEM(t *testing.T, pki string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(leafKey(t, pki))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sp.pub")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sec1Key converts the lab PKI's PKCS#8 sp.key into a SEC 1
// "EC PRIVATE KEY" PEM with openssl, the form operators usually hand to
// secsipid (`openssl ecparam -genkey`).
func sec1Key(t *testing.T, pki string) string {
	t.Helper()
	prereq.Tools(t, "openssl")
	out := filepath.Join(t.TempDir(), "sp-sec1.key")
	if b, err := exec.Command("openssl", "ec", "-in", filepath.Join(pki, "sp.key"), "-out", out).CombinedOutput(); err != nil {
		t.Fatalf("openssl ec: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("BEGIN EC PRIVATE KEY")) {
		t.Fatalf("openssl ec did not write a SEC 1 key")
	}
	return out
}

// sendInvite sends one hand-written INVITE (with the extra header lines,
// each ending in CRLF) to target and returns the status line of the first
// final response (or fails after 5 s).
func sendInvite(t *testing.T, target, callID, extra string) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg := "INVITE sip:+13105550143@" + target + ";user=phone SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:+12025550101@127.0.0.1;user=phone>;tag=" + callID + "\r\n" +
		"To: <sip:+13105550143@127.0.0.1;user=phone>\r\n" +
		"Call-ID: " + callID + "@interop\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:+12025550101@" + local + ">\r\n" +
		"P-Asserted-Identity: <tel:+12025550101>\r\n" + extra +
		"Content-Length: 0\r\n\r\n"
	dst, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo([]byte(msg), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(5 * time.Second)
	_ = c.SetReadDeadline(deadline)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no final response to INVITE %s: %v", callID, err)
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		var code int
		if _, err := fmt.Sscanf(line, "SIP/2.0 %d", &code); err == nil && code >= 200 {
			return line
		}
	}
}

// TestInteropKamailioVerifiesAppliance: loadgen -> appliance (proxy, lab
// PKI key) -> Kamailio (secsipid_check_identity with the SP public key) ->
// sink. Kamailio forwards an INVITE only when its Identity verifies and
// answers 438 otherwise; an appliance signing with another key is the
// negative control that shows Kamailio really checks.
func TestInteropKamailioVerifiesAppliance(t *testing.T) {
	needKamailio(t)
	pki := labPKI(t)
	pub := writePublicKeyPEM(t, pki)
	for _, tc := range []struct {
		name   string
		signer string // lab PKI whose sp.key the appliance signs with
		passed bool
	}{
		{"same key", pki, true},
		{"other key", labPKI(t), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink, err := loadgen.NewSink(loadgen.SinkConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"),
				VerifyKey: leafKey(t, pki), VerifyEvery: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sink.Close() })
			kam := startKamailio(t, kamailio.Options{NextHop: sink.Addr(), VerifyKeyPath: pub})
			sipAddr := freeUDP(t)
			startServe(t, "--sip", sipAddr, "--next-hop", kam.Addr().String(),
				"--key", filepath.Join(tc.signer, "sp.key"), "--cert", filepath.Join(tc.signer, "sp.pem"),
				"--x5u", "https://cert.example.org/sp.pem", "--attest", "A")

			const calls = 20
			drain := 3 * time.Second // ends early once all calls are in
			if !tc.passed {
				drain = time.Second // nothing arrives: the drain runs out
			}
			g, err := loadgen.NewGenerator(loadgen.Config{Target: netip.MustParseAddrPort(sipAddr), Sink: sink,
				Sockets: 2, FullCall: tc.passed, Drain: drain})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = g.Close() })
			res, err := g.Run(context.Background(), loadgen.Load{Rate: 200, Count: calls, Duration: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
			if tc.passed {
				if res.Sent != calls || res.Received != calls || res.WithIdentity != calls || res.Answered != calls ||
					res.Failed != 0 || res.ByeOK != calls {
					t.Fatalf("want all %d calls verified by Kamailio and answered: %v", calls, res)
				}
				// The sink re-checks what Kamailio let through.
				deadline := time.Now().Add(3 * time.Second)
				for time.Now().Before(deadline) && sink.Stats().VerifyOK+sink.Stats().VerifyFailed < calls {
					time.Sleep(20 * time.Millisecond)
				}
				if st := sink.Stats(); st.VerifyOK != calls || st.VerifyFailed != 0 {
					t.Fatalf("sink verified %d ok, %d failed, want %d ok", st.VerifyOK, st.VerifyFailed, calls)
				}
				if line := sendInvite(t, sipAddr, "interop-ok", ""); !strings.HasPrefix(line, "SIP/2.0 200") {
					t.Fatalf("single INVITE: %q, want 200", line)
				}
				return
			}
			if res.Sent != calls || res.Received != 0 || res.Failed != calls || res.Answered != 0 {
				t.Fatalf("want all %d calls refused by Kamailio: %v", calls, res)
			}
			if line := sendInvite(t, sipAddr, "interop-bad", ""); !strings.HasPrefix(line, "SIP/2.0 438") {
				t.Fatalf("single INVITE: %q, want 438 Invalid Identity Header", line)
			}
		})
	}
}

// capture records the INVITEs that reach it (no answers).
type capture struct {
	conn *net.UDPConn
	mu   sync.Mutex
	msgs [][]byte
	done chan struct{}
}

func newCapture(t *testing.T) *capture {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cp := &capture{conn: c, done: make(chan struct{})}
	go func() {
		defer close(cp.done)
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if bytes.HasPrefix(buf[:n], []byte("INVITE ")) {
				cp.mu.Lock()
				cp.msgs = append(cp.msgs, bytes.Clone(buf[:n]))
				cp.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { _ = c.Close(); <-cp.done })
	return cp
}

func (c *capture) addr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// wait returns the INVITEs once n arrived, or what arrived after 5 s.
func (c *capture) wait(n int) [][]byte {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.msgs)
		c.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.msgs...)
}

// plusDigits returns the digits after "+" in the first URI of a header
// value (From, To, P-Asserted-Identity as the generator writes them).
func plusDigits(v string) string {
	i := strings.IndexByte(v, '+')
	if i < 0 {
		return ""
	}
	j := i + 1
	for j < len(v) && v[j] >= '0' && v[j] <= '9' {
		j++
	}
	return v[i+1 : j]
}

// TestInteropApplianceVerifiesKamailio: loadgen -> Kamailio
// (secsipid_add_identity with the lab PKI's key, x5u on a loopback http
// server) -> capture. Every Identity header that arrives passes the
// appliance's STI-VS path, through `appliance verify` and verify.Verifier:
// x5u fetched over http, chain to the lab root, TNAuthList, signature,
// orig/dest against the INVITE's numbers. A Verifier trusting another root
// rejects them, so the chain check is real.
func TestInteropApplianceVerifiesKamailio(t *testing.T) {
	needKamailio(t)
	pki := labPKI(t)
	chainPEM, err := os.ReadFile(filepath.Join(pki, "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int64
	x5uSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sp.pem" {
			http.NotFound(w, r)
			return
		}
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(chainPEM)
	}))
	t.Cleanup(x5uSrv.Close)
	x5u := x5uSrv.URL + "/sp.pem"

	for _, kf := range []struct{ name, path string }{
		{"PKCS8 key", filepath.Join(pki, "sp.key")},
		{"SEC1 key", sec1Key(t, pki)},
	} {
		t.Run(kf.name, func(t *testing.T) {
			cp := newCapture(t)
			kam := startKamailio(t, kamailio.Options{NextHop: cp.addr(), Sign: true, KeyPath: kf.path, X5U: x5u, Attest: "B"})
			const calls = 10
			g, err := loadgen.NewGenerator(loadgen.Config{Target: kam.Addr(), Sockets: 2, Drain: 200 * time.Millisecond,
				FromNumbers: []string{"+12025550101", "+14155550123", "+16175550199"},
				ToNumbers:   []string{"+13105550143", "+19725550177"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = g.Close() })
			if _, err := g.Run(context.Background(), loadgen.Load{Rate: 100, Count: calls, Duration: 5 * time.Second}); err != nil {
				t.Fatal(err)
			}
			invites := cp.wait(calls)
			if len(invites) != calls {
				t.Fatalf("capture saw %d INVITEs, want %d", len(invites), calls)
			}
			checkKamailioInvites(t, pki, x5u, invites, &fetches)
		})
	}
}

func checkKamailioInvites(t *testing.T, pki, x5u string, invites [][]byte, fetches *atomic.Int64) {
	t.Helper()
	rootPEM, err := os.ReadFile(filepath.Join(pki, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("no root certificate")
	}
	v, err := verify.New(verify.Config{Trust: map[string]*x509.CertPool{"lab": pool}, AllowHTTP: true, AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	otherRoot, err := os.ReadFile(filepath.Join(labPKI(t), "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	otherPool := x509.NewCertPool()
	otherPool.AppendCertsFromPEM(otherRoot)
	vOther, err := verify.New(verify.Config{Trust: map[string]*x509.CertPool{"other": otherPool}, AllowHTTP: true, AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vOther.Close() })

	pub := leafKey(t, pki)
	var verifierFetches int64
	for i, inv := range invites {
		ids := sipp.HeaderValues(inv, "Identity")
		if len(ids) != 1 {
			t.Fatalf("INVITE %d has %d Identity headers:\n%s", i, len(ids), inv)
		}
		id, err := passport.ParseIdentity(ids[0])
		if err != nil {
			t.Fatalf("INVITE %d: %v: %s", i, err, ids[0])
		}
		if err := passport.VerifySignature(pub, id); err != nil {
			t.Fatalf("INVITE %d: signature: %v", i, err)
		}
		pai, to := sipp.HeaderValues(inv, "P-Asserted-Identity"), sipp.HeaderValues(inv, "To")
		if len(pai) != 1 || len(to) != 1 {
			t.Fatalf("INVITE %d: PAI %q To %q", i, pai, to)
		}
		orig, dest := plusDigits(pai[0]), plusDigits(to[0])
		p := id.Payload
		if p.Orig.TN != orig || len(p.Dest.TN) != 1 || p.Dest.TN[0] != dest || p.Attest != "B" ||
			id.Header.X5U != x5u || id.Info != x5u || id.Header.PPT != "shaken" || id.Alg != "ES256" {
			t.Fatalf("INVITE %d: PASSporT %+v header %+v info %q; want orig %s dest %s attest B x5u %s",
				i, p, id.Header, id.Info, orig, dest, x5u)
		}
		if d := time.Since(time.Unix(p.IAT, 0)); d < -2*time.Second || d > 30*time.Second {
			t.Fatalf("INVITE %d: iat %d is %v from now", i, p.IAT, d)
		}

		// `appliance verify`, in process, with the whole INVITE on stdin.
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"verify", "--trust", "lab=" + filepath.Join(pki, "root.pem"), "--lab"},
			env{stdin: bytes.NewReader(inv), stdout: &stdout, stderr: &stderr, now: time.Now})
		var out verifyOutput
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || code != 0 || out.Verstat != verify.Passed {
			t.Fatalf("INVITE %d: appliance verify exit %d: %s%s", i, code, stdout.String(), stderr.String())
		}
		if !strings.Contains(stdout.String(), "TN-Validation-Passed") || out.Attest != "B" || out.OrigID != p.OrigID ||
			out.TrustStore != "lab" || out.X5U != x5u {
			t.Fatalf("INVITE %d: appliance verify printed %s", i, stdout.String())
		}

		// verify.Verifier directly, numbers as the INVITE carries them.
		before := fetches.Load()
		in := verify.Input{Identity: ids, OrigTN: orig, DestTNs: []string{dest}, Time: time.Now()}
		r := v.Verify(context.Background(), in)
		verifierFetches += fetches.Load() - before
		if r.Verstat != verify.Passed || r.Code != 0 || r.Attest != "B" || r.OrigID != p.OrigID || r.TrustStore != "lab" {
			t.Fatalf("INVITE %d: verifier: %+v", i, r)
		}
		// Negative controls: another trust anchor, another caller.
		if r := vOther.Verify(context.Background(), in); r.Verstat != verify.Failed || r.Code != verify.CodeUnsupported {
			t.Fatalf("INVITE %d: verifier trusting another root: %+v, want 437", i, r)
		}
		bad := in
		bad.OrigTN = "12025559999"
		if r := v.Verify(context.Background(), bad); r.Verstat != verify.Failed || r.Code != verify.CodeInvalid {
			t.Fatalf("INVITE %d: verifier with another caller: %+v, want 438", i, r)
		}
	}
	// One fetch, then the Cache-Control lifetime holds (the negative
	// controls above may fetch for vOther).
	if verifierFetches != 1 {
		t.Errorf("verifier fetched the x5u %d times over %d PASSporTs, want 1 (cached)", verifierFetches, len(invites))
	}
}

// apiSign posts an ATIS-1000082 signing request to the appliance's API
// (retrying while the listener comes up) and returns the Identity value.
func apiSign(t *testing.T, apiAddr, token, body string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, err := http.NewRequest("POST", "http://"+apiAddr+"/stir/v1/signing", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("signing API: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var out struct {
			R struct {
				Identity string `json:"identity"`
			} `json:"signingResponse"`
		}
		var raw bytes.Buffer
		_, _ = raw.ReadFrom(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw.Bytes(), &out) != nil || out.R.Identity == "" {
			t.Fatalf("signing API: %d %s", resp.StatusCode, raw.String())
		}
		return out.R.Identity
	}
}

// TestInteropKamailioVerifiesAPISigned: a PASSporT signed through the
// appliance's HTTP API (POST /stir/v1/signing) and placed in an INVITE
// verifies in Kamailio (200 from the sink behind it); the same header with
// one signature character changed gets 438, so the check is real.
func TestInteropKamailioVerifiesAPISigned(t *testing.T) {
	needKamailio(t)
	pki := labPKI(t)
	const token = "interop-test-token-0123456789abcdef0123456789"
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	apiAddr := freeTCP(t)
	startServe(t, "--sip", freeUDP(t), "--next-hop", freeUDP(t), "--key", filepath.Join(pki, "sp.key"),
		"--cert", filepath.Join(pki, "sp.pem"), "--x5u", "https://cert.example.org/sp.pem",
		"--api", apiAddr, "--api-token-file", tokenFile)
	sink, err := loadgen.NewSink(loadgen.SinkConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	kam := startKamailio(t, kamailio.Options{NextHop: sink.Addr(), VerifyKeyPath: writePublicKeyPEM(t, pki)})

	body := fmt.Sprintf(`{"signingRequest":{"attest":"A","dest":{"tn":["13105550143"]},"iat":%d,`+
		`"orig":{"tn":"12025550101"},"origid":"123e4567-e89b-42d3-a456-426614174000"}}`, time.Now().Unix())
	identity := apiSign(t, apiAddr, token, body)
	id, err := passport.ParseIdentity(identity)
	if err != nil {
		t.Fatal(err)
	}
	if p := id.Payload; p.Attest != "A" || p.Orig.TN != "12025550101" || len(p.Dest.TN) != 1 || p.Dest.TN[0] != "13105550143" {
		t.Fatalf("API-signed PASSporT claims %+v", p)
	}
	if line := sendInvite(t, kam.Addr().String(), "api-signed", "Identity: "+identity+"\r\n"); !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("INVITE with the API-signed Identity: %q, want 200 through Kamailio", line)
	}

	// One signature character changed: Kamailio must refuse.
	tok, params, _ := strings.Cut(identity, ";")
	i := strings.LastIndexByte(tok, '.') + 1
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	tampered := tok[:i] + string(c) + tok[i+1:] + ";" + params
	if line := sendInvite(t, kam.Addr().String(), "api-tampered", "Identity: "+tampered+"\r\n"); !strings.HasPrefix(line, "SIP/2.0 438") {
		t.Fatalf("INVITE with a tampered Identity: %q, want 438", line)
	}
	if st := sink.Stats(); st.Invites != 1 || st.WithIdentity != 1 {
		t.Fatalf("sink saw %d INVITEs (%d with Identity), want only the good one", st.Invites, st.WithIdentity)
	}
}
