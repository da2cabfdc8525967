package fastpath

import (
	"net/netip"

	"github.com/shakenline/shakenline/sip"
)

// proxyEgress is proxy mode: a stateless proxy (RFC 3261 section 16.11).
// Requests leave with our Via on top and Max-Forwards decremented (483 at
// zero), towards the next hop over its transport (or, from the next hop or
// without one, by the Request-URI and the transport it names); responses
// are routed back by the Via under ours, on the connection their request
// came on when it came on one (our Via's ;i=); a request that does not
// parse is forwarded as it came.
type proxyEgress struct{}

func (e proxyEgress) route(l *loop, pkt []byte, src netip.AddrPort) {
	m := &l.msg
	if err := m.Parse(pkt); err != nil {
		e.forwardMalformed(l, pkt, src, err)
		return
	}
	if !m.IsRequest {
		e.routeResponse(l, pkt)
		return
	}
	e.routeRequest(l, pkt, src)
}

// forwardMalformed forwards a request that does not parse as it is, to the
// next hop: its Via still routes the responses straight to the sender.
func (proxyEgress) forwardMalformed(l *loop, pkt []byte, src netip.AddrPort, err error) {
	if l.dropMalformedResponse(pkt, src, err) {
		return
	}
	mMalformedReq.Inc()
	mUnsignedBad.Inc()
	if nh := l.s.cfg.NextHop; nh.IsValid() {
		l.send(append(l.outBuf(len(pkt)), pkt...), target{addr: nh, tr: l.s.cfg.NextHopTransport})
	} else {
		mUnroutable.Inc()
	}
	if ok, n := l.s.limit.allow(logMalformedRequest); ok {
		l.s.log.Warn("fastpath: malformed SIP request forwarded unsigned", "from", src, "transport", l.in.tr.String(), "err", err, "suppressed_since_last", n)
	}
}

// routeResponse sends a response to one of our requests on to where the
// Via under ours points, ours removed; any other response is dropped.
func (proxyEgress) routeResponse(l *loop, pkt []byte) {
	m := &l.msg
	if !l.s.isOurVia(pkt, m) {
		mNotOurVia.Inc()
		return
	}
	// The Via under ours, parsed with the rest of the message, is where
	// the response goes once ours is removed.
	if m.Via2.Value.Empty() {
		mUnroutable.Inc()
		return
	}
	t, ok := l.s.responseTarget(pkt, m)
	if !ok {
		mUnroutable.Inc()
		return
	}
	mResponses.Inc()
	l.send(stampResponse(l.outBuf(len(pkt)), pkt, m, l.sc), t)
}

// responseTarget is where a response goes once our Via is removed (RFC
// 3261 section 18.2.2): on the connection its request came on while that
// is open (our Via's ;i=); else by the Via under ours: over UDP to its
// received and rport (RFC 3581), over a stream to its received (or host)
// and the port of its sent-by (5060, 5061 for TLS, by default), on a
// connection of ours.
func (s *Server) responseTarget(pkt []byte, m *sip.Message) (target, bool) {
	if id := viaConnID(m.Via.Value.In(pkt)); id != 0 {
		if c := s.conns.get(id); c != nil && !c.isClosed() {
			return target{addr: c.peer, tr: c.tr, conn: c}, true
		}
	}
	v := &m.Via2
	tr := viaTransport(pkt, v)
	if !tr.stream() {
		dst, ok := viaTarget(pkt, v)
		return target{addr: dst}, ok
	}
	host := v.Received.In(pkt)
	if len(host) == 0 {
		host = v.Host.In(pkt)
	}
	a, ok := parseIP(host)
	if !ok {
		return target{}, false
	}
	port := uint16(v.Port)
	if port == 0 {
		port = 5060
		if tr == TLS {
			port = 5061
		}
	}
	return target{addr: netip.AddrPortFrom(a, port), tr: tr}, true
}

// routeRequest forwards a request to the next hop, or, from the next hop or
// without one, by its Request-URI (RFC 3261 section 16.5; IP literal hosts
// only); an initial INVITE goes through handleInvite first.
func (proxyEgress) routeRequest(l *loop, pkt []byte, src netip.AddrPort) {
	m := &l.msg
	if m.MaxForwards == 0 {
		mTooManyHops.Inc()
		if m.Method != sip.MethodAck {
			l.reply(pkt, src, 483, "Too Many Hops")
		}
		return
	}
	dst, tr := l.s.cfg.NextHop, l.s.cfg.NextHopTransport
	if !dst.IsValid() || l.fromNextHop(pkt, src) {
		var ok bool
		if dst, ok = requestURITarget(pkt, m); !ok || dst == l.s.advertise {
			mUnroutable.Inc()
			return
		}
		tr = uriTransport(m.RequestURI.In(pkt))
	}
	if !l.resolve(dst, tr, len(pkt)) {
		// The connection to dst failed and waits out its backoff: the
		// caller learns at once (RFC 3261 section 16.9), rather than
		// after its transaction times out.
		if m.Method != sip.MethodAck {
			l.reply(pkt, src, 503, "Service Unavailable", reasonUnreachable)
		}
		return
	}
	if m.Method == sip.MethodInvite && m.To.Tag.Empty() {
		mInvitesBy[l.in.tr].Inc()
		if l.handleInvite(pkt, src, dst) {
			return
		}
	}
	mForwarded.Inc()
	l.sc.hop(l.to, l.in)
	l.sendRequest(l.s.stampRequest(l.outBuf(len(pkt)), pkt, m, src, nil, l.sc), l.to)
}

