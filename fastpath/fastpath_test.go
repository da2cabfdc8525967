package fastpath

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/es256"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/sip"
)

const testX5U = "https://cert.example.org/sp.pem"

// sipDate is the RFC 3261 section 20.17 Date format (always GMT).
const sipDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// invite returns a SIPp-style initial INVITE from a client at from.
func invite(from netip.AddrPort, callID string, extra string) []byte {
	body := "v=0\r\no=user1 53655765 2353687637 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	return []byte("INVITE sip:+12155550123@198.18.2.2:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + from.String() + ";branch=z9hG4bK-" + callID + ";rport\r\n" +
		"From: \"Alice\" <sip:+12155550100@198.18.1.2>;tag=abc" + callID + "\r\n" +
		"To: <sip:+12155550123@198.18.2.2;user=phone>\r\n" +
		"Call-ID: " + callID + "@198.18.1.2\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:alice@" + from.String() + ">\r\n" +
		"P-Asserted-Identity: <tel:+1-215-555-0100>\r\n" +
		"Max-Forwards: 70\r\n" + extra +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body)
}

type testEnv struct {
	srv    *Server
	client *net.UDPConn
	next   *net.UDPConn
	key    *ecdsa.PrivateKey
	addr   netip.AddrPort
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func listenUDP(t testing.TB) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func freePort(t testing.TB) netip.AddrPort {
	c := listenUDP(t)
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return a
}

// start runs a Server on loopback with a real software key behind a Pool.
func start(t *testing.T, mode Mode, mut func(*Config, *testEnv)) *testEnv {
	t.Helper()
	te := &testEnv{client: listenUDP(t), next: listenUDP(t), key: newKey(t)}
	soft, err := hsm.NewSoftware("soft", te.key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b, err := passport.NewBuilder(testX5U)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{
		{Name: "retail", Attest: "A", Numbers: []string{"+1215555*"}},
	}}, "C")
	if err != nil {
		t.Fatal(err)
	}
	num, err := e164.New("US")
	if err != nil {
		t.Fatal(err)
	}
	te.addr = freePort(t)
	cfg := Config{
		Mode: mode, Listen: te.addr, NextHop: te.next.LocalAddr().(*net.UDPAddr).AddrPort(), Loops: 2,
		Builder: b, Signer: hsm.NewPool(ctx, soft, 2, 1024), Policy: policy.NewHolder(tbl), Numbers: num,
		MaxInFlight: 64, Logger: testLogger(),
	}
	if mut != nil {
		mut(&cfg, te)
	}
	te.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- te.srv.Run(ctx) }()
	select {
	case <-te.srv.Booted():
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start in 5s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("server did not stop in 5s")
		}
	})
	return te
}

func (te *testEnv) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := te.client.WriteToUDPAddrPort(b, te.addr); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("nothing received: %v", err)
	}
	return buf[:n], from
}

func noRecv(t *testing.T, c *net.UDPConn, d time.Duration) {
	t.Helper()
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(d))
	if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("unexpected datagram:\n%s", buf[:n])
	}
}

func parse(t *testing.T, b []byte) *sip.Message {
	t.Helper()
	m := new(sip.Message)
	if err := m.Parse(b); err != nil {
		t.Fatalf("forwarded message does not parse: %v\n%s", err, b)
	}
	return m
}

