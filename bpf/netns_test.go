package bpf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bpf/nettest"
)

const stampHeader = "X-Stamped: xdp-test\r\n"

// stamp inserts stampHeader after the request line, like the fast path
// inserts Identity.
func stamp(dst, msg []byte) []byte {
	i := bytes.Index(msg, []byte("\r\n"))
	if i < 0 {
		return append(dst, msg...)
	}
	dst = append(dst, msg[:i+2]...)
	dst = append(dst, stampHeader...)
	return append(dst, msg[i+2:]...)
}

// serveSteering is a minimal userspace loop: decode, stamp, reinject. It
// must run on a thread in the appliance namespace (the Reinjector creates
// its sockets there). It returns when conn is closed.
func serveSteering(s *Steering, conn *net.UDPConn, r *Reinjector) error {
	buf := make([]byte, 65536)
	out := make([]byte, 0, 65536)
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		payload, fl, ok := s.DecodeMeta(buf[:n])
		if !ok {
			continue
		}
		out = stamp(out[:0], payload)
		if err := r.Send(fl, out); err != nil {
			return err
		}
	}
}

// heartbeater calls Heartbeat every 100 ms until stopped.
type heartbeater struct {
	stop chan struct{}
	done chan struct{}
}

func startHeartbeat(s *Steering) *heartbeater {
	h := &heartbeater{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tk.C:
				s.Heartbeat()
			}
		}
	}()
	return h
}

func (h *heartbeater) Stop() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

type endpoints struct {
	c4, c6, s4, s6 *net.UDPConn
}

