package fastpath

import (
	"fmt"

	"github.com/shakenline/shakenline/sip"
)

// inline handles a datagram the XDP program steered to us: the SIP message
// follows the steering metadata, which names its original addresses. An
// initial INVITE is stamped and everything leaves towards its original
// destination from its original source, unchanged but for the Identity
// header (no Via, no Max-Forwards: the appliance is a wire here).
func (l *loop) inline(pkt []byte) {
	defer func() {
		if r := recover(); r != nil {
			mPanics.Inc()
			if ok, n := l.s.limit.allow(logInternalError); ok {
				l.s.log.Warn("fastpath: recovered from a panic while handling a datagram; it was dropped", "panic", fmt.Sprint(r), "suppressed_since_last", n)
			}
		}
	}()
	mPackets.Inc()
	payload, flow, ok := l.s.cfg.Steering.DecodeMeta(pkt)
	if !ok {
		mBadMeta.Inc()
		return
	}
	l.flow = flow
	m := &l.msg
	if err := m.Parse(payload); err != nil {
		mMalformedReq.Inc()
		mUnsignedBad.Inc()
		l.reinject(payload)
		if ok, n := l.s.limit.allow(logMalformedRequest); ok {
			l.s.log.Warn("fastpath: malformed SIP request passed on unsigned", "from", flow.Src, "err", err, "suppressed_since_last", n)
		}
		return
	}
	if m.IsRequest && m.Method == sip.MethodInvite && m.To.Tag.Empty() {
		mInvites.Inc()
		if l.sign(payload, flow.Src, flow.Dst) {
			return
		}
	}
	mForwarded.Inc()
	l.reinject(payload)
}

// reinject sends b from the loop goroutine with l.flow's original addresses.
func (l *loop) reinject(b []byte) {
	if err := l.s.cfg.Reinjector.Send(l.flow, b); err != nil {
		mSendErrors.Inc()
		if ok, n := l.s.limit.allow(logReinject); ok {
			l.s.log.Warn("fastpath: reinjection failed", "err", err, "suppressed_since_last", n)
		}
		return
	}
	mSent.Inc()
}
