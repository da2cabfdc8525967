package fastpath

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Connections we open: to the next hop when it is reached over TCP or TLS
// (or when udp_mtu moves a request to TCP), and to an address a request's
// Request-URI or a response's Via names over a stream. Each loop keeps its
// own (peers), opened on the first message for the address and reused
// after; what is sent while one connects waits in its pend. One that fails
// to connect is counted, and the address is not tried again before its
// backoff has passed (doubling from backoffMin to backoffMax); meanwhile
// requests for it are answered 503 (proxy.go).

// maxPeers bounds a loop's map of connections it opened; past it, the
// closed ones are forgotten.
const maxPeers = 1024

type peerKey struct {
	addr netip.AddrPort
	tr   Transport
}

// peer returns the loop's connection to addr over tr (TCP or TLS), opening
// one when it has none; nil when the last attempt to connect failed and
// its backoff has not passed, or no slot is free.
func (l *loop) peer(addr netip.AddrPort, tr Transport) *conn {
	k := peerKey{addr, tr}
	c := l.peers[k]
	var prev time.Duration
	if c != nil {
		if !c.isClosed() {
			return c
		}
		if at := c.retryAt.Load(); at != 0 {
			if time.Now().UnixNano() < at {
				return nil
			}
			prev = c.backoff
		}
	}
	if len(l.peers) >= maxPeers {
		for k, c := range l.peers {
			if c.isClosed() && time.Now().UnixNano() >= c.retryAt.Load() {
				delete(l.peers, k)
			}
		}
	}
	nc := l.s.connect(l, addr, tr, prev)
	if nc != nil {
		l.peers[k] = nc
	}
	return nc
}

// connect starts a connection to addr over tr for loop l: a TCP one is
// enrolled in l's gnet loop (or, from a loop gnet does not run, the
// least loaded one), a TLS one gets its reader and writer goroutines.
func (s *Server) connect(l *loop, addr netip.AddrPort, tr Transport, prev time.Duration) *conn {
	c := &conn{s: s, tr: tr, peer: addr, out: true, backoff: prev}
	c.fr.pool = s.bufs
	c.last.Store(time.Now().UnixNano())
	if tr == TLS {
		c.kick = make(chan struct{}, 1)
	}
	if err := s.conns.add(c); err != nil {
		mConnectErrors[tr].Inc()
		return nil
	}
	s.wg.Add(1)
	go s.dial(c, l.el)
	return c
}

// dial connects c (its own goroutine).
func (s *Server) dial(c *conn, el gnet.EventLoop) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.peer.String())
	if err != nil {
		s.connectFailed(c, err, closeConnect)
		return
	}
	if c.tr == TLS {
		tc := tls.Client(nc, s.clientTLS(c.peer))
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			mTLSHandshakeErrors[1].Inc()
			s.connectFailed(c, err, closeHandshake)
			return
		}
		mConnOpened[TLS][1].Inc()
		s.runTLS(c, tc)
		return
	}
	gctx := gnet.NewContext(context.Background(), c)
	var res <-chan gnet.RegisteredResult
	if el != nil {
		res, err = el.Enroll(gctx, nc)
	} else {
		res, err = s.eng.Register(gnet.NewNetConnContext(gctx, nc))
	}
	if err != nil {
		_ = nc.Close()
		s.connectFailed(c, err, closeConnect)
		return
	}
	select {
	case r := <-res:
		if r.Err != nil {
			s.connectFailed(c, r.Err, closeConnect)
		}
		// Else openTCP has run on the home loop.
	case <-s.ctx.Done():
		// Stopping: gnet may never register it (its loops have ended).
		c.finish(closeShutdown)
	}
}

// connectFailed ends an attempt that failed: the address waits out its
// backoff (set before the connection is marked closed, so that a loop
// seeing it closed sees the backoff too), the failure is counted, logged
// at most once a minute, and reported for readiness when it was the next
// hop.
func (s *Server) connectFailed(c *conn, err error, reason closeReason) {
	b := max(c.backoff*2, backoffMin)
	b = min(b, backoffMax)
	c.backoff = b
	c.retryAt.Store(time.Now().Add(b).UnixNano())
	if c.peer == s.cfg.NextHop {
		s.nh.Store(&hopStatus{err: fmt.Errorf("next hop %s over %s: %w", c.peer, c.tr, err), at: time.Now()})
	}
	if ok, n := s.limit.allow(logConnect); ok {
		s.log.Warn("fastpath: cannot connect; requests for this address get 503 until it is tried again",
			"transport", c.tr.String(), "to", c.peer, "err", err, "retry_in", b, "suppressed_since_last", n)
	}
	c.finish(reason)
	mConnectErrors[c.tr].Inc() // after finish: once counted, the address is known down
}

// nextHopUp records, for readiness, that a connection to the next hop
// opened.
func (s *Server) nextHopUp(c *conn) {
	if c.out && c.peer == s.cfg.NextHop {
		s.nh.Store(&hopStatus{at: time.Now()})
	}
}

// hopStatus is the last outcome of connecting to the next hop.
type hopStatus struct {
	err error
	at  time.Time
}

// clientTLS is the TLS client configuration for a connection to addr: its
// certificate must name the address (an IP SAN), or Config.TLSServerName
// when set.
func (s *Server) clientTLS(addr netip.AddrPort) *tls.Config {
	c := s.tlsClient.Clone()
	if c.ServerName == "" {
		c.ServerName = addr.Addr().String()
	}
	return c
}

// NextHopReady reports whether the next hop takes our connections, when
// requests reach it over TCP or TLS (its transport, or udp_mtu moving
// large requests to TCP); nil when they do not use a stream. An open
// connection to it, or a successful attempt in the last 10 s, is ready;
// else it is tried now (connect, and the TLS handshake). For /readyz.
func (s *Server) NextHopReady() error {
	nh, tr := s.cfg.NextHop, s.cfg.NextHopTransport
	if !nh.IsValid() || (tr == UDP && s.cfg.UDPMTU == 0) {
		return nil
	}
	if tr == UDP {
		tr = TCP
	}
	var open atomic.Bool
	s.conns.each(func(c *conn) {
		if c.out && c.peer == nh && c.tr == tr && c.isOpen() {
			open.Store(true)
		}
	})
	if open.Load() {
		return nil
	}
	if st := s.nh.Load(); st != nil && time.Since(st.at) < 10*time.Second {
		return st.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", nh.String())
	if err == nil && tr == TLS {
		tc := tls.Client(nc, s.clientTLS(nh))
		err = tc.HandshakeContext(ctx)
	}
	if nc != nil {
		_ = nc.Close()
	}
	if err != nil {
		mConnectErrors[tr].Inc()
		err = fmt.Errorf("next hop %s over %s: %w", nh, tr, err)
	}
	s.nh.Store(&hopStatus{err: err, at: time.Now()})
	return err
}
