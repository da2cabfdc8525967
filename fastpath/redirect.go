package fastpath

import (
	"errors"
	"net/netip"

	"github.com/shakenline/shakenline/sip"
)

// redirectEgress is redirect mode: every initial INVITE is answered with
// 302 Moved Temporarily (on the transport, and the connection, the INVITE
// came on), Contact its Request-URI, carrying the Identity
// header and a Date equal to the iat (the SBC copies both into its own
// INVITE; docs/ARCHITECTURE.md, redirect mode); ACK is absorbed, OPTIONS
// and CANCEL are answered 200, other methods 405; responses are dropped; a
// request that does not parse is answered 400 when it names enough to be
// answered. A 302 carries no verification result: New starts no
// verification in this mode.
type redirectEgress struct{}

func (e redirectEgress) route(l *loop, pkt []byte, src netip.AddrPort) {
	m := &l.msg
	if err := m.Parse(pkt); err != nil {
		e.answerMalformed(l, pkt, src, err)
		return
	}
	if !m.IsRequest {
		mNotOurVia.Inc() // we send no requests: no response is for us
		return
	}
	e.answerRequest(l, pkt, src)
}

// answerMalformed answers 400 to a request that does not parse when it
// names enough to be answered.
func (redirectEgress) answerMalformed(l *loop, pkt []byte, src netip.AddrPort, err error) {
	if l.dropMalformedResponse(pkt, src, err) {
		return
	}
	mMalformedReq.Inc()
	m := &l.msg
	if m.IsRequest && !m.Via.Value.Empty() && !m.CallID.Empty() && !m.From.Value.Empty() && !m.To.Value.Empty() {
		l.reply(pkt, src, 400, "Bad Request", reasonHeader(err))
	}
	if ok, n := l.s.limit.allow(logMalformedRequest); ok {
		l.s.log.Warn("fastpath: malformed SIP request answered 400 where possible", "from", src, "err", err, "suppressed_since_last", n)
	}
}

// reasonHeader is a Warning-free explanation for a 400 (no per-packet
// formatting: the text is the sentinel's).
func reasonHeader(err error) []byte {
	switch {
	case errors.Is(err, sip.ErrTooLarge):
		return []byte("Reason: SIP;cause=400;text=\"message too large\"\r\n")
	case errors.Is(err, sip.ErrTruncated):
		return []byte("Reason: SIP;cause=400;text=\"truncated message\"\r\n")
	}
	return []byte("Reason: SIP;cause=400;text=\"malformed message\"\r\n")
}

// answerRequest answers every request itself; an initial INVITE goes
// through handleInvite, and is redirected unsigned when that leaves it.
func (redirectEgress) answerRequest(l *loop, pkt []byte, src netip.AddrPort) {
	m := &l.msg
	switch {
	case m.Method == sip.MethodInvite && m.To.Tag.Empty():
		mInvitesBy[l.in.tr].Inc()
		// The 302 goes back the way the INVITE came.
		l.to = l.back(src)
		if !l.handleInvite(pkt, src, src) {
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

func (redirectEgress) sendSigned(l *loop, j *job, pkt []byte, m *sip.Message) {
	l.send(j.stamp(l.outBuf(len(pkt)), pkt, m, &j.req), j.to)
}

// stampCall: the 302 with its Identity header and the Date of the iat, for
// the SBC to copy with the Identity (docs/ARCHITECTURE.md, redirect mode);
// a bypassed call's 302 carries its P-Identity-Bypass header.
func (redirectEgress) stampCall(j *job, dst, pkt []byte, m *sip.Message, signed bool, _ *edit) []byte {
	mRedirects.Inc()
	if !signed {
		return appendResponse(dst, pkt, m, 302, "Moved Temporarily", j.contact(pkt, m), j.hdr)
	}
	return appendResponse(dst, pkt, m, 302, "Moved Temporarily", j.contact(pkt, m), j.dateLine, j.hdr)
}

func (redirectEgress) bypass(l *loop, pkt []byte, src, _ netip.AddrPort, hdr []byte) {
	l.reply(pkt, src, 302, "Moved Temporarily", l.contact(pkt, &l.msg), hdr)
}

// forwardUnverified reports false: the caller redirects the call as it
// came (a 302 carries no verification result).
func (redirectEgress) forwardUnverified(*loop, []byte, netip.AddrPort, netip.AddrPort) bool {
	return false
}

// stampVerified is never reached (New starts no verification in this
// mode); were it, the call would be redirected as it came, as one that
// cannot be verified is.
func (redirectEgress) stampVerified(j *job, _ *annotation) {
	mLocalReplies.Inc()
	j.out = appendResponse(j.out[:0], j.pkt, &j.msg, 302, "Moved Temporarily", j.contact(j.pkt, &j.msg))
}

func (redirectEgress) sendJob(tx *batch, j *job) bool { return sendJobOut(tx, j) }
