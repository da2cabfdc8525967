package fastpath

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/passport"
)

// streamPeer is a SIP peer on a stream: it reads whole messages (headers,
// then Content-Length bytes) from a connection into a channel.
type streamPeer struct {
	c    net.Conn
	msgs chan []byte
}

func newStreamPeer(t testing.TB, c net.Conn) *streamPeer {
	p := &streamPeer{c: c, msgs: make(chan []byte, 1024)}
	t.Cleanup(func() { c.Close() })
	go func() {
		defer close(p.msgs)
		r := bufio.NewReader(c)
		for {
			m, err := readStreamMsg(r)
			if err != nil {
				return
			}
			p.msgs <- m
		}
	}()
	return p
}

// readStreamMsg reads one message (CRLFs between messages skipped).
func readStreamMsg(r *bufio.Reader) ([]byte, error) {
	var head bytes.Buffer
	cl := 0
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		if head.Len() == 0 && (string(line) == "\r\n" || string(line) == "\n") {
			continue
		}
		head.Write(line)
		if string(line) == "\r\n" {
			break
		}
		if n, v, ok := strings.Cut(string(line), ":"); ok && (strings.EqualFold(strings.TrimSpace(n), "Content-Length") || strings.TrimSpace(n) == "l") {
			cl, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, cl)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(head.Bytes(), body...), nil
}

func (p *streamPeer) recv(t testing.TB) []byte {
	t.Helper()
	select {
	case m, ok := <-p.msgs:
		if !ok {
			t.Fatal("connection closed")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received on the stream")
	}
	return nil
}

func (p *streamPeer) send(t testing.TB, b []byte) {
	t.Helper()
	if _, err := p.c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// closed waits for the appliance to close the connection.
func (p *streamPeer) closed(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case _, ok := <-p.msgs:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("connection still open after %v", within)
		}
	}
}

// tcpListener accepts connections and hands each to a streamPeer.
func tcpListener(t testing.TB, addr string) (net.Listener, chan *streamPeer) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan *streamPeer, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- newStreamPeer(t, c)
		}
	}()
	return ln, peers
}

func acceptPeer(t testing.TB, peers chan *streamPeer) *streamPeer {
	t.Helper()
	select {
	case p := <-peers:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no connection from the appliance")
	}
	return nil
}

