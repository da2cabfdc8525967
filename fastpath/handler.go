package fastpath

import (
	"net"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
)

type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.s.eng = eng
	close(h.s.booted)
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
	pkt, _ := c.Next(-1)
	ua, ok := c.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return gnet.None
	}
	// A dual-stack socket reports IPv4 peers v4-mapped; policy prefixes,
	// the next-hop comparison and received= all want the plain address.
	ap := ua.AddrPort()
	h.s.loopFor(c.Fd()).drainSocket(pkt, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	return gnet.None
}