// header returns the values of every header line named name.
func header(b []byte, name string) []string {
	var out []string
	head, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	for _, l := range strings.Split(string(head), "\r\n")[1:] {
		n, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func TestProxySignsInitialInvite(t *testing.T) {
	te := start(t, Proxy, nil)
	clientAddr := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	inv := invite(clientAddr, "call1", "Date: "+time.Now().UTC().Format(sipDate)+"\r\n")
	te.send(t, inv)
	got, from := recv(t, te.next)
	if from.Port() != te.addr.Port() {
		t.Errorf("forwarded from %v, want the SIP socket %v", from, te.addr)
	}
	m := parse(t, got)
	vias := header(got, "Via")
	if len(vias) != 2 || !strings.HasPrefix(vias[0], "SIP/2.0/UDP "+te.addr.String()+";branch=z9hG4bKsl") {
		t.Fatalf("Via not added on top: %q", vias)
	}
	if !strings.Contains(vias[1], "rport="+fmt.Sprint(clientAddr.Port())) {
		t.Errorf("rport not filled on the client's Via: %q", vias[1])
	}
	if mf := header(got, "Max-Forwards"); len(mf) != 1 || mf[0] != "69" {
		t.Errorf("Max-Forwards = %q, want 69", mf)
	}
	if m.NumIdentity != 1 {
		t.Fatalf("no Identity header:\n%s", got)
	}
	id, err := passport.ParseIdentity(string(m.Identity[0].In(got)))
	if err != nil {
		t.Fatal(err)
	}
	if err := passport.VerifySignature(&te.key.PublicKey, id); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	p := id.Payload
	if p.Attest != "A" || p.Orig.TN != "12155550100" || len(p.Dest.TN) != 1 || p.Dest.TN[0] != "12155550123" {
		t.Errorf("claims = %+v", p)
	}
	if id.Info != testX5U || id.Header.X5U != testX5U {
		t.Errorf("info/x5u = %q/%q", id.Info, id.Header.X5U)
	}
	if d := time.Since(time.Unix(p.IAT, 0)); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("iat %d not now", p.IAT)
	}
	if body := got[m.Body.Start:]; !bytes.Equal(body, inv[bytes.Index(inv, []byte("\r\n\r\n"))+4:]) {
		t.Error("body changed")
	}

	// The 200 OK from the next hop goes back to the client without our Via.
	resp := []byte("SIP/2.0 200 OK\r\nVia: " + vias[0] + "\r\nVia: " + vias[1] + "\r\n" +
		"From: <sip:+12155550100@198.18.1.2>;tag=abccall1\r\nTo: <sip:+12155550123@198.18.2.2>;tag=srv\r\n" +
		"Call-ID: call1@198.18.1.2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	if _, err := te.next.WriteToUDPAddrPort(resp, te.addr); err != nil {
		t.Fatal(err)
	}
	back, _ := recv(t, te.client)
	if v := header(back, "Via"); len(v) != 1 || v[0] != vias[1] {
		t.Errorf("response Vias = %q, want only %q", v, vias[1])
	}
}

func TestUnsignedCases(t *testing.T) {
	te := start(t, Proxy, nil)
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	cases := map[string][]byte{
		"anonymous": bytes.Replace(bytes.Replace(invite(ca, "anon", ""),
			[]byte("<sip:+12155550100@198.18.1.2>"), []byte("<sip:anonymous@anonymous.invalid>"), 1),
			[]byte("P-Asserted-Identity: <tel:+1-215-555-0100>\r\n"), nil, 1),
		"reinvite": bytes.Replace(invite(ca, "re", ""), []byte("user=phone>"), []byte("user=phone>;tag=xyz"), 1),
		"options": []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP " + ca.String() + ";branch=z9hG4bKo1\r\n" +
			"From: <sip:ping@198.18.1.2>;tag=1\r\nTo: <sip:198.18.2.2>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"),
		"already-signed": invite(ca, "signed", "Identity: eyJ.eyJ.sig;info=<https://other.example/c.pem>;alg=ES256;ppt=shaken\r\n"),
	}
	for name, msg := range cases {
		te.send(t, msg)
		got, _ := recv(t, te.next)
		ids := header(got, "Identity")
		if name == "already-signed" {
			if len(ids) != 1 || !strings.Contains(ids[0], "other.example") {
				t.Errorf("%s: Identity headers %q, want the original only", name, ids)
			}
		} else if len(ids) != 0 {
			t.Errorf("%s: signed, want forwarded unsigned", name)
		}
		if len(header(got, "Via")) != 2 {
			t.Errorf("%s: not proxied (Via)", name)
		}
	}
}

func TestBypassWhenSignerMissesBudget(t *testing.T) {
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.Budget = time.Nanosecond })
	te.send(t, invite(te.client.LocalAddr().(*net.UDPAddr).AddrPort(), "late", ""))
	got, _ := recv(t, te.next)
	if ids := header(got, "Identity"); len(ids) != 0 {
		t.Fatal("signed despite a missed budget")
	}
	if b := header(got, "P-Identity-Bypass"); len(b) != 1 || b[0] != "timeout" {
		t.Fatalf("P-Identity-Bypass = %q", b)
	}
}

func TestBypassWhenQueueFull(t *testing.T) {
	te := start(t, Proxy, func(c *Config, _ *testEnv) {
		c.Signer = hsm.NewPool(context.Background(), nil, 0, 0) // no workers, no queue: always full
	})
	te.send(t, invite(te.client.LocalAddr().(*net.UDPAddr).AddrPort(), "full", ""))
	got, _ := recv(t, te.next)
	if b := header(got, "P-Identity-Bypass"); len(b) != 1 || b[0] != "overload" {
		t.Fatalf("P-Identity-Bypass = %q\n%s", b, got)
	}
}

func TestMaxForwardsZero(t *testing.T) {
	te := start(t, Proxy, nil)
	te.send(t, bytes.Replace(invite(te.client.LocalAddr().(*net.UDPAddr).AddrPort(), "mf", ""),
		[]byte("Max-Forwards: 70"), []byte("Max-Forwards: 0"), 1))
	got, _ := recv(t, te.client)
	if !bytes.HasPrefix(got, []byte("SIP/2.0 483 Too Many Hops\r\n")) {
		t.Fatalf("want 483, got:\n%s", got)
	}
	noRecv(t, te.next, 200*time.Millisecond)
}

