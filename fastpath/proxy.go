package fastpath

import (
	"net/netip"

	"github.com/shakenline/shakenline/sip"
)

// proxyEgress is proxy mode: a stateless proxy (RFC 3261 section 16.11).
// Requests leave with our Via on top and Max-Forwards decremented (483 at
// zero), towards the next hop (or, from the next hop or without one, by
// the Request-URI); responses are routed back by the Via under ours; a
// request that does not parse is forwarded as it came.
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
	if l.s.cfg.NextHop.IsValid() {
		l.queue(append(l.outBuf(len(pkt)), pkt...), l.s.cfg.NextHop)
	} else {
		mUnroutable.Inc()
	}
	if ok, n := l.s.limit.allow(logMalformedRequest); ok {
		l.s.log.Warn("fastpath: malformed SIP request forwarded unsigned", "from", src, "err", err, "suppressed_since_last", n)
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
	dst, ok := viaTarget(pkt, &m.Via2)
	if !ok {
		mUnroutable.Inc()
		return
	}
	mResponses.Inc()
	l.queue(stampResponse(l.outBuf(len(pkt)), pkt, m, l.sc), dst)
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
	dst := l.s.cfg.NextHop
	if !dst.IsValid() || src == dst {
		var ok bool
		if dst, ok = requestURITarget(pkt, m); !ok || dst == l.s.advertise {
			mUnroutable.Inc()
			return
		}
	}
	if m.Method == sip.MethodInvite && m.To.Tag.Empty() {
		mInvites.Inc()
		if l.handleInvite(pkt, src, dst) {
			return
		}
	}
	mForwarded.Inc()
	l.queue(l.s.stampRequest(l.outBuf(len(pkt)), pkt, m, src, nil, l.sc), dst)
}

func (proxyEgress) sendSigned(l *loop, j *job, pkt []byte, m *sip.Message) {
	sendSignedOnSocket(l, j, pkt, m)
}

// stampCall: the INVITE with our Via, its Identity (or P-Identity-Bypass)
// and its Date edit.
func (proxyEgress) stampCall(j *job, dst, pkt []byte, m *sip.Message, _ bool, date *edit) []byte {
	mForwarded.Inc()
	return j.l.s.stampRequestEdit(dst, pkt, m, j.src, j.hdr, j.sc, nil, date)
}

func (proxyEgress) bypass(l *loop, pkt []byte, src, dst netip.AddrPort, hdr []byte) {
	mForwarded.Inc()
	l.queue(l.s.stampRequest(l.outBuf(len(pkt)+len(hdr)), pkt, &l.msg, src, hdr, l.sc), dst)
}

func (proxyEgress) forwardUnverified(l *loop, pkt []byte, src, dst netip.AddrPort) bool {
	ann := l.unverified(pkt)
	mForwarded.Inc()
	l.queue(l.s.stampRequestEdit(l.outBuf(len(pkt)), pkt, &l.msg, src, nil, l.sc, &ann, nil), dst)
	return true
}

func (proxyEgress) stampVerified(j *job, ann *annotation) {
	j.out = j.l.s.stampRequestEdit(j.out[:0], j.pkt, &j.msg, j.src, nil, j.sc, ann, nil)
	mForwarded.Inc()
}

func (proxyEgress) sendJob(tx *batch, j *job) bool { return sendJobOnSocket(tx, j) }
