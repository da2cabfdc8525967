package fastpath

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/shakenline/shakenline/sip"
)

// egress is what one mode does with the messages a loop receives and the
// calls it decides: how a request, a response and a malformed message are
// routed, and how a signed, bypassed, unverified or verified call leaves.
// New chooses it once, from Config.Mode (proxy.go, redirect.go,
// inline.go); the loops, the signers' callbacks, the verifiers and the
// senders call it and never test the mode. The implementations are empty
// structs: a call through the interface allocates nothing.
type egress interface {
	// route takes one datagram from src to its outcome (pkt is valid only
	// during the call): forwarded, answered, handed to handleInvite, or
	// dropped, counted.
	route(l *loop, pkt []byte, src netip.AddrPort)
	// sendSigned sends, from the loop, the call in the loop's workspace
	// job j that a signer answered at once (pkt and m are the datagram in
	// hand and its parse).
	sendSigned(l *loop, j *job, pkt []byte, m *sip.Message)
	// stampCall appends to dst the message that carries call j once its
	// signer has answered: signed (j.hdr the Identity header, date the
	// Date edit or nil) or not (j.hdr the P-Identity-Bypass header).
	stampCall(j *job, dst, pkt []byte, m *sip.Message, signed bool, date *edit) []byte
	// bypass sends the call in pkt at once, unsigned, with hdr (a
	// P-Identity-Bypass header line).
	bypass(l *loop, pkt []byte, src, dst netip.AddrPort, hdr []byte)
	// forwardUnverified sends at once a call the policy gives to
	// verification that cannot be verified now, annotated
	// No-TN-Validation. It reports false when the caller is to handle the
	// call as unsigned instead (a 302 carries no verification result).
	forwardUnverified(l *loop, pkt []byte, src, dst netip.AddrPort) bool
	// stampVerified builds in j.out the verified call annotated with ann
	// (its verstat), for the loop's sender.
	stampVerified(j *job, ann *annotation)
	// sendJob sends a finished job from the loop's sender goroutine, or
	// queues it in tx (flushed by the sender). It reports false when the
	// job's destination cannot be reached from the loop's socket.
	sendJob(tx *batch, j *job) bool
}

// routeDatagram takes one datagram from src through the mode's egress:
// what it sends is queued in the loop's batch (see queue) until the caller
// flushes. pkt is only valid during the call.
func (l *loop) routeDatagram(pkt []byte, src netip.AddrPort) {
	l.routeMessage(pkt, src, ingress{})
}

// routeMessage takes one message from src, which came as in says (a
// datagram, or a message framed on a connection), through the mode's
// egress. pkt is only valid during the call. A panic drops the message,
// counted and logged, and never the loop.
func (l *loop) routeMessage(pkt []byte, src netip.AddrPort, in ingress) {
	defer func() {
		if r := recover(); r != nil {
			mPanics.Inc()
			if ok, n := l.s.limit.allow(logInternalError); ok {
				l.s.log.Warn("fastpath: recovered from a panic while handling a message; it was dropped", "panic", fmt.Sprint(r), "suppressed_since_last", n)
			}
		}
	}()
	l.in = in
	mPacketsBy[in.tr].Inc()
	l.eg.route(l, pkt, src)
}

// back is where an answer to the message in hand goes: to src, on the
// connection the message came on when it came on one (RFC 3261 section
// 18.2.2).
func (l *loop) back(src netip.AddrPort) target {
	return target{addr: src, tr: l.in.tr, conn: l.in.conn}
}

// send sends b (built in outBuf) to t: a datagram queued in the loop's
// batch, or a message on t's connection (or the loop's connection to t's
// address). It reports false, counted, when a stream message cannot go.
func (l *loop) send(b []byte, t target) bool {
	if t.tr == UDP {
		l.queue(b, t.addr)
		return true
	}
	c := t.conn
	if c == nil {
		if c = l.peer(t.addr, t.tr); c == nil {
			mUnreachable.Inc()
			return false
		}
	}
	return c.send(l, b)
}

// sendRequest sends a request this proxy stamped (our Via first) to t,
// over TCP instead of UDP when it is larger than udp_mtu (RFC 3261 section
// 18.1.1), its Via saying so.
func (l *loop) sendRequest(b []byte, t target) {
	if t.tr == UDP && l.s.cfg.UDPMTU > 0 && len(b) > l.s.cfg.UDPMTU {
		alt := t.alt
		if alt == nil {
			alt = l.peer(t.addr, TCP)
		}
		if alt != nil && switchVia(b, TCP) {
			mMTUSwitched.Inc()
			alt.send(l, b)
			return
		}
	}
	l.send(b, t)
}

// sendJobOut sends a finished job from the loop's sender (proxy and
// redirect modes): a datagram queued in tx, or a message on its
// connection; a request over udp_mtu goes on the TCP connection the
// router opened for it (target.alt).
func sendJobOut(tx *batch, j *job) bool {
	t := j.to
	if t.tr == UDP {
		if mtu := j.l.s.cfg.UDPMTU; mtu > 0 && !bytes.HasPrefix(j.out, []byte("SIP/2.0 ")) && len(j.out) > mtu && t.alt != nil && switchVia(j.out, TCP) {
			mMTUSwitched.Inc()
			t.alt.send(nil, j.out)
			return true
		}
		return tx.add(j.out, t.addr)
	}
	if t.conn == nil {
		return false
	}
	t.conn.send(nil, j.out)
	return true
}

// switchVia changes the transport of our Via, the first header of the
// request b, to tr (the tokens have one length). It reports false when
// the first header is not our Via.
func switchVia(b []byte, tr Transport) bool {
	i := bytes.IndexByte(b, '\n') + 1
	const p = "Via: SIP/2.0/"
	if i <= 0 || len(b) < i+len(p)+3 || string(b[i:i+len(p)]) != p {
		return false
	}
	copy(b[i+len(p):], viaTokens[tr])
	return true
}

// dropMalformedResponse counts, logs (at most once a minute) and drops a
// datagram that did not parse when it looks like a response, and reports
// whether it did: a response that cannot be parsed cannot be routed.
func (l *loop) dropMalformedResponse(pkt []byte, src netip.AddrPort, err error) bool {
	if len(pkt) < 8 || string(pkt[:8]) != "SIP/2.0 " {
		return false
	}
	mMalformedResp.Inc()
	if ok, n := l.s.limit.allow(logMalformedResponse); ok {
		l.s.log.Warn("fastpath: malformed SIP response dropped", "from", src, "err", err, "suppressed_since_last", n)
	}
	return true
}
