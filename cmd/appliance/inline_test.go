package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/sipp"
	"github.com/shakenline/shakenline/bpf/nettest"
	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/passport"
)

// inlineAppliance is `appliance serve --mode inline` running in the
// appliance namespace of a nettest topology (a re-executed test binary).
type inlineAppliance struct {
	cmd  *exec.Cmd
	logs *syncBuf
	done chan struct{}
}

func startInline(t *testing.T, topo *nettest.Topology, pki string) *inlineAppliance {
	t.Helper()
	args, _ := json.Marshal([]string{"serve", "--mode", "inline",
		"--iface", nettest.ApplianceClientIf + "," + nettest.ApplianceServerIf,
		"--key", filepath.Join(pki, "sp.key"), "--cert", filepath.Join(pki, "sp.pem"),
		"--x5u", "https://cert.example.org/sp.pem", "--attest", "A", "--api", "198.18.1.1:18080", "--lab"})
	cmd := topo.Appliance.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), execEnv+"="+string(args))
	a := &inlineAppliance{cmd: cmd, logs: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = a.logs, a.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := topo.Client.Command("curl", "-s", "http://198.18.1.1:18080/metrics").CombinedOutput()
			var keep []string
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, "shakenline_") && !strings.HasSuffix(l, " 0") && !strings.Contains(l, "_bucket") {
					keep = append(keep, l)
				}
			}
			t.Logf("appliance metrics:\n%s", strings.Join(keep, "\n"))
		}
		a.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("appliance log:\n%s", a.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(a.logs.String(), "appliance serving") {
		select {
		case <-a.done:
			t.Fatalf("inline appliance exited:\n%s", a.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("inline appliance did not start:\n%s", a.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a
}

func (a *inlineAppliance) kill(sig syscall.Signal) {
	if a.cmd.Process != nil {
		_ = syscall.Kill(-a.cmd.Process.Pid, sig)
	}
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
	}
}

// udpIn opens a UDP socket inside ns (a socket keeps its namespace).
func udpIn(t *testing.T, ns *nettest.NS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readFrom(t *testing.T, c *net.UDPConn, d time.Duration) ([]byte, netip.AddrPort, bool) {
	t.Helper()
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}, false
	}
	return buf[:n], from, true
}

func inlineInvite(from, to netip.AddrPort, callID string, pad int) []byte {
	body := "v=0\r\no=- 1 1 IN IP4 198.18.1.2\r\ns=-\r\nc=IN IP4 198.18.1.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n" +
		"a=x-pad:" + strings.Repeat("p", pad) + "\r\n"
	return []byte("INVITE sip:+12155550123@" + to.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + from.String() + ";branch=z9hG4bK" + callID + "\r\n" +
		"From: <sip:+12155550100@198.18.1.2>;tag=" + callID + "\r\nTo: <sip:+12155550123@198.18.2.2>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n" +
		"Content-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body)
}

// TestInlineXDP runs the appliance inline between a client and a server
// namespace whose veths are left as ip-link makes them (no XDP program,
// GRO off, TX checksum offload on: the ordinary hosts of a container or VM
// host): XDP on both of its links steers INVITEs to the loops, which stamp
// them and send them on with the client's own source address; everything
// else (OPTIONS, responses, ACK, BYE, RTP, SIP over TCP) arrives unchanged,
// none lost, forwarded by the kernel because XDP cannot redirect into such
// neighbours (the metrics say so); killing the appliance fails open.
func TestInlineXDP(t *testing.T) {
	prereq.Tools(t, "sipp", "curl")
	topo := nettest.New(t, nettest.Options{ClientMTU: 3400})
	pki := labPKI(t)
	pub := leafKey(t, pki)
	app := startInline(t, topo, pki)

	srv := netip.AddrPortFrom(nettest.ServerV4, 5060)
	cli := netip.AddrPortFrom(nettest.ClientV4, 5060)
	server := udpIn(t, topo.Server, srv)
	client := udpIn(t, topo.Client, cli)
	verifyInvite := func(name string, got []byte) {
		t.Helper()
		ids := sipp.HeaderValues(got, "Identity")
		if len(ids) != 1 {
			t.Fatalf("%s: %d Identity headers:\n%s", name, len(ids), got)
		}
		id, err := passport.ParseIdentity(ids[0])
		if err != nil || passport.VerifySignature(pub, id) != nil {
			t.Fatalf("%s: Identity does not verify: %v", name, err)
		}
		if v := sipp.HeaderValues(got, "Via"); len(v) != 1 {
			t.Fatalf("%s: inline mode must not add a Via: %q", name, v)
		}
	}

	// 1. An INVITE arrives stamped, from the client's own address; the 200
	// goes back through XDP forwarding; OPTIONS pass untouched.
	inv := inlineInvite(cli, srv, "in1", 0)
	if _, err := client.WriteToUDPAddrPort(inv, srv); err != nil {
		t.Fatal(err)
	}
	got, from, ok := readFrom(t, server, 3*time.Second)
	if !ok {
		t.Fatalf("INVITE did not arrive\n%s", app.logs.String())
	}
	if from != cli {
		t.Errorf("stamped INVITE came from %v, want the client's %v", from, cli)
	}
	verifyInvite("ipv4", got)
	resp := []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + cli.String() + ";branch=z9hG4bKin1\r\nFrom: <sip:+12155550100@198.18.1.2>;tag=in1\r\n" +
		"To: <sip:+12155550123@198.18.2.2>;tag=s\r\nCall-ID: in1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	if _, err := server.WriteToUDPAddrPort(resp, cli); err != nil {
		t.Fatal(err)
	}
	if got, _, ok := readFrom(t, client, 3*time.Second); !ok || !bytes.Equal(got, resp) {
		t.Fatalf("200 OK not forwarded unchanged: %q", got)
	}
	opts := []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP " + cli.String() + ";branch=z9hG4bKo\r\nFrom: <sip:p@198.18.1.2>;tag=1\r\n" +
		"To: <sip:198.18.2.2>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	if _, err := client.WriteToUDPAddrPort(opts, srv); err != nil {
		t.Fatal(err)
	}
	if got, _, ok := readFrom(t, server, 3*time.Second); !ok || !bytes.Equal(got, opts) {
		t.Fatalf("OPTIONS not passed unchanged: %q", got)
	}

	// ACK, BYE and the BYE's 200 OK, unchanged both ways.
	for _, m := range []string{"ACK", "BYE"} {
		req := []byte(m + " sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP " + cli.String() + ";branch=z9hG4bK" + m +
			"\r\nFrom: <sip:+12155550100@198.18.1.2>;tag=in1\r\nTo: <sip:+12155550123@198.18.2.2>;tag=s\r\nCall-ID: in1\r\n" +
			"CSeq: 1 " + m + "\r\nContent-Length: 0\r\n\r\n")
		if _, err := client.WriteToUDPAddrPort(req, srv); err != nil {
			t.Fatal(err)
		}
		if got, _, ok := readFrom(t, server, 3*time.Second); !ok || !bytes.Equal(got, req) {
			t.Fatalf("%s not forwarded unchanged: %q", m, got)
		}
	}
	byeOK := bytes.Replace(resp, []byte("CSeq: 1 INVITE"), []byte("CSeq: 1 BYE"), 1)
	if _, err := server.WriteToUDPAddrPort(byeOK, cli); err != nil {
		t.Fatal(err)
	}
	if got, _, ok := readFrom(t, client, 3*time.Second); !ok || !bytes.Equal(got, byeOK) {
		t.Fatalf("200 OK to BYE not forwarded unchanged: %q", got)
	}

	// Media: 1,000 RTP-like 200-byte datagrams each way, none lost, none changed.
	if err := nettest.RTPStream(topo.Client, topo.Server, netip.AddrPortFrom(nettest.ClientV4, 4000),
		netip.AddrPortFrom(nettest.ServerV4, 4002), 1000, 200, 10*time.Second); err != nil {
		t.Fatalf("RTP client to server: %v", err)
	}
	if err := nettest.RTPStream(topo.Server, topo.Client, netip.AddrPortFrom(nettest.ServerV4, 4002),
		netip.AddrPortFrom(nettest.ClientV4, 4000), 1000, 200, 10*time.Second); err != nil {
		t.Fatalf("RTP server to client: %v", err)
	}

	// SIP over TCP passes through unchanged, byte for byte, both ways (an
	// INVITE over TCP is not steered: inline mode signs UDP).
	tcpInv := inlineInvite(cli, srv, "tcp1", 0)
	tcpInv = bytes.Replace(tcpInv, []byte("SIP/2.0/UDP"), []byte("SIP/2.0/TCP"), 1)
	tcpUp := append(append([]byte{}, tcpInv...), bytes.Repeat(tcpInv, 200)...) // a pipeline of requests
	tcpDown := bytes.Repeat(resp, 300)
	if err := nettest.TCPExchange(topo.Client, topo.Server, netip.AddrPortFrom(nettest.ServerV4, 5060), tcpUp, tcpDown, 15*time.Second); err != nil {
		t.Fatalf("SIP over TCP: %v", err)
	}
	if err := nettest.TCPExchange(topo.Client, topo.Server, netip.AddrPortFrom(nettest.ServerV6, 5060), tcpUp, tcpDown, 15*time.Second); err != nil {
		t.Fatalf("SIP over TCP, IPv6: %v", err)
	}

	// The neighbours take no redirected frames, so XDP handed that traffic
	// to the kernel, and says so.
	m := scrapeMetrics(t, topo)
	for _, want := range []string{`shakenline_xdp_redirect_target{iface="ac0"} 0`, `shakenline_xdp_redirect_target{iface="as0"} 0`} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, ifc := range []string{"ac0", "as0"} {
		if n := metricValue(m, `shakenline_xdp_packets_total{iface="`+ifc+`",action="passed",reason="redirect_unsafe_egress"}`); n < 1000 {
			t.Errorf("%s: %v frames counted as handed to the kernel (redirect unsafe), want >= 1000", ifc, n)
		}
		if n := metricValue(m, `shakenline_xdp_packets_total{iface="`+ifc+`",action="forwarded",reason="fib"}`); n != 0 {
			t.Errorf("%s: %v frames redirected into a neighbour that cannot take them", ifc, n)
		}
	}

	// 2. A 3000-byte INVITE (client link MTU 3400, server link 1500) arrives
	// whole: the kernel fragments the reinjected datagram.
	big := inlineInvite(cli, srv, "big", 2400)
	if _, err := client.WriteToUDPAddrPort(big, srv); err != nil {
		t.Fatal(err)
	}
	if got, _, ok := readFrom(t, server, 3*time.Second); !ok {
		t.Fatal("large INVITE lost")
	} else {
		verifyInvite("large", got)
		if len(got) < 3000 {
			t.Fatalf("large INVITE arrived with %d bytes", len(got))
		}
	}

	// 3. IPv6.
	srv6 := netip.AddrPortFrom(nettest.ServerV6, 5060)
	cli6 := netip.AddrPortFrom(nettest.ClientV6, 5060)
	server6 := udpIn(t, topo.Server, srv6)
	client6 := udpIn(t, topo.Client, cli6)
	if _, err := client6.WriteToUDPAddrPort(inlineInvite(cli6, srv6, "v6", 0), srv6); err != nil {
		t.Fatal(err)
	}
	if got, from, ok := readFrom(t, server6, 3*time.Second); !ok || from != cli6 {
		t.Fatalf("IPv6 INVITE: ok=%v from %v", ok, from)
	} else {
		verifyInvite("ipv6", got)
	}

	// 4. Real SIPp calls, client -> server through the wire.
	server.Close()
	work := t.TempDir()
	uasLog := filepath.Join(work, "uas.log")
	uas := topo.Server.Command("sipp", "-sf", mustAbs(t, "../../bench/sipp/uas.xml"), "-i", nettest.ServerV4.String(), "-p", "5060",
		"-nostdin", "-trace_msg", "-message_file", uasLog, "-timeout", "60s")
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stopUAS := func() { once.Do(func() { _ = uas.Process.Kill(); _ = uas.Wait() }) }
	t.Cleanup(stopUAS)
	time.Sleep(300 * time.Millisecond)
	client.Close()
	uac := topo.Client.Command("sipp", "-sf", mustAbs(t, "../../bench/sipp/uac_invite_only.xml"), "-inf", mustAbs(t, "../../bench/sipp/numbers.csv"),
		"-i", nettest.ClientV4.String(), "-p", "5070", "-nostdin", "-m", "50", "-r", "50", "-timeout", "30s", srv.String())
	if out, err := uac.CombinedOutput(); err != nil {
		t.Fatalf("SIPp calls through the inline appliance failed: %v\n%s", err, lastLines(out, 20))
	}
	stopUAS()
	invites := sippINVITEs(t, uasLog)
	if len(invites) < 50 {
		t.Fatalf("UAS saw %d INVITEs", len(invites))
	}
	for i, inv := range invites {
		verifyInvite(fmt.Sprintf("sipp %d", i), inv)
	}

	// 5. Kill the appliance: INVITEs pass unsigned within a second (the XDP
	// link dies with the process, or the heartbeat goes stale).
	app.kill(syscall.SIGKILL)
	server = udpIn(t, topo.Server, srv)
	client = udpIn(t, topo.Client, cli)
	killed := time.Now()
	var arrived []byte
	for time.Since(killed) < 2*time.Second && arrived == nil {
		if _, err := client.WriteToUDPAddrPort(inlineInvite(cli, srv, "dead", 0), srv); err != nil {
			t.Fatal(err)
		}
		arrived, _, _ = readFrom(t, server, 100*time.Millisecond)
	}
	if arrived == nil {
		t.Fatal("with the appliance dead, INVITEs do not pass (fail-open broken)")
	}
	if len(sipp.HeaderValues(arrived, "Identity")) != 0 {
		t.Fatal("INVITE signed with the appliance dead?")
	}
	t.Logf("fail-open: first unsigned INVITE passed %v after kill", time.Since(killed).Round(time.Millisecond))

	// 6. Restarting it resumes signing.
	startInline(t, topo, pki)
	var signed []byte
	for start := time.Now(); time.Since(start) < 3*time.Second && signed == nil; {
		if _, err := client.WriteToUDPAddrPort(inlineInvite(cli, srv, "back", 0), srv); err != nil {
			t.Fatal(err)
		}
		if got, _, ok := readFrom(t, server, 200*time.Millisecond); ok && len(sipp.HeaderValues(got, "Identity")) == 1 {
			signed = got
		}
	}
	if signed == nil {
		t.Fatal("signing did not resume after restart")
	}
	verifyInvite("after restart", signed)
}

// scrapeMetrics reads the inline appliance's /metrics from the client
// namespace.
func scrapeMetrics(t *testing.T, topo *nettest.Topology) string {
	t.Helper()
	out, err := topo.Client.Command("curl", "-sf", "http://198.18.1.1:18080/metrics").Output()
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return string(out)
}

// metricValue is the value of the series named exactly name (-1: absent).
func metricValue(metrics, name string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
