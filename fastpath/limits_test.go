package fastpath

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dialFrom opens a TCP connection to to from the loopback address from.
func dialFrom(t testing.TB, from string, to netip.AddrPort) *streamPeer {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	return newStreamPeer(t, c)
}

// served checks that the connection is open and served: an OPTIONS on it
// reaches the next hop.
func (te *testEnv) served(t *testing.T, p *streamPeer, id string) {
	t.Helper()
	local := p.c.LocalAddr().(*net.TCPAddr).AddrPort()
	p.send(t, []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/TCP "+local.String()+";branch=z9hG4bK"+id+"\r\n"+
		"From: <sip:ping@198.18.1.2>;tag=1\r\nTo: <sip:198.18.2.2>\r\nCall-ID: "+id+"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	got, _ := recv(t, te.next)
	if h := header(got, "Call-ID"); len(h) != 1 || h[0] != id {
		t.Fatalf("next hop got:\n%s", got)
	}
}

// Connections from one address, and in all, are bounded: one past a
// limit is closed at once, counted, and the others stay served.
func TestConnectionLimits(t *testing.T) {
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.MaxPerSource, c.MaxConnections = 2, 3 })
	src0, tot0 := mConnRefusedSource.Get(), mConnRefusedTotal.Get()
	a1, a2 := dialFrom(t, "127.0.0.1", te.addr), dialFrom(t, "127.0.0.1", te.addr)
	te.served(t, a1, "a1")
	te.served(t, a2, "a2")
	dialFrom(t, "127.0.0.1", te.addr).closed(t, 3*time.Second)
	if mConnRefusedSource.Get() != src0+1 {
		t.Fatal("per-source refusal not counted")
	}
	b1 := dialFrom(t, "127.0.0.2", te.addr)
	te.served(t, b1, "b1")
	dialFrom(t, "127.0.0.3", te.addr).closed(t, 3*time.Second)
	if mConnRefusedTotal.Get() != tot0+1 {
		t.Fatal("total refusal not counted")
	}
	te.served(t, a1, "a1again")
	// A closed connection frees its place.
	a2.c.Close()
	time.Sleep(200 * time.Millisecond)
	te.served(t, dialFrom(t, "127.0.0.1", te.addr), "a3")
}

// A connection without traffic for the idle timeout is closed; one that
// sends keep-alives is not.
func TestConnectionIdleTimeout(t *testing.T) {
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.IdleTimeout = time.Second })
	idle0 := mConnClosed[closeIdle].Get()
	idle := dialTCP(t, te.addr)
	busy := dialTCP(t, te.addr)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(300 * time.Millisecond):
				_, _ = busy.c.Write([]byte("\r\n\r\n"))
			}
		}
	}()
	idle.closed(t, 4*time.Second)
	if mConnClosed[closeIdle].Get() < idle0+1 {
		t.Fatal("idle close not counted")
	}
	te.served(t, busy, "busy")
}

// Slowloris (a message a byte at a time), an endless header, too many
// header lines and a missing Content-Length each close their connection,
// counted, while a call on another connection goes through.
func TestConnectionAbuse(t *testing.T) {
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.MessageTimeout = time.Second })
	good := dialTCP(t, te.addr)

	slow := dialTCP(t, te.addr)
	slow0 := mConnClosed[closeSlow].Get()
	stop := make(chan struct{})
	go func() {
		msg := "INVITE sip:x@198.18.2.2 SIP/2.0\r\nX-Slow: "
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := slow.c.Write([]byte{msg[i%len(msg)]}); err != nil {
				return
			}
		}
	}()
	defer close(stop)
	te.served(t, good, "during-slowloris")
	slow.closed(t, 4*time.Second)
	if mConnClosed[closeSlow].Get() != slow0+1 {
		t.Fatal("slow message close not counted")
	}

	cases := map[closeReason]string{
		closeTooLarge:        "INVITE sip:x SIP/2.0\r\nX-Endless: " + strings.Repeat("y", 70000),
		closeTooManyHeaders:  "INVITE sip:x SIP/2.0\r\n" + strings.Repeat("X-H: 1\r\n", 300),
		closeNoContentLength: "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.1.2;branch=z9hG4bKn\r\n\r\n",
	}
	for reason, msg := range cases {
		n0 := mConnClosed[reason].Get()
		p := dialTCP(t, te.addr)
		p.send(t, []byte(msg))
		p.closed(t, 3*time.Second)
		if mConnClosed[reason].Get() != n0+1 {
			t.Fatalf("%s: close not counted", closeReasonNames[reason])
		}
		te.served(t, good, "after-"+closeReasonNames[reason])
	}
}

