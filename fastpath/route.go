package fastpath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/shakenline/shakenline/sip"
)

func (l *loop) dispatch(pkt []byte, src netip.AddrPort) {
	if l.s.cfg.Mode == Inline {
		l.inline(pkt)
		return
	}
	l.process(pkt, src)
}

// process handles one datagram from src: what it sends is queued in the
// loop's batch (see queue) until the caller flushes. pkt is only valid
// during the call.
func (l *loop) process(pkt []byte, src netip.AddrPort) {
	defer func() {
		if r := recover(); r != nil {
			mPanics.Inc()
			if ok, n := l.s.limit.allow(logInternalError); ok {
				l.s.log.Warn("fastpath: recovered from a panic while handling a datagram; it was dropped", "panic", fmt.Sprint(r), "suppressed_since_last", n)
			}
		}
	}()
	mPackets.Inc()
	m := &l.msg
	if err := m.Parse(pkt); err != nil {
		l.malformed(pkt, src, err)
		return
	}
	if !m.IsRequest {
		l.response(pkt)
		return
	}
	if l.s.cfg.Mode == Redirect {
		l.redirectRequest(pkt, src)
		return
	}
	l.proxyRequest(pkt, src)
}

func (l *loop) malformed(pkt []byte, src netip.AddrPort, err error) {
	isResp := len(pkt) >= 8 && string(pkt[:8]) == "SIP/2.0 "
	if isResp {
		mMalformedResp.Inc()
		if ok, n := l.s.limit.allow(logMalformedResponse); ok {
			l.s.log.Warn("fastpath: malformed SIP response dropped", "from", src, "err", err, "suppressed_since_last", n)
		}
		return
	}
	mMalformedReq.Inc()
	switch l.s.cfg.Mode {
	case Redirect:
		// Answer 400 when the request names enough to be answered.
		m := &l.msg
		if m.IsRequest && !m.Via.Value.Empty() && !m.CallID.Empty() && !m.From.Value.Empty() && !m.To.Value.Empty() {
			l.reply(pkt, src, 400, "Bad Request", l.s.reasonHeader(err))
		}
		if ok, n := l.s.limit.allow(logMalformedRequest); ok {
			l.s.log.Warn("fastpath: malformed SIP request answered 400 where possible", "from", src, "err", err, "suppressed_since_last", n)
		}
	default:
		// A stateless proxy that cannot parse a request forwards it as it
		// is: its Via still routes the responses straight to the sender.
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
}

// reasonHeader is a Warning-free explanation for a 400 (no per-packet
// formatting: the text is the sentinel's).
func (s *Server) reasonHeader(err error) []byte {
	switch {
	case errors.Is(err, sip.ErrTooLarge):
		return []byte("Reason: SIP;cause=400;text=\"message too large\"\r\n")
	case errors.Is(err, sip.ErrTruncated):
		return []byte("Reason: SIP;cause=400;text=\"truncated message\"\r\n")
	}
	return []byte("Reason: SIP;cause=400;text=\"malformed message\"\r\n")
}

func (l *loop) response(pkt []byte) {
	m := &l.msg
	if l.s.cfg.Mode != Proxy || !l.s.isOurVia(pkt, m) {
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

func (l *loop) proxyRequest(pkt []byte, src netip.AddrPort) {
	m := &l.msg
	if m.MaxForwards == 0 {
		mTooManyHops.Inc()
		if m.Method != sip.MethodAck {
			l.reply(pkt, src, 483, "Too Many Hops")
		}
		return
	}
	// To the next hop; from the next hop, or without one, by the
	// Request-URI (RFC 3261 section 16.5; IP literal hosts only).
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
		if l.sign(pkt, src, dst) {
			return
		}
	}
	mForwarded.Inc()
	l.queue(l.s.stampRequest(l.outBuf(len(pkt)), pkt, m, src, nil, l.sc), dst)
}

func (l *loop) redirectRequest(pkt []byte, src netip.AddrPort) {
	m := &l.msg
	switch {
	case m.Method == sip.MethodInvite && m.To.Tag.Empty():
		mInvites.Inc()
		if !l.sign(pkt, src, src) {
			// Unsigned (no number): still redirect, so the call proceeds.
			l.reply(pkt, src, 302, "Moved Temporarily", l.contact(pkt, m))
		}
	case m.Method == sip.MethodAck:
		mAckAbsorbed.Inc()
	case m.Method == sip.MethodOptions, m.Method == sip.MethodCancel:
		l.reply(pkt, src, 200, "OK")
	default:
		l.reply(pkt, src, 405, "Method Not Allowed", []byte("Allow: INVITE, ACK, CANCEL, OPTIONS\r\n"))
	}
}

func (l *loop) contact(pkt []byte, m *sip.Message) []byte {
	b := append(l.sc.via[:0], "Contact: <"...)
	b = append(b, m.RequestURI.In(pkt)...)
	b = append(b, ">\r\n"...)
	l.sc.via = b
	return b
}

// reply sends a locally generated response to src.
func (l *loop) reply(pkt []byte, src netip.AddrPort, code int, reason string, extra ...[]byte) {
	mLocalReplies.Inc()
	n := len(pkt)
	for _, x := range extra {
		n += len(x)
	}
	l.queue(appendResponse(l.outBuf(n), pkt, &l.msg, code, reason, extra...), src)
}