func TestMalformedForwardedUnsigned(t *testing.T) {
	te := start(t, Proxy, nil)
	bad := []byte("INVITE sip:x@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bKx\r\nCSeq: notanumber\r\n\r\n")
	te.send(t, bad)
	got, _ := recv(t, te.next)
	if !bytes.Equal(got, bad) {
		t.Fatalf("malformed request not forwarded as is:\n%s", got)
	}
	// The loop is still alive.
	te.send(t, invite(te.client.LocalAddr().(*net.UDPAddr).AddrPort(), "after", ""))
	if got, _ := recv(t, te.next); len(header(got, "Identity")) != 1 {
		t.Fatal("loop stopped signing after a malformed message")
	}
}

func TestRedirectMode(t *testing.T) {
	te := start(t, Redirect, nil)
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	te.send(t, invite(ca, "r1", ""))
	got, _ := recv(t, te.client)
	if !bytes.HasPrefix(got, []byte("SIP/2.0 302 Moved Temporarily\r\n")) {
		t.Fatalf("want 302:\n%s", got)
	}
	if c := header(got, "Contact"); len(c) != 1 || c[0] != "<sip:+12155550123@198.18.2.2:5060>" {
		t.Errorf("Contact = %q", c)
	}
	to := header(got, "To")
	if len(to) != 1 || !strings.Contains(to[0], ";tag=") {
		t.Errorf("To without tag: %q", to)
	}
	ids := header(got, "Identity")
	if len(ids) != 1 {
		t.Fatalf("302 without Identity:\n%s", got)
	}
	id, err := passport.ParseIdentity(ids[0])
	if err != nil || passport.VerifySignature(&te.key.PublicKey, id) != nil {
		t.Fatalf("Identity in 302 does not verify: %v", err)
	}
	// ACK for the 302 is absorbed; OPTIONS answered.
	te.send(t, []byte("ACK sip:+12155550123@198.18.2.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP "+ca.String()+";branch=z9hG4bK-r1\r\n"+
		"From: <sip:+12155550100@198.18.1.2>;tag=abcr1\r\nTo: <sip:+12155550123@198.18.2.2>;tag=x\r\nCall-ID: r1@198.18.1.2\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"))
	noRecv(t, te.client, 200*time.Millisecond)
	te.send(t, []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP "+ca.String()+";branch=z9hG4bKo\r\n"+
		"From: <sip:ping@198.18.1.2>;tag=1\r\nTo: <sip:198.18.2.2>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	if got, _ := recv(t, te.client); !bytes.HasPrefix(got, []byte("SIP/2.0 200 OK")) {
		t.Fatalf("OPTIONS: %s", got)
	}
	// A malformed INVITE that still names its dialog gets a 400.
	te.send(t, []byte("INVITE sip:x@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP "+ca.String()+";branch=z9hG4bKb\r\n"+
		"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: bad\r\nCSeq: 1 INVITE\r\nContent-Length: 9999\r\n\r\n"))
	if got, _ := recv(t, te.client); !bytes.HasPrefix(got, []byte("SIP/2.0 400 ")) {
		t.Fatalf("malformed INVITE: %s", got)
	}
}

func TestPolicyReloadTakesEffect(t *testing.T) {
	var holder *policy.Holder
	te := start(t, Proxy, func(c *Config, _ *testEnv) { holder = c.Policy })
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	attest := func(id string) string {
		te.send(t, invite(ca, id, ""))
		got, _ := recv(t, te.next)
		m := parse(t, got)
		p, err := passport.ParseIdentity(string(m.Identity[0].In(got)))
		if err != nil {
			t.Fatal(err)
		}
		return p.Payload.Attest
	}
	if a := attest("p1"); a != "A" {
		t.Fatalf("attest %s, want A", a)
	}
	tbl, _ := policy.Build(policy.Config{Default: "B"}, "C")
	holder.Store(tbl)
	if a := attest("p2"); a != "B" {
		t.Fatalf("after reload attest %s, want B", a)
	}
}

func TestViaTargetAndParseIP(t *testing.T) {
	for in, ok := range map[string]bool{"198.18.0.1": true, "[2001:2::1]": true, "2001:2::1": true, "host.example": false, "fe80::1%eth0": false, "": false} {
		if _, got := parseIP([]byte(in)); got != ok {
			t.Errorf("parseIP(%q) = %v", in, got)
		}
	}
	for in, want := range map[string]string{
		"INVITE sip:+1215@198.18.2.2:5070;user=phone SIP/2.0": "198.18.2.2:5070",
		"BYE sip:alice@[2001:2::5] SIP/2.0":                   "[2001:2::5]:5060",
		"BYE sips:198.18.0.9 SIP/2.0":                         "198.18.0.9:5060",
	} {
		method, _, _ := strings.Cut(in, " ")
		msg := []byte(in + "\r\nVia: SIP/2.0/UDP 198.18.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n")
		var m sip.Message
		if err := m.Parse(msg); err != nil {
			t.Fatal(err)
		}
		got, ok := requestURITarget(msg, &m)
		if !ok || got.String() != want {
			t.Errorf("%q -> %v %v, want %s", in, got, ok, want)
		}
	}
}