// holderEnv names, for the helper process, where to open how many idle
// connections.
const holderEnv = "SHAKENLINE_HOLD_CONNS"

// TestHoldConnections is the helper process of TestManyIdleConnections:
// it opens the connections (raw sockets: no Go objects of its own to
// count), says "ready", and holds them until its stdin closes.
func TestHoldConnections(t *testing.T) {
	spec := os.Getenv(holderEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	parts := strings.Split(spec, ",")
	n, _ := strconv.Atoi(parts[1])
	ap := netip.MustParseAddrPort(parts[0])
	if len(parts) > 2 && parts[2] == "tls" { // TLS: handshakes done, then idle
		var held []*tls.Conn
		for i := range n {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 86, byte(1+i%200))}}
			c, err := tls.DialWithDialer(&d, "tcp4", ap.String(), &tls.Config{InsecureSkipVerify: true}) // the test's own listener
			if err != nil {
				t.Fatalf("TLS connection %d: %v", i, err)
			}
			held = append(held, c)
		}
		fmt.Println("ready")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = held
		return
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	for i := range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		// Spread over loopback sources, as many clients would come.
		local := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 86, byte(1 + i%200)}}
		if err := unix.Bind(fd, local); err != nil {
			t.Fatalf("bind %d: %v", i, err)
		}
		if err := unix.Connect(fd, sa); err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// idleConns opens n idle connections to addr from a helper process (the
// file descriptors of both ends would not fit one process's limit) and
// returns once the appliance holds them all; the returned function
// closes them.
func idleConns(t testing.TB, addr netip.AddrPort, n int, tr Transport) func() {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldConnections$", "-test.v")
	cmd.Env = append(os.Environ(), holderEnv+"="+addr.String()+","+strconv.Itoa(n)+","+tr.String())
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := func() { _ = in.Close(); _ = cmd.Wait() }
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			done()
			t.Fatalf("helper: %v", err)
		}
		if strings.TrimSpace(line) == "ready" {
			break
		}
	}
	go func() { _, _ = r.WriteTo(io.Discard) }()
	deadline := time.Now().Add(30 * time.Second)
	for nOpen[tr][0].Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := nOpen[tr][0].Load(); got < int64(n) {
		done()
		t.Fatalf("the appliance holds %d connections, want %d", got, n)
	}
	return done
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// 10,000 idle connections cost bounded memory (the heap per connection
// is asserted, and logged with the total) and do not stall a call on
// another connection.
func TestManyIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	const n = 10000
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.MaxConnections, c.MaxPerSource = n+100, n })
	good := dialTCP(t, te.addr)
	te.served(t, good, "before")
	before := heapInUse()
	closeAll := idleConns(t, te.addr, n, TCP)
	defer closeAll()
	after := heapInUse()
	per := float64(int64(after)-int64(before)) / n
	t.Logf("%d idle connections: heap %+.1f MiB, %.0f bytes per connection", n, float64(int64(after)-int64(before))/(1<<20), per)
	if per > 4096 {
		t.Fatalf("%.0f bytes of heap per idle connection, want at most 4096", per)
	}
	start := time.Now()
	good.send(t, viaTCP(invite(good.c.LocalAddr().(*net.TCPAddr).AddrPort(), "among-idle", "")))
	got, _ := recv(t, te.next)
	verifyIdentity(t, te, got)
	t.Logf("a call among them: signed and forwarded in %v", time.Since(start))
}

