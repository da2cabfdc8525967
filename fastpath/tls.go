package fastpath

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"time"
)

// SIP over TLS (RFC 3261 section 26.2, RFC 5630) runs on goroutines of its
// own with crypto/tls: gnet's event loops hand a connection's bytes to a
// callback that must not block, whereas crypto/tls reads and writes
// records, handshakes included, through a blocking net.Conn. Each TLS
// connection has a reader goroutine (the handshake, then reads: each read
// is framed and its messages routed exactly as a TCP connection's, on one
// of the TLS loops, loop values the reader borrows for the time of one
// read) and a writer goroutine (writes what anyone queued in the
// connection's pend). Parsing, the decision, signing, stamping and the
// metrics are the loops' own code: only the framing's input and the way a
// message leaves differ. TLS 1.2 and 1.3 only (New forces the minimum).

// tlsReadBuf is a TLS connection's read buffer: one record's plaintext.
const tlsReadBuf = 16 << 10

// acceptTLS accepts SIP over TLS on ln until it is closed.
func (s *Server) acceptTLS(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		ra, _ := nc.RemoteAddr().(*net.TCPAddr)
		if ra == nil {
			_ = nc.Close()
			continue
		}
		ap := ra.AddrPort()
		c := &conn{s: s, tr: TLS, peer: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), kick: make(chan struct{}, 1)}
		c.fr.pool = s.bufs
		c.last.Store(time.Now().UnixNano())
		if err := s.conns.add(c); err != nil {
			s.refused(c, err)
			_ = nc.Close()
			continue
		}
		mConnOpened[TLS][0].Inc()
		s.wg.Add(1)
		go s.handshakeTLS(c, nc)
	}
}

// handshakeTLS runs an inbound connection's handshake, within
// handshakeTimeout, and then the connection.
func (s *Server) handshakeTLS(c *conn, nc net.Conn) {
	defer s.wg.Done()
	tc := tls.Server(nc, s.tlsServer)
	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		_ = nc.Close()
		mTLSHandshakeErrors[0].Inc()
		if ok, n := s.limit.allow(logTLSHandshake); ok {
			s.log.Warn("fastpath: SIP over TLS handshake failed", "from", c.peer, "err", err, "suppressed_since_last", n)
		}
		c.finish(closeHandshake)
		return
	}
	s.runTLS(c, tc)
}

// runTLS runs an established TLS connection on the calling goroutine (its
// reader) and a writer goroutine, until it closes.
func (s *Server) runTLS(c *conn, tc *tls.Conn) {
	c.mu.Lock()
	c.tc = tc
	c.state.Store(uint32(connOpen))
	queued := len(c.pend) > 0
	c.mu.Unlock()
	if c.reason.Load() != 0 || s.stopped.Load() { // shut while it connected
		_ = tc.Close()
	}
	s.nextHopUp(c)
	s.wg.Add(1)
	go s.writeTLS(c, tc)
	if queued {
		c.wake(nil)
	}
	s.readTLS(c, tc)
	_ = tc.Close()
	c.finish(closePeer)
	c.wake(nil) // the writer sees the connection closed and ends
}

// readTLS reads c until it fails or closes; each read is framed and routed
// on a borrowed TLS loop.
func (s *Server) readTLS(c *conn, tc *tls.Conn) {
	buf := make([]byte, tlsReadBuf)
	for {
		n, err := tc.Read(buf)
		if n > 0 {
			l := s.borrowTLS()
			ok := l.readStream(c, buf[:n])
			l.flush()
			s.tlsLoops <- l
			if !ok {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// writeTLS writes what is queued in c's pend, each time it is woken,
// until c is closed. A write that takes longer than writeTimeout (a peer
// that does not read) closes the connection.
func (s *Server) writeTLS(c *conn, tc *tls.Conn) {
	defer s.wg.Done()
	for range c.kick {
		for {
			c.mu.Lock()
			if c.isClosed() {
				c.mu.Unlock()
				return
			}
			pb, b := c.ppb, c.pend
			c.ppb, c.pend = nil, nil
			c.mu.Unlock()
			if len(b) == 0 {
				break
			}
			c.full.Store(0)
			_ = tc.SetWriteDeadline(time.Now().Add(writeTimeout))
			_, err := tc.Write(b)
			s.bufs.giveBack(pb, b)
			if err != nil {
				mStreamDropped[dropClosed].Inc()
				c.shut(closeWriteError)
				return
			}
		}
	}
}

// borrowTLS takes one of the TLS loops (made on first use, as many as
// there are gnet loops), waiting for one to be free.
func (s *Server) borrowTLS() *loop {
	s.tlsOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for range cap(s.tlsLoops) {
			l := s.newLoop(-1, len(s.all), false)
			s.all = append(s.all, l)
			s.tlsLoops <- l
		}
	})
	return <-s.tlsLoops
}
