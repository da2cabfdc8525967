package fastpath

import (
	"net"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// SIP over TCP on the gnet loops. Each loop listens on the SIP address for
// UDP and TCP (SO_REUSEPORT: the kernel spreads datagrams and connections
// over the loops), and a connection's socket belongs to the loop that
// accepted it (or that it was enrolled in, peer.go): its home loop reads
// it, frames it (frame.go) and writes it. What the home loop sends on it
// during one burst is gathered in one buffer (cork) and written once at the
// end of the burst (loop.flush); what other goroutines send on it waits in
// the connection's pend and the home loop is woken to write it (conn.send).

// openTCP is gnet's OnOpen: an accepted connection, admitted against the
// limits, or one of ours that has just connected (its context is the
// conn).
func (s *Server) openTCP(gc gnet.Conn) gnet.Action {
	l := s.loopFor(-1, gc.EventLoop())
	if c, ok := gc.Context().(*conn); ok {
		c.home.Store(l)
		l.nconns++
		if c.reason.Load() != 0 { // shut while it connected
			c.mu.Lock()
			c.gc = gc
			c.mu.Unlock()
			return gnet.Close
		}
		c.mu.Lock()
		c.gc = gc
		c.state.Store(uint32(connOpen))
		pb, b := c.ppb, c.pend
		c.ppb, c.pend = nil, nil
		c.mu.Unlock()
		mConnOpened[TCP][1].Inc()
		s.nextHopUp(c)
		if len(b) > 0 {
			_, _ = gc.Write(b)
		}
		s.bufs.giveBack(pb, b)
		return gnet.None
	}
	ra, _ := gc.RemoteAddr().(*net.TCPAddr)
	if ra == nil {
		return gnet.Close
	}
	ap := ra.AddrPort()
	c := &conn{s: s, tr: TCP, peer: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), gc: gc}
	c.home.Store(l)
	c.fr.pool = s.bufs
	c.last.Store(time.Now().UnixNano())
	if err := s.conns.add(c); err != nil {
		s.refused(c, err)
		return gnet.Close
	}
	c.state.Store(uint32(connOpen))
	gc.SetContext(c)
	l.nconns++
	mConnOpened[TCP][0].Inc()
	return gnet.None
}

// refused counts and logs (at most once a minute) an inbound connection
// over a limit.
func (s *Server) refused(c *conn, err error) {
	reason := "total"
	if err == errTooManyBySrc {
		reason = "per-source"
	}
	if reason == "total" {
		mConnRefusedTotal.Inc()
	} else {
		mConnRefusedSource.Inc()
	}
	if ok, n := s.limit.allow(logConnLimit); ok {
		s.log.Warn("fastpath: SIP connection refused: limit reached", "transport", c.tr.String(), "from", c.peer,
			"limit", reason, "suppressed_since_last", n)
	}
}

// closeTCP is gnet's OnClose, on the home loop.
func (s *Server) closeTCP(gc gnet.Conn) {
	c, ok := gc.Context().(*conn)
	if !ok {
		return
	}
	if l := c.home.Load(); l != nil {
		l.nconns--
	}
	// A close we asked for keeps its reason (shut); else the peer
	// closed, or the socket failed.
	c.finish(closePeer)
}

// trafficTCP is gnet's OnTraffic for a connection, on its home loop: what
// others queued for it is written, what arrived is framed and routed, and
// the burst's output leaves.
func (l *loop) trafficTCP(c *conn, gc gnet.Conn) gnet.Action {
	l.writePend(c)
	in, _ := gc.Next(-1)
	ok := true
	if len(in) > 0 {
		ok = l.readStream(c, in)
	}
	l.flush()
	if !ok {
		return gnet.Close
	}
	return gnet.None
}

// writePend writes what other goroutines queued for c (home loop).
func (l *loop) writePend(c *conn) {
	c.mu.Lock()
	if len(c.pend) == 0 {
		c.mu.Unlock()
		return
	}
	pb, b := c.ppb, c.pend
	c.ppb, c.pend = nil, nil
	c.mu.Unlock()
	l.write(c, b)
	l.s.bufs.giveBack(pb, b)
}

// cork adds b to what c's home loop writes on it at the end of the burst.
func (l *loop) cork(c *conn, b []byte) bool {
	if c.wpb == nil {
		pb := l.s.bufs.get(16 << 10)
		if pb == nil { // the budget is spent: write at once
			return l.write(c, b)
		}
		c.wpb, c.wbuf = pb, (*pb)[:0]
		l.corked = append(l.corked, c)
	}
	if len(c.wbuf)+len(b) > cap(c.wbuf) {
		l.write(c, c.wbuf)
		c.wbuf = c.wbuf[:0]
		if len(b) > cap(c.wbuf) {
			return l.write(c, b)
		}
	}
	c.wbuf = append(c.wbuf, b...)
	mSentBy[TCP].Inc()
	return true
}

// write writes b on c now (home loop); gnet keeps what the socket does
// not take and writes it when it can, up to maxBacklog (conn.overflow).
func (l *loop) write(c *conn, b []byte) bool {
	if !c.isOpen() || c.reason.Load() != 0 {
		mStreamDropped[dropClosed].Inc()
		return false
	}
	if c.gc.OutboundBuffered() > maxBacklog {
		c.overflow()
		return false
	}
	if c.full.Load() != 0 {
		c.full.Store(0)
	}
	if _, err := c.gc.Write(b); err != nil {
		mStreamDropped[dropClosed].Inc()
		return false
	}
	return true
}

// flushStreams writes what the burst corked, one write per connection.
func (l *loop) flushStreams() {
	for i, c := range l.corked {
		if len(c.wbuf) > 0 {
			l.write(c, c.wbuf)
		}
		l.s.bufs.giveBack(c.wpb, c.wbuf)
		c.wpb, c.wbuf = nil, nil
		l.corked[i] = nil
	}
	l.corked = l.corked[:0]
}

// giveBack returns a buffer lent as pb whose bytes are now b (nil pb:
// none, or b lives on the heap).
func (p *bufPool) giveBack(pb *[]byte, b []byte) {
	if pb == nil {
		return
	}
	*pb = b[:0]
	p.put(pb)
}
