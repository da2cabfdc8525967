package fastpath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/shakenline/shakenline/hsm"
)

// sinkGC stands in for gnet's connection in tests that drive a loop
// without gnet: it counts what the loop writes.
type sinkGC struct {
	gnet.Conn
	n, writes int
}

func (s *sinkGC) Write(b []byte) (int, error)                 { s.n += len(b); s.writes++; return len(b), nil }
func (s *sinkGC) OutboundBuffered() int                       { return 0 }
func (s *sinkGC) Wake(gnet.AsyncCallback) error               { return nil }
func (s *sinkGC) Close() error                                { return nil }
func (s *sinkGC) Next(int) ([]byte, error)                    { return nil, nil }
func (s *sinkGC) EventLoop() gnet.EventLoop                   { return nil }
func (s *sinkGC) SetContext(any)                              {}
func (s *sinkGC) Context() any                                { return nil }
func (s *sinkGC) AsyncWrite([]byte, gnet.AsyncCallback) error { return nil }

// streamLoop is testLoop's loop with the next hop reached over TCP: its
// connection to the next hop and a client's connection are in place,
// both writing into sinks, and a goroutine drains the UDP next hop.
type streamRig struct {
	l          *loop
	client, nh *conn
	cgc, ngc   *sinkGC
	src        netip.AddrPort
}

func newStreamRig(tb testing.TB, d hsm.Dispatcher, tr Transport) *streamRig {
	tb.Helper()
	l, _ := benchLoopWith(tb, d)
	s := l.s
	s.cfg.NextHopTransport = TCP
	r := &streamRig{l: l, cgc: &sinkGC{}, ngc: &sinkGC{}, src: netip.MustParseAddrPort("198.18.1.2:5060")}
	r.nh = &conn{s: s, tr: TCP, peer: s.cfg.NextHop, out: true, gc: r.ngc}
	r.nh.home.Store(l)
	r.client = &conn{s: s, tr: tr, peer: r.src, gc: r.cgc}
	r.client.home.Store(l)
	if tr == TLS {
		r.client.home.Store(nil)
		r.client.gc, r.client.kick = nil, make(chan struct{}, 1)
	}
	for _, c := range []*conn{r.nh, r.client} {
		c.fr.pool = s.bufs
		c.state.Store(uint32(connOpen))
		if err := s.conns.add(c); err != nil {
			tb.Fatal(err)
		}
	}
	l.peers[peerKey{s.cfg.NextHop, TCP}] = r.nh
	return r
}

// drainTLS takes what a TLS connection's writer would write.
func (r *streamRig) drainTLS() int {
	c := r.client
	c.mu.Lock()
	pb, b := c.ppb, c.pend
	c.ppb, c.pend = nil, nil
	c.mu.Unlock()
	r.l.s.bufs.giveBack(pb, b)
	select {
	case <-c.kick:
	default:
	}
	return len(b)
}

// traffic is one round of a proxied call over streams: two INVITEs from
// the client, the second one cut across two reads, and the next hop's
// 200 OK to the first, routed back on the client's connection.
func (r *streamRig) traffic(tb testing.TB) (in [2][]byte, resp []byte) {
	a := viaTCP(invite(r.src, "s1", "Date: "+benchDate+"\r\n"))
	b := viaTCP(invite(r.src, "s2", "Date: "+benchDate+"\r\n"))
	stream := append(append([]byte{}, a...), b...)
	cut := len(a) + len(b)/2
	in = [2][]byte{stream[:cut], stream[cut:]}
	// Our Via as the first INVITE left with it.
	r.l.readStream(r.client, a)
	out := r.l.s.viaPrefix[TCP]
	v := append(append([]byte{}, out...), "z9hG4bKsl0123456789abcdef"...)
	v = appendConnID(v, r.client.id)
	resp = []byte("SIP/2.0 200 OK\r\n" + string(v) + "\r\nVia: SIP/2.0/TCP 198.18.1.2:5060;branch=z9hG4bK-s1;rport=5060;received=198.18.1.2\r\n" +
		"From: <sip:+12155550100@198.18.1.2>;tag=abcs1\r\nTo: <sip:+12155550123@198.18.2.2>;tag=srv\r\n" +
		"Call-ID: s1@198.18.1.2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	r.l.flush()
	return in, resp
}

func (r *streamRig) round(in [2][]byte, resp []byte) {
	r.l.readStream(r.client, in[0])
	r.l.readStream(r.client, in[1])
	r.l.flush()
	r.l.readStream(r.nh, resp)
	r.l.flush()
	if r.client.tr == TLS {
		r.drainTLS()
	}
}

// Framing, parse, decision, signing on the loop, stamping and the corked
// writes of a TCP (and a TLS-style) connection allocate nothing per
// message, a message cut across reads included.
func TestAllocsPerStreamMessage(t *testing.T) {
	for _, tr := range []Transport{TCP, TLS} {
		r := newStreamRig(t, fixedSig{}, tr)
		in, resp := r.traffic(t)
		for range 100 {
			r.round(in, resp)
		}
		signed, resps, nh, cl := mSignedA.Get(), mResponses.Get(), r.ngc.n, r.cgc.writes
		if n := testing.AllocsPerRun(2000, func() { r.round(in, resp) }); n != 0 && !raceEnabled {
			t.Errorf("%s: %.2f allocations per round (2 INVITEs, 1 response), want 0", tr, n)
		}
		if got := mSignedA.Get() - signed; got != 2*2001 {
			t.Errorf("%s: %d calls signed, want %d", tr, got, 2*2001)
		}
		if got := mResponses.Get() - resps; got != 2001 {
			t.Errorf("%s: %d responses routed, want 2001", tr, got)
		}
		if r.ngc.n == nh {
			t.Errorf("%s: nothing written to the next hop", tr)
		}
		if tr == TCP && r.cgc.writes-cl != 2001 {
			t.Errorf("tcp: %d writes to the client, want one per burst (2001)", r.cgc.writes-cl)
		}
	}
}

// BenchmarkStreamRound is TestAllocsPerStreamMessage's round (two INVITEs
// signed on the loop, one response routed back) on a TCP connection: the
// framing, parse, sign and stamp work of SIP over TCP without the
// sockets. ns/op is per message; compare BenchmarkLoopInviteStamp.
func BenchmarkStreamRound(b *testing.B) {
	for _, c := range []struct {
		name string
		d    func(testing.TB) hsm.Dispatcher
	}{{"FixedSig", func(testing.TB) hsm.Dispatcher { return fixedSig{} }}, {"Chain", softChain}} {
		b.Run(c.name, func(b *testing.B) {
			d := c.d(b)
			if c.name == "Chain" {
				waitWarm(b, d)
				time.Sleep(100 * time.Millisecond)
			}
			r := newStreamRig(b, d, TCP)
			in, resp := r.traffic(b)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 3 {
				r.round(in, resp)
			}
		})
	}
}