// A next hop that stops reading: its backlog fills, what does not fit is
// dropped (counted, as UDP drops at a full socket buffer) and the
// connection stays; once the next hop reads again calls flow on it. One
// that does not read for stuckTimeout is closed, and a later call opens a
// new connection.
func TestNextHopBacklog(t *testing.T) {
	old := stuckTimeout
	stuckTimeout = 2 * time.Second
	defer func() { stuckTimeout = old }()
	for _, reads := range []bool{true, false} {
		t.Run(fmt.Sprintf("reads-again-%v", reads), func(t *testing.T) { nextHopBacklog(t, reads) })
	}
}

func nextHopBacklog(t *testing.T, readsAgain bool) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	te := start(t, Proxy, func(c *Config, _ *testEnv) {
		c.NextHop, c.NextHopTransport = ln.Addr().(*net.TCPAddr).AddrPort(), TCP
		c.SocketBuffer = 64 << 10
	})
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	dropped := mStreamDropped[dropBacklog].Get()
	var first net.Conn
	for i := 0; mStreamDropped[dropBacklog].Get() == dropped; i++ {
		if i == 20000 {
			t.Fatal("the backlog never filled")
		}
		te.send(t, bigInvite(ca, fmt.Sprintf("fill%d", i), 8000))
		if first == nil {
			first = <-conns
			defer first.Close()
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
	if !readsAgain {
		stuck := mConnClosed[closeBacklog].Get()
		time.Sleep(stuckTimeout + 100*time.Millisecond)
		for i := 0; mConnClosed[closeBacklog].Get() == stuck; i++ {
			if i == 200 {
				t.Fatal("a next hop that does not read was not closed")
			}
			te.send(t, bigInvite(ca, fmt.Sprintf("stuck%d", i), 8000))
			time.Sleep(10 * time.Millisecond)
		}
		te.send(t, invite(ca, "after-close", ""))
		select {
		case c := <-conns:
			defer c.Close()
			peer := newStreamPeer(t, c)
			for m := peer.recv(t); !strings.Contains(string(m), "Call-ID: after-close@"); m = peer.recv(t) {
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no new connection after the stuck one closed")
		}
		return
	}
	// It reads again: the calls after flow on the same connection.
	peer := newStreamPeer(t, first)
	for quiet := 0; quiet < 3; {
		select {
		case _, ok := <-peer.msgs:
			if !ok {
				t.Fatal("the connection closed")
			}
			quiet = 0
		case <-time.After(100 * time.Millisecond):
			quiet++
		}
	}
	te.send(t, invite(ca, "after-backlog", ""))
	deadline := time.After(10 * time.Second)
	for found := false; !found; {
		select {
		case m, ok := <-peer.msgs:
			if !ok {
				t.Fatal("the connection closed")
			}
			found = strings.Contains(string(m), "Call-ID: after-backlog@")
		case <-deadline:
			t.Fatal("the call after the backlog did not arrive")
		}
	}
	select {
	case <-conns:
		t.Fatal("a new connection: the full one was closed")
	default:
	}
}

// Idle TLS connections cost bounded memory too: their crypto/tls state, a
// read buffer and two goroutines each (the heap per connection is logged
// and bounded).
func TestManyIdleTLSConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 TLS connections")
	}
	const n = 2000
	pki := newTLSPKI(t)
	te := start(t, Proxy, func(c *Config, _ *testEnv) {
		c.MaxConnections, c.MaxPerSource = n+100, n
		c.ListenTLS = freePort(t)
		c.TLSServer = &tls.Config{Certificates: []tls.Certificate{pki.good(t)}}
	})
	before := heapInUse()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	closeAll := idleConns(t, te.srv.cfg.ListenTLS, n, TLS)
	defer closeAll()
	after := heapInUse()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	per := float64(int64(after)-int64(before)) / n
	stack := float64(int64(ms1.StackInuse)-int64(ms0.StackInuse)) / n
	t.Logf("%d idle TLS connections: heap %.0f bytes, goroutine stacks %.0f bytes per connection", n, per, stack)
	if per+stack > 64<<10 {
		t.Fatalf("%.0f bytes per idle TLS connection, want at most 64 KiB", per+stack)
	}
}