func listen(t *testing.T, ns *nettest.NS, addrs ...netip.AddrPort) []*net.UDPConn {
	t.Helper()
	var conns []*net.UDPConn
	err := ns.Do(func() error {
		for _, a := range addrs {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

func newEndpoints(t *testing.T, topo *nettest.Topology) *endpoints {
	c := listen(t, topo.Client, cliV4, cliV6)
	s := listen(t, topo.Server, srvV4, srvV6)
	return &endpoints{c4: c[0], c6: c[1], s4: s[0], s6: s[1]}
}

// exchange sends msg from `from` to dst and returns what `to` receives
// (and from where) within timeout.
func exchange(t *testing.T, from *net.UDPConn, dst netip.AddrPort, msg []byte, to *net.UDPConn, timeout time.Duration) ([]byte, netip.AddrPort, error) {
	t.Helper()
	if _, err := from.WriteToUDPAddrPort(msg, dst); err != nil {
		t.Fatalf("send: %v", err)
	}
	buf := make([]byte, 65536)
	to.SetReadDeadline(time.Now().Add(timeout))
	n, src, err := to.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, src, err
	}
	return buf[:n], netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), nil
}

// TestInlineEndToEnd runs the program between a client and a server host
// whose veths are as ip-link makes them (no XDP program, GRO off, TX
// checksum offload on: XDP cannot redirect into them, and their frames
// carry partial checksums), in native and generic mode, and between
// neighbours with GRO on ("tuned": XDP redirects both ways, completing the
// hosts' partial checksums). Nothing may be lost either way.
func TestInlineEndToEnd(t *testing.T) {
	t.Run("native", func(t *testing.T) { testInline(t, ModeNative, false) })
	t.Run("generic", func(t *testing.T) { testInline(t, ModeGeneric, false) })
	t.Run("native-tuned", func(t *testing.T) { testInline(t, ModeNative, true) })
	// Generic mode redirects skbs, which keep their checksum state: the
	// program does not sum them, and nothing arrives corrupt.
	t.Run("generic-tuned", func(t *testing.T) { testInline(t, ModeGeneric, true) })
}

func testInline(t *testing.T, mode AttachMode, tuned bool) {
	topo := nettest.New(t, nettest.Options{ClientMTU: 3400, NeighbourGRO: tuned})
	ep := newEndpoints(t, topo)

	var s *Steering
	var steer4, steer6 *net.UDPConn
	rj := NewReinjector(0)
	t.Cleanup(func() { rj.Close() })
	err := topo.Appliance.Do(func() (err error) {
		s, err = Attach(Config{
			Ifaces:    []string{nettest.ApplianceClientIf, nettest.ApplianceServerIf},
			SteerPort: testSteerPort,
			Mode:      mode,
		})
		if err != nil {
			return err
		}
		if steer4, err = net.ListenUDP("udp4", &net.UDPAddr{Port: testSteerPort}); err != nil {
			return err
		}
		steer6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6zero, Port: testSteerPort})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Logf("attach modes: %v, redirect targets: %v", s.Modes(), s.RedirectTargets())
	for name, ok := range s.RedirectTargets() {
		if ok != tuned {
			t.Fatalf("%s: XDP redirect target %v, want %v (neighbour GRO %v)", name, ok, tuned, tuned)
		}
	}
	var loops sync.WaitGroup
	for _, c := range []*net.UDPConn{steer4, steer6} {
		loops.Add(1)
		errc := topo.Appliance.Go(func() error { return serveSteering(s, c, rj) })
		go func() {
			defer loops.Done()
			if err := <-errc; err != nil {
				t.Errorf("steering loop: %v", err)
			}
		}()
	}
	t.Cleanup(func() { steer4.Close(); steer6.Close(); loops.Wait() })
	hb := startHeartbeat(s)
	t.Cleanup(hb.Stop)

	counters := func() map[string]IfaceCounters {
		c, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// fastPath returns how many frames the interface's program forwarded
	// at XDP level since before, failing the test if frames that should
	// have been forwarded went the wrong way: with tuned neighbours all go
	// by XDP redirect (none handed over as unsafe), otherwise none does.
	fastPath := func(t *testing.T, ifc string, before map[string]IfaceCounters, want uint64) {
		t.Helper()
		a, b := counters()[ifc], before[ifc]
		fwd, unsafe := a.Forwarded()-b.Forwarded(), a.RedirectUnsafe()-b.RedirectUnsafe()
		if tuned && (fwd < want || unsafe != 0) {
			t.Errorf("%s: XDP forwarded +%d, handed to the kernel as unsafe +%d; want >= %d forwarded", ifc, fwd, unsafe, want)
		}
		if !tuned && (fwd != 0 || unsafe < want) {
			t.Errorf("%s: XDP forwarded +%d, handed to the kernel as unsafe +%d; want >= %d to the kernel", ifc, fwd, unsafe, want)
		}
	}

	type fam struct {
		name     string
		cli, srv *net.UDPConn
		cliAddr  netip.AddrPort
		srvAddr  netip.AddrPort
	}
	fams := []fam{
		{"v4", ep.c4, ep.s4, cliV4, srvV4},
		{"v6", ep.c6, ep.s6, cliV6, srvV6},
	}

	for _, f := range fams {
		t.Run("invite-stamped-"+f.name, func(t *testing.T) {
			before := counters()
			for _, size := range []int{500, 1450, 3000} {
				msg := invite(size)
				got, src, err := exchange(t, f.cli, f.srvAddr, msg, f.srv, 2*time.Second)
				if err != nil {
					t.Fatalf("%d-byte INVITE did not arrive: %v", size, err)
				}
				if src != f.cliAddr {
					t.Errorf("server saw source %v, want the client's %v", src, f.cliAddr)
				}
				if want := stamp(nil, msg); !bytes.Equal(got, want) {
					t.Errorf("%d-byte INVITE arrived as %d bytes, want %d stamped bytes", size, len(got), len(want))
				}
				// The 200 OK goes back through the appliance at XDP level.
				reply := []byte("SIP/2.0 200 OK\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n")
				got, src, err = exchange(t, f.srv, f.cliAddr, reply, f.cli, 2*time.Second)
				if err != nil || src != f.srvAddr || !bytes.Equal(got, reply) {
					t.Fatalf("200 OK: %v from %v (%q)", err, src, got)
				}
			}
			after := counters()
			if d := after[nettest.ApplianceClientIf].Steered() - before[nettest.ApplianceClientIf].Steered(); d != 3 {
				t.Errorf("ac0 steered +%d, want 3", d)
			}
			fastPath(t, nettest.ApplianceServerIf, before, 3) // the 200 OKs
		})
		t.Run("options-ack-bye-unchanged-"+f.name, func(t *testing.T) {
			before := counters()
			for _, m := range []string{"OPTIONS", "ACK", "BYE"} {
				msg := []byte(m + " sip:" + f.srvAddr.Addr().String() + " SIP/2.0\r\nCSeq: 2 " + m + "\r\nContent-Length: 0\r\n\r\n")
				got, src, err := exchange(t, f.cli, f.srvAddr, msg, f.srv, 2*time.Second)
				if err != nil || src != f.cliAddr || !bytes.Equal(got, msg) {
					t.Fatalf("%s: err %v, src %v, unchanged %v", m, err, src, bytes.Equal(got, msg))
				}
			}
			ok200 := []byte("SIP/2.0 200 OK\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")
			if got, src, err := exchange(t, f.srv, f.cliAddr, ok200, f.cli, 2*time.Second); err != nil || src != f.srvAddr || !bytes.Equal(got, ok200) {
				t.Fatalf("200 OK to BYE: err %v, src %v, unchanged %v", err, src, bytes.Equal(got, ok200))
			}
			ac := nettest.ApplianceClientIf
			if after := counters(); after[ac].Steered() != before[ac].Steered() {
				t.Errorf("OPTIONS/ACK/BYE steered to userspace")
			}
			fastPath(t, ac, before, 3)
			fastPath(t, nettest.ApplianceServerIf, before, 1)
		})
		t.Run("rtp-stream-"+f.name, func(t *testing.T) {
			before := counters()
			src := netip.AddrPortFrom(f.cliAddr.Addr(), 40000)
			dst := netip.AddrPortFrom(f.srvAddr.Addr(), 40002)
			if err := nettest.RTPStream(topo.Client, topo.Server, src, dst, 1000, 200, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			back := netip.AddrPortFrom(f.srvAddr.Addr(), 40004)
			if err := nettest.RTPStream(topo.Server, topo.Client, back, netip.AddrPortFrom(f.cliAddr.Addr(), 40006), 1000, 200, 10*time.Second); err != nil {
				t.Fatalf("server to client: %v", err)
			}
			fastPath(t, nettest.ApplianceClientIf, before, 1000)
			fastPath(t, nettest.ApplianceServerIf, before, 1000)
			if c := counters()[nettest.ApplianceClientIf]; tuned && mode == ModeNative && c.ByReason[ReasonForwardedCsum] < 1000 {
				t.Errorf("ac0 completed %d partial checksums, want the client's 1000 (TX checksum offload on)", c.ByReason[ReasonForwardedCsum])
			}
		})
		t.Run("sip-over-tcp-"+f.name, func(t *testing.T) {
			before := counters()
			dst := netip.AddrPortFrom(f.srvAddr.Addr(), 5060)
			up := append(invite(1200), bytes.Repeat([]byte("upstream bulk "), 20000)...)
			down := append([]byte("SIP/2.0 200 OK\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n"), bytes.Repeat([]byte("downstream bulk "), 20000)...)
			if err := nettest.TCPExchange(topo.Client, topo.Server, dst, up, down, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			if c := counters()[nettest.ApplianceClientIf]; c.Steered() != before[nettest.ApplianceClientIf].Steered() {
				t.Errorf("an INVITE over TCP was steered")
			}
			// Generic mode sees the hosts' GSO segments whole: a few frames.
			fastPath(t, nettest.ApplianceClientIf, before, 4)
			fastPath(t, nettest.ApplianceServerIf, before, 4)
		})
	}

	t.Run("direct-to-steering-socket-dropped", func(t *testing.T) {
		before := counters()[nettest.ApplianceClientIf]
		forged := AppendMeta(nil, Flow{Src: cliV4, Dst: srvV4}, s.Cookie(), invite(300))
		dst := netip.AddrPortFrom(nettest.ApplianceClientV4, testSteerPort)
		if _, _, err := exchange(t, ep.c4, dst, forged, ep.s4, 300*time.Millisecond); err == nil {
			t.Fatal("forged datagram reached the server")
		}
		after := counters()[nettest.ApplianceClientIf]
		if after.ByReason[ReasonDropSteerDirect] != before.ByReason[ReasonDropSteerDirect]+1 {
			t.Errorf("drop counter did not move")
		}
	})

	t.Run("heartbeat-stale-fails-open", func(t *testing.T) {
		hb.Stop()
		t0 := time.Now()
		msg := invite(400)
		var unsigned time.Duration
		for time.Since(t0) < 3*time.Second {
			got, _, err := exchange(t, ep.c4, srvV4, msg, ep.s4, time.Second)
			if err != nil {
				t.Fatalf("INVITE lost while heartbeat stopped: %v", err)
			}
			if bytes.Equal(got, msg) {
				unsigned = time.Since(t0)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if unsigned == 0 || unsigned > time.Second {
			t.Fatalf("INVITEs not passing unsigned within 1s of the last heartbeat (after %v)", unsigned)
		}
		t.Logf("fail-open after %v", unsigned)
		if c := counters()[nettest.ApplianceClientIf]; c.ByReason[ReasonInviteStale] == 0 {
			t.Errorf("stale events not counted")
		}
		hb = startHeartbeat(s)
		s.Heartbeat()
		got, _, err := exchange(t, ep.c4, srvV4, msg, ep.s4, 2*time.Second)
		if err != nil || !bytes.Equal(got, stamp(nil, msg)) {
			t.Fatalf("steering did not resume with the heartbeat: %v", err)
		}
	})

	t.Run("close-leaves-link-working", func(t *testing.T) {
		hb.Stop()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			msg := invite(600)
			got, src, err := exchange(t, f.cli, f.srvAddr, msg, f.srv, 2*time.Second)
			if err != nil || src != f.cliAddr || !bytes.Equal(got, msg) {
				t.Fatalf("%s INVITE after Close: err %v src %v unchanged %v", f.name, err, src, bytes.Equal(got, msg))
			}
		}
	})
}

// TestHelperApplianceProcess is the appliance process for
// TestKillApplianceFailsOpen; it only runs when re-executed by it.
func TestHelperApplianceProcess(t *testing.T) {
	if os.Getenv("SHAKENLINE_BPF_HELPER") != "1" {
		t.Skip("helper process")
	}
	s, err := Attach(Config{Ifaces: []string{nettest.ApplianceClientIf, nettest.ApplianceServerIf}, SteerPort: testSteerPort})
	if err != nil {
		fmt.Println("attach:", err)
		os.Exit(1)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: testSteerPort})
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	startHeartbeat(s)
	fmt.Println("ready")
	// The whole process runs in the appliance namespace: any thread may serve.
	serveSteering(s, conn, NewReinjector(0))
}

func TestKillApplianceFailsOpen(t *testing.T) {
	topo := nettest.New(t, nettest.Options{})
	ep := newEndpoints(t, topo)

	cmd := topo.Appliance.Command(os.Args[0], "-test.run=^TestHelperApplianceProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SHAKENLINE_BPF_HELPER=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") || strings.Contains(sc.Text(), ":") {
				ready <- sc.Text()
				return
			}
		}
		ready <- "helper exited"
	}()
	select {
	case line := <-ready:
		if line != "ready" {
			t.Fatalf("helper: %s", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("helper did not become ready")
	}

	msg := invite(500)
	got, src, err := exchange(t, ep.c4, srvV4, msg, ep.s4, 2*time.Second)
	if err != nil || src != cliV4 || !bytes.Equal(got, stamp(nil, msg)) {
		t.Fatalf("INVITE through helper not stamped: err %v src %v", err, src)
	}

	// `ip netns exec` execs the test binary, so this is the appliance.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cmd.Wait()
	for {
		got, src, err := exchange(t, ep.c4, srvV4, msg, ep.s4, 200*time.Millisecond)
		if err == nil && src == cliV4 && bytes.Equal(got, msg) {
			t.Logf("calls pass unsigned %v after kill -9", time.Since(t0))
			break
		}
		if time.Since(t0) > time.Second {
			t.Fatalf("INVITE not passing unsigned within 1s of kill -9 (last: err %v, stamped %v)", err, bytes.Contains(got, []byte(stampHeader)))
		}
	}
}

// TestRedirectFollowsLinks: the appliance learns at attach time and from
// link changes which interfaces take redirected frames. The server host
// turns GRO on (its veth gets NAPI: XDP may now redirect into as0), then
// off again; OPTIONS arrive every time, by XDP or by the kernel as the
// counters and the redirect-target gauge say.
func TestRedirectFollowsLinks(t *testing.T) {
	topo := nettest.New(t, nettest.Options{})
	ep := newEndpoints(t, topo)
	var s *Steering
	if err := topo.Appliance.Do(func() (err error) {
		s, err = Attach(Config{Ifaces: []string{nettest.ApplianceClientIf, nettest.ApplianceServerIf}, SteerPort: testSteerPort, Mode: ModeNative})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	as := nettest.ApplianceServerIf

	waitTarget := func(want bool) {
		t.Helper()
		t0 := time.Now()
		for s.RedirectTargets()[as] != want {
			// Link events, not the periodic re-read, must bring the change.
			if time.Since(t0) > redirectResync-time.Second {
				t.Fatalf("%s redirect target still %v %v after the server's GRO change", as, !want, time.Since(t0))
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s redirect target %v %v after the change", as, want, time.Since(t0).Round(time.Millisecond))
	}
	options := func(wantXDP bool) {
		t.Helper()
		before, _ := s.Counters()
		msg := []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n")
		got, _, err := exchange(t, ep.c4, srvV4, msg, ep.s4, 2*time.Second)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("OPTIONS lost or changed: %v", err)
		}
		after, _ := s.Counters()
		a, b := after[nettest.ApplianceClientIf], before[nettest.ApplianceClientIf]
		fwd, unsafe := a.Forwarded()-b.Forwarded(), a.ByReason[ReasonUnsafeEgress]-b.ByReason[ReasonUnsafeEgress]
		if wantXDP && (fwd != 1 || unsafe != 0) || !wantXDP && (fwd != 0 || unsafe != 1) {
			t.Fatalf("OPTIONS: XDP forwarded +%d, unsafe egress +%d (want XDP: %v)", fwd, unsafe, wantXDP)
		}
	}
	metric := func(want string) {
		t.Helper()
		var b bytes.Buffer
		s.WritePrometheus(&b)
		if !strings.Contains(b.String(), want+"\n") {
			t.Fatalf("metrics lack %q:\n%s", want, b.String())
		}
	}

	if s.RedirectTargets()[as] {
		t.Fatalf("%s is a redirect target with an untouched neighbour", as)
	}
	options(false)
	metric(`shakenline_xdp_redirect_target{iface="as0"} 0`)
	metric(`shakenline_xdp_packets_total{iface="ac0",action="passed",reason="redirect_unsafe_egress"} 1`)

	topo.Server.SetGRO(t, nettest.ServerIf, true)
	waitTarget(true)
	options(true)
	metric(`shakenline_xdp_redirect_target{iface="as0"} 1`)

	topo.Server.SetGRO(t, nettest.ServerIf, false)
	waitTarget(false)
	options(false)
	metric(`shakenline_xdp_redirect_target{iface="as0"} 0`)
}