func dialTCP(t testing.TB, to netip.AddrPort) *streamPeer {
	t.Helper()
	c, err := net.Dial("tcp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	return newStreamPeer(t, c)
}

// viaTCP makes a test INVITE's Via say TCP.
func viaTCP(b []byte) []byte {
	return bytes.Replace(b, []byte("Via: SIP/2.0/UDP"), []byte("Via: SIP/2.0/TCP"), 1)
}

func respondTo(req []byte, code string) []byte {
	var b bytes.Buffer
	b.WriteString("SIP/2.0 " + code + "\r\n")
	for _, v := range header(req, "Via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	b.WriteString("From: " + header(req, "From")[0] + "\r\nTo: " + header(req, "To")[0] + ";tag=srv\r\n")
	b.WriteString("Call-ID: " + header(req, "Call-ID")[0] + "\r\nCSeq: " + header(req, "CSeq")[0] + "\r\nContent-Length: 0\r\n\r\n")
	return b.Bytes()
}

func verifyIdentity(t testing.TB, te *testEnv, msg []byte) {
	t.Helper()
	m := parse(t.(*testing.T), msg)
	if m.NumIdentity != 1 {
		t.Fatalf("no Identity header:\n%s", msg)
	}
	id, err := passport.ParseIdentity(string(m.Identity[0].In(msg)))
	if err != nil {
		t.Fatal(err)
	}
	if err := passport.VerifySignature(&te.key.PublicKey, id); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
}

// TCP in, TCP to the next hop: the INVITE is signed, our Via says TCP and
// names the client's connection, the next hop's connection is reused, and
// the responses go back on the client's connection.
func TestTCPProxy(t *testing.T) {
	var peers chan *streamPeer
	te := start(t, Proxy, func(c *Config, te *testEnv) {
		var ln net.Listener
		ln, peers = tcpListener(t, "127.0.0.1:0")
		c.NextHop, c.NextHopTransport = ln.Addr().(*net.TCPAddr).AddrPort(), TCP
	})
	cl := dialTCP(t, te.addr)
	local := cl.c.LocalAddr().(*net.TCPAddr).AddrPort()
	var next *streamPeer
	for i := range 3 {
		cl.send(t, viaTCP(invite(local, fmt.Sprintf("tcp%d", i), "")))
		if i == 0 {
			next = acceptPeer(t, peers)
		}
		got := next.recv(t)
		verifyIdentity(t, te, got)
		vias := header(got, "Via")
		if len(vias) != 2 || !strings.HasPrefix(vias[0], "SIP/2.0/TCP "+te.addr.String()+";branch=z9hG4bKsl") ||
			!strings.Contains(vias[0], ";i=") {
			t.Fatalf("our Via: %q", vias)
		}
		next.send(t, respondTo(got, "180 Ringing"))
		next.send(t, respondTo(got, "200 OK"))
		for _, want := range []string{"SIP/2.0 180 ", "SIP/2.0 200 "} {
			back := cl.recv(t)
			if !bytes.HasPrefix(back, []byte(want)) || len(header(back, "Via")) != 1 {
				t.Fatalf("client got:\n%s", back)
			}
		}
	}
	select {
	case <-peers:
		t.Fatal("a second connection to the next hop: not reused")
	default:
	}
}

// testLogger discards the appliance's log, or shows it with SHAKENLINE_TEST_LOG=1.
func testLogger() *slog.Logger {
	if os.Getenv("SHAKENLINE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TCP in, UDP to the next hop: the response comes back over UDP and goes
// to the client on its connection (whichever loop reads it).
func TestTCPClientUDPNextHop(t *testing.T) {
	te := start(t, Proxy, nil)
	cl := dialTCP(t, te.addr)
	local := cl.c.LocalAddr().(*net.TCPAddr).AddrPort()
	for i := range 4 {
		cl.send(t, viaTCP(invite(local, fmt.Sprintf("mix%d", i), "")))
		got, _ := recv(t, te.next)
		verifyIdentity(t, te, got)
		if v := header(got, "Via"); !strings.HasPrefix(v[0], "SIP/2.0/UDP ") || !strings.Contains(v[0], ";i=") {
			t.Fatalf("our Via: %q", v)
		}
		if _, err := te.next.WriteToUDPAddrPort(respondTo(got, "200 OK"), te.addr); err != nil {
			t.Fatal(err)
		}
		if back := cl.recv(t); !bytes.HasPrefix(back, []byte("SIP/2.0 200 ")) {
			t.Fatalf("client got:\n%s", back)
		}
	}
}

// bigInvite is an INVITE with an SDP body of sdp bytes.
func bigInvite(from netip.AddrPort, callID string, sdp int) []byte {
	inv := invite(from, callID, "")
	i := bytes.Index(inv, []byte("\r\n\r\n")) + 4
	body := append([]byte{}, inv[i:]...)
	for len(body) < sdp {
		body = append(body, "a=x-pad:0123456789012345678901234567890123456789\r\n"...)
	}
	body = body[:sdp-2]
	body = append(body, "\r\n"...)
	head := bytes.Replace(inv[:i], []byte(fmt.Sprintf("Content-Length: %d", len(inv)-i)), []byte(fmt.Sprintf("Content-Length: %d", len(body))), 1)
	return append(head, body...)
}

// udp_mtu (RFC 3261 section 18.1.1): a UDP INVITE that leaves larger than
// the MTU goes over TCP to the next hop's address and port, our Via saying
// TCP; the response comes back on that connection and goes to the UDP
// client. A small request stays on UDP.
func TestUDPMTUSwitchesToTCP(t *testing.T) {
	var peers chan *streamPeer
	te := start(t, Proxy, func(c *Config, te *testEnv) {
		// The next hop listens for TCP on its UDP port.
		_, peers = tcpListener(t, te.next.LocalAddr().String())
		c.UDPMTU = 1300
	})
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	before := mMTUSwitched.Get()
	te.send(t, bigInvite(ca, "big", 1200))
	next := acceptPeer(t, peers)
	got := next.recv(t)
	verifyIdentity(t, te, got)
	if len(got) <= 1300 {
		t.Fatalf("the INVITE left at %d bytes", len(got))
	}
	if v := header(got, "Via"); !strings.HasPrefix(v[0], "SIP/2.0/TCP "+te.addr.String()+";") || strings.Contains(v[0], ";i=") {
		t.Fatalf("our Via: %q", v)
	}
	if mMTUSwitched.Get() != before+1 {
		t.Fatal("the switch was not counted")
	}
	next.send(t, respondTo(got, "200 OK"))
	back, _ := recv(t, te.client)
	if !bytes.HasPrefix(back, []byte("SIP/2.0 200 ")) {
		t.Fatalf("client got:\n%s", back)
	}
	// An OPTIONS is small: UDP.
	te.send(t, []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP "+ca.String()+";branch=z9hG4bKo1\r\n"+
		"From: <sip:ping@198.18.1.2>;tag=1\r\nTo: <sip:198.18.2.2>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	if got, _ := recv(t, te.next); !bytes.HasPrefix(got, []byte("OPTIONS ")) {
		t.Fatalf("next hop got over UDP:\n%s", got)
	}
}

// Redirect mode answers on the connection the INVITE came on.
func TestTCPRedirect(t *testing.T) {
	te := start(t, Redirect, nil)
	cl := dialTCP(t, te.addr)
	local := cl.c.LocalAddr().(*net.TCPAddr).AddrPort()
	cl.send(t, viaTCP(invite(local, "r1", "")))
	got := cl.recv(t)
	if !bytes.HasPrefix(got, []byte("SIP/2.0 302 Moved Temporarily\r\n")) || len(header(got, "Identity")) != 1 {
		t.Fatalf("want a signed 302:\n%s", got)
	}
}

// Framing on a real connection: a message split across writes, several in
// one write, a body that comes late, and a CRLFCRLF ping answered with
// CRLF (RFC 5626 section 3.5.1).
func TestTCPFraming(t *testing.T) {
	te := start(t, Proxy, nil)
	c, err := net.Dial("tcp4", te.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	a, b, d := viaTCP(invite(local, "f1", "")), viaTCP(invite(local, "f2", "")), viaTCP(invite(local, "f3", ""))
	write := func(p []byte) {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// a in three pieces, the last one with the start of b; then the rest
	// of b, d whole, and the body of nothing: a ping.
	write(a[:10])
	write(a[10 : len(a)-5])
	write(append(append([]byte{}, a[len(a)-5:]...), b[:bytes.Index(b, []byte("\r\n\r\n"))+4]...))
	write(append(append(append([]byte{}, b[bytes.Index(b, []byte("\r\n\r\n"))+4:]...), d...), "\r\n\r\n"...))
	seen := map[string]bool{}
	for range 3 { // the signers finish in any order
		got, _ := recv(t, te.next)
		verifyIdentity(t, te, got)
		seen[header(got, "Call-ID")[0]] = true
	}
	if !seen["f1@198.18.1.2"] || !seen["f2@198.18.1.2"] || !seen["f3@198.18.1.2"] {
		t.Fatalf("calls %v", seen)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	pong := make([]byte, 2)
	if _, err := io.ReadFull(c, pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("pong %q, %v", pong, err)
	}
}

// A next hop that refuses TCP: counted, reported by NextHopReady (the
// /readyz check), requests answered 503 while its backoff runs; once it
// listens, the next request reconnects and goes through.
func TestNextHopRefusesTCP(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nh := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close() // nothing listens there now
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.NextHop, c.NextHopTransport = nh, TCP })
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	errs := mConnectErrors[TCP].Get()
	te.send(t, invite(ca, "refused1", ""))
	for deadline := time.Now().Add(5 * time.Second); mConnectErrors[TCP].Get() == errs; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the refused connection was not counted")
		}
	}
	if err := te.srv.NextHopReady(); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("readiness: %v", err)
	}
	te.send(t, invite(ca, "refused2", ""))
	if got, _ := recv(t, te.client); !bytes.HasPrefix(got, []byte("SIP/2.0 503 ")) {
		t.Fatalf("want 503:\n%s", got)
	}
	_, peers := tcpListener(t, nh.String())
	time.Sleep(backoffMin + 100*time.Millisecond)
	te.send(t, invite(ca, "back", ""))
	next := acceptPeer(t, peers)
	if got := next.recv(t); !strings.Contains(string(got), "Call-ID: back@") {
		t.Fatalf("next hop got:\n%s", got)
	}
	if err := te.srv.NextHopReady(); err != nil {
		t.Fatalf("readiness once connected: %v", err)
	}
}