type sipMessage = sip.Message

func TestRouteByRequestURI(t *testing.T) {
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.NextHop = netip.AddrPort{} })
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	na := te.next.LocalAddr().(*net.UDPAddr).AddrPort()
	inv := bytes.Replace(invite(ca, "ruri", ""), []byte("INVITE sip:+12155550123@198.18.2.2:5060 SIP/2.0"),
		[]byte("INVITE sip:+12155550123@"+na.String()+" SIP/2.0"), 1)
	te.send(t, inv)
	got, _ := recv(t, te.next)
	if len(header(got, "Identity")) != 1 {
		t.Fatalf("not signed and routed by Request-URI:\n%s", got)
	}
	// A Request-URI naming the proxy itself is not looped back to it.
	self := bytes.Replace(inv, []byte(na.String()), []byte(te.addr.String()), 1)
	te.send(t, self)
	noRecv(t, te.next, 200*time.Millisecond)
}

func TestAuditRecordPerSignedCall(t *testing.T) {
	path := t.TempDir() + "/audit.log"
	al, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.Audit, c.CertFingerprint = al, "ab12" })
	te.send(t, invite(te.client.LocalAddr().(*net.UDPAddr).AddrPort(), "aud", ""))
	recv(t, te.next)
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := string(b)
	for _, want := range []string{"orig=12155550100", "dest=12155550123", "attest=A", "rule=retail", "signer=soft", "cert=ab12"} {
		if !strings.Contains(line, want) {
			t.Errorf("audit line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "aud@198.18.1.2") {
		t.Error("raw Call-ID in the audit log (must be hashed)")
	}
}

// With a software key first in an hsm.Chain, a warm nonce pool lets the
// loop sign at once; the result is the same verified Identity.
func TestSignOnLoopWithWarmSoftware(t *testing.T) {
	te := start(t, Proxy, func(c *Config, te *testEnv) {
		soft, err := hsm.NewSoftware("soft", te.key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { soft.Close() })
		cert := selfSigned(t, te.key)
		chain, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{Signer: soft}}}, cert)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { chain.Close() })
		c.Signer = chain
	})
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	before, stepsBefore := mSignedOnLoop.Get(), mIdleSteps.Get()
	for i := range 50 {
		te.send(t, invite(ca, fmt.Sprintf("loop%d", i), ""))
		got, _ := recv(t, te.next)
		m := parse(t, got)
		id, err := passport.ParseIdentity(string(m.Identity[0].In(got)))
		if err != nil || passport.VerifySignature(&te.key.PublicKey, id) != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		time.Sleep(2 * time.Millisecond) // let the refill worker keep up
	}
	if mSignedOnLoop.Get() == before {
		t.Fatal("no call was signed on the loop")
	}
	// One client, so one loop took every call and used more than a
	// refill batch of its shard's tokens: the pool had room for a whole
	// batch while later calls came in, and the loop, drained between
	// them, computed that batch itself (the background worker waits for
	// the pool to fall below half).
	if got := mIdleSteps.Get() - stepsBefore; got < es256.RefillerBatch {
		t.Fatalf("the loop made %d refill steps, want at least a batch (%d)", got, es256.RefillerBatch)
	}
}

func selfSigned(t testing.TB, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// On a dual-stack socket IPv4 peers arrive v4-mapped; a request from the
// next hop must still be recognised as such and routed by its Request-URI.
func TestDualStackFromNextHop(t *testing.T) {
	var port uint16
	te := start(t, Proxy, func(c *Config, te *testEnv) {
		port = c.Listen.Port()
		c.Listen = netip.AddrPortFrom(netip.IPv6Unspecified(), port)
		c.Advertise = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	})
	te.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	bye := []byte("BYE sip:alice@" + ca.String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + te.next.LocalAddr().String() + ";branch=z9hG4bKbye\r\n" +
		"From: <sip:+12155550123@198.18.2.2>;tag=s\r\nTo: <sip:+12155550100@198.18.1.2>;tag=c\r\nCall-ID: ds\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	if _, err := te.next.WriteToUDPAddrPort(bye, te.addr); err != nil {
		t.Fatal(err)
	}
	got, _ := recv(t, te.client)
	if !bytes.HasPrefix(got, []byte("BYE ")) {
		t.Fatalf("client got %q", got)
	}
	noRecv(t, te.next, 200*time.Millisecond)
}
