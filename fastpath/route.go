package fastpath

import (
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
// flushes. pkt is only valid during the call. A panic drops the datagram,
// counted and logged, and never the loop.
func (l *loop) routeDatagram(pkt []byte, src netip.AddrPort) {
	defer func() {
		if r := recover(); r != nil {
			mPanics.Inc()
			if ok, n := l.s.limit.allow(logInternalError); ok {
				l.s.log.Warn("fastpath: recovered from a panic while handling a datagram; it was dropped", "panic", fmt.Sprint(r), "suppressed_since_last", n)
			}
		}
	}()
	mPackets.Inc()
	l.eg.route(l, pkt, src)
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

// sendSignedOnSocket is sendSigned for the modes that answer or forward
// through the loop's socket (proxy, redirect): the call is stamped in the
// send arena and queued in the loop's batch.
func sendSignedOnSocket(l *loop, j *job, pkt []byte, m *sip.Message) {
	l.queue(j.stamp(l.outBuf(len(pkt)), pkt, m, &j.req), j.dst)
}

// sendJobOnSocket is sendJob for the same modes: the sender's batch.
func sendJobOnSocket(tx *batch, j *job) bool { return tx.add(j.out, j.dst) }