var reasonUnreachable = []byte("Reason: SIP;cause=503;text=\"next hop unreachable\"\r\n")

// fromNextHop reports whether the request in hand came from the next hop
// (it is then routed by its Request-URI): from the next hop's address and
// port; or on a connection we opened to it; or on a connection from its
// address whose top Via names it (a connection's source port is not the
// peer's listening port, and a client may share the next hop's address:
// an SBC on both sides of the appliance).
func (l *loop) fromNextHop(pkt []byte, src netip.AddrPort) bool {
	nh := l.s.cfg.NextHop
	if !nh.IsValid() {
		return false
	}
	if src == nh {
		return true
	}
	c := l.in.conn
	if c == nil || src.Addr() != nh.Addr() {
		return false
	}
	if c.out {
		return c.peer == nh
	}
	v := &l.msg.Via
	a, ok := parseIP(v.Host.In(pkt))
	port := uint16(v.Port)
	if port == 0 {
		port = 5060
		if c.tr == TLS {
			port = 5061
		}
	}
	return ok && netip.AddrPortFrom(a.Unmap(), port) == nh
}

// resolve sets l.to, where the request in hand goes: dst over tr, and the
// loop's connection to it for a stream (opened now if need be). A UDP
// request that may pass udp_mtu once stamped (its Via and an Identity
// header add about a kilobyte) also gets the TCP connection it would move
// to, for a signer's sender, which cannot open one. It reports false when
// dst cannot be reached now.
func (l *loop) resolve(dst netip.AddrPort, tr Transport, n int) bool {
	l.to = target{addr: dst, tr: tr}
	switch {
	case tr.stream():
		if l.to.conn = l.peer(dst, tr); l.to.conn == nil {
			mUnreachable.Inc()
			return false
		}
	case l.s.cfg.UDPMTU > 0 && n+stampGrowth > l.s.cfg.UDPMTU:
		l.to.alt = l.peer(dst, TCP)
	}
	return true
}

// stampGrowth is what signing adds to a request at most, about: our Via
// (with ;i=), received and rport, an Identity header and a Date.
const stampGrowth = 1280

func (proxyEgress) sendSigned(l *loop, j *job, pkt []byte, m *sip.Message) {
	l.sendRequest(j.stamp(l.outBuf(len(pkt)), pkt, m, &j.req), j.to)
}

// stampCall: the INVITE with our Via, its Identity (or P-Identity-Bypass)
// and its Date edit.
func (proxyEgress) stampCall(j *job, dst, pkt []byte, m *sip.Message, _ bool, date *edit) []byte {
	mForwarded.Inc()
	j.sc.hop(j.to, j.in)
	return j.l.s.stampRequestEdit(dst, pkt, m, j.src, j.hdr, j.sc, nil, date)
}

func (proxyEgress) bypass(l *loop, pkt []byte, src, _ netip.AddrPort, hdr []byte) {
	mForwarded.Inc()
	l.sc.hop(l.to, l.in)
	l.sendRequest(l.s.stampRequest(l.outBuf(len(pkt)+len(hdr)), pkt, &l.msg, src, hdr, l.sc), l.to)
}

func (proxyEgress) forwardUnverified(l *loop, pkt []byte, src, _ netip.AddrPort) bool {
	ann := l.unverified(pkt)
	mForwarded.Inc()
	l.sc.hop(l.to, l.in)
	l.sendRequest(l.s.stampRequestEdit(l.outBuf(len(pkt)), pkt, &l.msg, src, nil, l.sc, &ann, nil), l.to)
	return true
}

func (proxyEgress) stampVerified(j *job, ann *annotation) {
	j.sc.hop(j.to, j.in)
	j.out = j.l.s.stampRequestEdit(j.out[:0], j.pkt, &j.msg, j.src, nil, j.sc, ann, nil)
	mForwarded.Inc()
}

func (proxyEgress) sendJob(tx *batch, j *job) bool { return sendJobOut(tx, j) }
