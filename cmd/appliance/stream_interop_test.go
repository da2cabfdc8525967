package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/kamailio"
	"github.com/shakenline/shakenline/bench/sipp"
	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
)

// chain is one run of SIPp calls through Kamailio and the appliance:
//
//	SIPp UAC --UDP--> Kamailio A --(a)--> appliance --(b)--> Kamailio B + secsipid --UDP--> SIPp UAS
//
// Kamailio A forwards (no signing) over transport a; the appliance signs
// and forwards over b; Kamailio B verifies the Identity with secsipid
// (438 on failure, X-Identity-Check: ok on success). Responses travel back
// the same way.
type chain struct {
	net           string // 127.0.84.<net*10 + 1..5>: UAC, Kamailio A, appliance, Kamailio B, UAS
	a, b          string // transports "udp", "tcp", "tls"
	scenario      string // bench/sipp UAC scenario
	calls         int
	config        string    // extra YAML for the appliance
	tls           *chainTLS // TLS material (a or b is tls)
	applianceArgs []string
	signed        int // distinct signed INVITEs the UAS saw (run sets it)
}

type chainTLS struct {
	ca              string // PEM
	kamA, app, kamB [2]string
}

func (c *chain) ip(n int) string { return c.net + strconv.Itoa(n) }

// tlsMaterial issues the SIP TLS certificates (never the STI one) for the
// two Kamailio instances and the appliance, from one lab CA.
func tlsMaterial(t *testing.T, c *chain) *chainTLS {
	t.Helper()
	dir := t.TempDir()
	ca, err := labpki.NewCA("SIP TLS lab CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &chainTLS{ca: filepath.Join(dir, "ca.pem")}
	if err := labpki.WriteCerts(m.ca, ca.Cert); err != nil {
		t.Fatal(err)
	}
	issue := func(name string, ip string) [2]string {
		cert, key, err := ca.IssueTLS(name, []net.IP{net.ParseIP(ip)}, nil, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		p := [2]string{filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")}
		if err := labpki.WriteCerts(p[0], cert); err != nil {
			t.Fatal(err)
		}
		if err := labpki.WriteKey(p[1], key); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m.kamA, m.app, m.kamB = issue("kamailio-a", c.ip(2)), issue("appliance", c.ip(3)), issue("kamailio-b", c.ip(4))
	return m
}

// portFor is a port free for UDP and TCP on ip.
func portFor(t *testing.T, ip string) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(freeSIPPort(t, ip)))
}

func (c *chain) run(t *testing.T) (invites [][]byte, metrics string) {
	t.Helper()
	needKamailio(t)
	prereq.Tools(t, "sipp")
	pki := labPKI(t)
	pub := writePublicKeyPEM(t, pki)
	if c.a == "tls" || c.b == "tls" {
		c.tls = tlsMaterial(t, c)
	}
	kamA, app, kamB, uas := portFor(t, c.ip(2)), portFor(t, c.ip(3)), portFor(t, c.ip(4)), portFor(t, c.ip(5))
	appTLS := portFor(t, c.ip(3))

	// The appliance's address as Kamailio A reaches it, and Kamailio B's
	// as the appliance does.
	appHop := app
	if c.a == "tls" {
		appHop = appTLS
	}
	// Kamailio sends over a transport it listens on.
	kaOpts := kamailio.Options{Listen: kamA, Transport: c.a, NextHop: appHop, NextHopTransport: c.a, Workers: 1}
	if c.a == "udp" {
		kaOpts.Transport = ""
	}
	kbOpts := kamailio.Options{Listen: kamB, Transport: c.b, NextHop: uas, VerifyKeyPath: pub, Workers: 1}
	if c.b == "udp" {
		kbOpts.Transport = "tcp" // udp_mtu: TCP on the UDP port too
	}
	if m := c.tls; m != nil {
		kaOpts.TLSCert, kaOpts.TLSKey, kaOpts.TLSCA = m.kamA[0], m.kamA[1], m.ca
		kbOpts.TLSCert, kbOpts.TLSKey, kbOpts.TLSCA = m.kamB[0], m.kamB[1], m.ca
		kbOpts.TLSRequireClient = true // the appliance shows its certificate
	}
	startKamailio(t, kbOpts)
	startKamailio(t, kaOpts)

	cfgFile := filepath.Join(t.TempDir(), "appliance.yaml")
	if err := os.WriteFile(cfgFile, []byte(c.config), 0o600); err != nil {
		t.Fatal(err)
	}
	next := kamB.String()
	if c.b != "udp" {
		next = fmt.Sprintf("sip:%s;transport=%s", kamB, c.b)
	}
	api := freeTCP(t)
	args := []string{"--config", cfgFile, "--sip", app.String(), "--next-hop", next,
		"--key", filepath.Join(pki, "sp.key"), "--cert", filepath.Join(pki, "sp.pem"),
		"--x5u", "https://cert.example.org/sp.pem", "--attest", "A", "--api", api}
	if m := c.tls; m != nil {
		args = append(args, "--tls-cert", m.app[0], "--tls-key", m.app[1], "--tls-ca", m.ca)
		if c.a == "tls" {
			args = append(args, "--sip-tls", appTLS.String())
		}
	}
	startServe(t, append(args, c.applianceArgs...)...)

	work := t.TempDir()
	uasLog := filepath.Join(work, "uas.log")
	// A call whose INVITE waited for a connection's handshake past the
	// UAC's 500 ms timer is retransmitted, and the retransmission is
	// signed anew: the UAS gets two INVITEs that differ in their Identity
	// (and Kamailio B's Via i=). A UA matches them by the branch and
	// answers the second as a retransmission; SIPp compares whole messages
	// and would abort the call, so it is told to go on.
	uasCmd := exec.Command("sipp", "-sf", "../../bench/sipp/uas.xml", "-i", c.ip(5), "-p", strconv.Itoa(int(uas.Port())),
		"-nostdin", "-trace_msg", "-message_file", uasLog, "-timeout", "60s", "-default_behaviors", "all,-abortunexp")
	uasCmd.Dir = mustAbs(t, ".")
	if err := uasCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uasCmd.Process.Kill(); _ = uasCmd.Wait() })
	waitUDP(t, strconv.Itoa(int(uas.Port())))

	uac := exec.Command("sipp", "-sf", "../../bench/sipp/"+c.scenario, "-inf", "../../bench/sipp/numbers.csv",
		"-i", c.ip(1), "-p", strconv.Itoa(freeSIPPort(t, c.ip(1))), "-nostdin", "-m", fmt.Sprint(c.calls), "-r", "20",
		"-timeout", "60s", kamA.String())
	uac.Dir = mustAbs(t, ".")
	out, err := uac.CombinedOutput()
	metrics = fetchMetrics(t, api)
	if err != nil {
		t.Fatalf("SIPp UAC through Kamailio A, the appliance and Kamailio B failed: %v\n%s\nappliance metrics:\n%s",
			err, lastLines(out, 30), grepLines(metrics, "shakenline_sip_"))
	}
	_ = uasCmd.Process.Kill()
	_ = uasCmd.Wait()
	invites = sippINVITEs(t, uasLog)
	// SIPp's log holds an unexpected message twice: count INVITEs by
	// their Identity (each signing makes a new one) and calls by Call-ID.
	calls, signed := map[string]bool{}, map[string]bool{}
	for _, inv := range invites {
		calls[strings.Join(sipp.HeaderValues(inv, "Call-ID"), ",")] = true
		signed[strings.Join(sipp.HeaderValues(inv, "Identity"), ",")] = true
	}
	if len(calls) != c.calls {
		t.Fatalf("UAS saw INVITEs of %d calls, want %d", len(calls), c.calls)
	}
	c.signed = len(signed)
	key := leafKey(t, pki)
	for k, inv := range invites {
		if v := sipp.HeaderValues(inv, "X-Identity-Check"); len(v) != 1 || v[0] != "ok" {
			t.Fatalf("INVITE %d not verified by Kamailio B's secsipid:\n%s", k, inv)
		}
		ids := sipp.HeaderValues(inv, "Identity")
		if len(ids) != 1 {
			t.Fatalf("INVITE %d: %d Identity headers", k, len(ids))
		}
		id, err := passport.ParseIdentity(ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := passport.VerifySignature(key, id); err != nil {
			t.Fatalf("INVITE %d: %v", k, err)
		}
	}
	return invites, metrics
}

func fetchMetrics(t *testing.T, api string) string {
	t.Helper()
	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// viaOf is the appliance's Via in an INVITE at the UAS (the second: Kamailio
// B's is on top).
func viaOf(t *testing.T, inv []byte) string {
	t.Helper()
	v := sipp.HeaderValues(inv, "Via")
	if len(v) < 3 {
		t.Fatalf("Vias %q", v)
	}
	return v[1]
}

// TestKamailioOverTCP: Kamailio sends to the appliance over TCP and the
// appliance to Kamailio + secsipid over TCP; secsipid verifies every call.
func TestKamailioOverTCP(t *testing.T) {
	c := &chain{net: "127.0.84.4", a: "tcp", b: "tcp", scenario: "uac_invite_only.xml", calls: 40}
	invites, m := c.run(t)
	for _, inv := range invites {
		if v := viaOf(t, inv); !strings.HasPrefix(v, "SIP/2.0/TCP "+c.ip(3)) || !strings.Contains(v, ";i=") {
			t.Fatalf("the appliance's Via: %q", v)
		}
	}
	// Every INVITE the UAS saw (retransmissions included) was seen, and
	// signed, as one that came over TCP.
	if got := metricValue(m, `shakenline_calls_seen_total{transport="tcp"}`); got != float64(c.signed) {
		t.Fatalf("calls seen over TCP: %v, want %d", got, c.signed)
	}
}

// TestKamailioOverTLS: the same over TLS, mutual TLS on both of the
// appliance's connections: Kamailio A must show a certificate
// (tls_client_auth: require) and the appliance shows its own to Kamailio
// B, which requires one; each side verifies the other against the lab CA.
func TestKamailioOverTLS(t *testing.T) {
	c := &chain{net: "127.0.84.5", a: "tls", b: "tls", scenario: "uac_invite_only.xml", calls: 40,
		config: "tls_client_auth: require\n"}
	invites, m := c.run(t)
	for _, inv := range invites {
		if v := viaOf(t, inv); !strings.HasPrefix(v, "SIP/2.0/TLS "+c.ip(3)) {
			t.Fatalf("the appliance's Via: %q", v)
		}
	}
	// Every INVITE the UAS saw (retransmissions included) was seen, and
	// signed, as one that came over TLS.
	if got := metricValue(m, `shakenline_calls_seen_total{transport="tls"}`); got != float64(c.signed) {
		t.Fatalf("calls seen over TLS: %v, want %d", got, c.signed)
	}
}

// TestUDPMTUToKamailio: UDP in, INVITEs with a 1,200-byte SDP signed past
// udp_mtu: 1300 leave over TCP to the next hop's UDP address and port
// (Kamailio B listens for both); ACK and BYE stay on UDP; the responses
// come back to the UDP client.
func TestUDPMTUToKamailio(t *testing.T) {
	c := &chain{net: "127.0.84.6", a: "udp", b: "udp", scenario: "uac_large_sdp.xml", calls: 20, config: "udp_mtu: 1300\n"}
	invites, m := c.run(t)
	for _, inv := range invites {
		if v := viaOf(t, inv); !strings.HasPrefix(v, "SIP/2.0/TCP "+c.ip(3)) {
			t.Fatalf("the appliance's Via: %q (a large INVITE must leave over TCP)", v)
		}
	}
	if got := metricValue(m, "shakenline_sip_udp_mtu_switched_total"); got < float64(c.calls) {
		t.Fatalf("requests moved to TCP: %v, want at least %d", got, c.calls)
	}
}
