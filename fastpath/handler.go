package fastpath

import (
	"net"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.s
	s.eng = eng
	// A loop whose first traffic is a TCP connection sends its UDP
	// datagrams through this copy of one of the SIP address's UDP
	// sockets until its own UDP socket is known (loopFor).
	if fd, err := eng.DupListener("udp", s.udpHost); err == nil {
		s.udpOut = fd
		if sa, err := unix.Getsockname(fd); err == nil {
			_, s.udpOutV6 = sa.(*unix.SockaddrInet6)
		}
	}
	close(s.booted)
	return gnet.None
}

// OnOpen admits an inbound TCP connection, or takes one of ours that has
// connected (stream.go).
func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) { return nil, h.s.openTCP(c) }

// OnClose ends a TCP connection (stream.go).
func (h *handler) OnClose(c gnet.Conn, _ error) gnet.Action {
	h.s.closeTCP(c)
	return gnet.None
}

// heartbeatEvery keeps the XDP program's view of the loops fresh; it fails
// open after bpf.DefaultStaleAfter without one.
const heartbeatEvery = 100 * time.Millisecond

// OnTick runs on one event loop: a heartbeat that stops when the loops stop.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	if st := h.s.cfg.Steering; st != nil {
		if err := st.Heartbeat(); err != nil {
			if ok, n := h.s.limit.allow(logHeartbeat); ok {
				h.s.log.Warn("fastpath: XDP heartbeat failed; INVITEs pass unsigned until it succeeds", "err", err, "suppressed_since_last", n)
			}
		}
	}
	return heartbeatEvery, gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	if cc, ok := c.Context().(*conn); ok { // a TCP connection
		return cc.home.Load().trafficTCP(cc, c)
	}
	pkt, _ := c.Next(-1)
	ua, ok := c.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return gnet.None
	}
	// A dual-stack socket reports IPv4 peers v4-mapped; policy prefixes,
	// the next-hop comparison and received= all want the plain address.
	ap := ua.AddrPort()
	h.s.loopFor(c.Fd(), c.EventLoop()).drainSocket(pkt, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	return gnet.None
}
