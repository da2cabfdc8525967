package fastpath

import (
	"net/netip"

	"github.com/shakenline/shakenline/sip"
)

// inlineEgress is inline mode: the XDP program in package bpf steers SIP
// datagrams to the loops, the steering metadata ahead of each naming its
// original addresses. An initial INVITE is stamped, and everything leaves
// towards its original destination from its original source, unchanged
// but for the Identity header (no Via, no Max-Forwards: the appliance is a
// wire here), including what does not parse.
type inlineEgress struct{}

// route decodes the steering metadata (a datagram without is dropped,
// counted) and passes the message on; the source the socket reports is
// the steering program's, not the caller's.
func (inlineEgress) route(l *loop, pkt []byte, _ netip.AddrPort) {
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
		mInvitesBy[UDP].Inc()
		if l.handleInvite(payload, flow.Src, flow.Dst) {
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

// sendSigned reinjects the stamped call at once, from the loop's own
// buffer (a reinjection is one sendmsg(2) per original source: nothing to
// batch).
func (inlineEgress) sendSigned(l *loop, j *job, pkt []byte, m *sip.Message) {
	l.out = j.stamp(l.out[:0], pkt, m, &j.req)
	l.reinject(l.out)
}

// stampCall: the INVITE as it came with its Identity (or
// P-Identity-Bypass) header last and its Date edit.
func (inlineEgress) stampCall(j *job, dst, pkt []byte, m *sip.Message, _ bool, date *edit) []byte {
	mForwarded.Inc()
	return stampInline(dst, pkt, m, j.hdr, date, j.sc)
}

func (inlineEgress) bypass(l *loop, pkt []byte, _, _ netip.AddrPort, hdr []byte) {
	mForwarded.Inc()
	l.out = stampInline(l.out[:0], pkt, &l.msg, hdr, nil, l.sc)
	l.reinject(l.out)
}

func (inlineEgress) forwardUnverified(l *loop, pkt []byte, _, _ netip.AddrPort) bool {
	ann := l.unverified(pkt)
	mForwarded.Inc()
	l.sc.ed.n = 0
	ann.addTo(&l.sc.ed)
	l.out = l.sc.ed.apply(l.out[:0], pkt)
	l.reinject(l.out)
	return true
}

func (inlineEgress) stampVerified(j *job, ann *annotation) {
	j.sc.ed.n = 0
	ann.addTo(&j.sc.ed)
	j.out = j.sc.ed.apply(j.out[:0], j.pkt)
	mForwarded.Inc()
}

// sendJob reinjects the job's datagram with its original addresses (its
// own sendmsg(2): one socket per original source).
func (inlineEgress) sendJob(_ *batch, j *job) bool {
	if err := j.l.s.cfg.Reinjector.Send(j.flow, j.out); err != nil {
		mSendErrors.Inc()
	} else {
		mSent.Inc()
	}
	return true
}
