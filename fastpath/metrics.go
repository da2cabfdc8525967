package fastpath

import (
	"fmt"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// Metrics are declared once, here; the hot path only increments them.
var (
	// Messages received (datagrams, or messages framed on a connection)
	// and initial INVITEs seen, by the transport they came on.
	mPacketsBy      = byTransport(`shakenline_sip_packets_total{transport="%s"}`)
	mInvitesBy      = byTransport(`shakenline_calls_seen_total{transport="%s"}`)
	mSignedA        = metrics.NewCounter(`shakenline_calls_signed_total{attest="A"}`)
	mSignedB        = metrics.NewCounter(`shakenline_calls_signed_total{attest="B"}`)
	mSignedC        = metrics.NewCounter(`shakenline_calls_signed_total{attest="C"}`)
	mSignedOnLoop   = metrics.NewCounter(`shakenline_calls_signed_on_loop_total`) // of the signed: finished on the loop (warm software pool)
	mUnsignedNoOrig = metrics.NewCounter(`shakenline_calls_unsigned_total{reason="no-orig-tn"}`)
	mUnsignedNoDest = metrics.NewCounter(`shakenline_calls_unsigned_total{reason="no-dest-tn"}`)
	mUnsignedSigned = metrics.NewCounter(`shakenline_calls_unsigned_total{reason="already-signed"}`)
	mUnsignedBad    = metrics.NewCounter(`shakenline_calls_unsigned_total{reason="malformed"}`)
	// RFC 8224 section 4.1: a Date outside the freshness window, or one
	// that does not parse, is not signed (stale_date: refuse).
	mUnsignedStale   = metrics.NewCounter(`shakenline_calls_unsigned_total{reason="stale-date"}`)
	mUnsignedBadDate = metrics.NewCounter(`shakenline_calls_unsigned_total{reason="bad-date"}`)
	// What signing did to the Date header of signed calls: added (the
	// INVITE had none, RFC 8224 section 6.1) or replaced (stale_date:
	// replace).
	mDateAdded      = metrics.NewCounter(`shakenline_calls_date_total{action="added"}`)
	mDateReplaced   = metrics.NewCounter(`shakenline_calls_date_total{action="replaced"}`)
	mBypassOverload = metrics.NewCounter(`shakenline_calls_bypassed_total{reason="overload"}`)
	mBypassTimeout  = metrics.NewCounter(`shakenline_calls_bypassed_total{reason="timeout"}`)
	mBypassDown     = metrics.NewCounter(`shakenline_calls_bypassed_total{reason="signer-down"}`)
	mBypassError    = metrics.NewCounter(`shakenline_calls_bypassed_total{reason="signer-error"}`)

	mVerifyPassed      = metrics.NewCounter(`shakenline_verifications_total{verstat="TN-Validation-Passed"}`)
	mVerifyFailed      = metrics.NewCounter(`shakenline_verifications_total{verstat="TN-Validation-Failed"}`)
	mVerifyNone        = metrics.NewCounter(`shakenline_verifications_total{verstat="No-TN-Validation"}`)
	mVerifyRejected    = metrics.NewCounter(`shakenline_verifications_rejected_total`)
	mVerifyOverload    = metrics.NewCounter(`shakenline_verifications_skipped_total{reason="overload"}`)
	mVerifyUnavailable = metrics.NewCounter(`shakenline_verifications_skipped_total{reason="no-verifier"}`)
	mUnsignedPolicy    = metrics.NewCounter(`shakenline_calls_unsigned_total{reason="policy-forward"}`)

	mForwarded     = metrics.NewCounter(`shakenline_sip_forwarded_total{kind="request"}`)
	mResponses     = metrics.NewCounter(`shakenline_sip_forwarded_total{kind="response"}`)
	mRedirects     = metrics.NewCounter(`shakenline_sip_redirects_total`)
	mLocalReplies  = metrics.NewCounter(`shakenline_sip_local_responses_total`)
	mMalformedReq  = metrics.NewCounter(`shakenline_sip_malformed_total{kind="request"}`)
	mMalformedResp = metrics.NewCounter(`shakenline_sip_malformed_total{kind="response"}`)
	mTooManyHops   = metrics.NewCounter(`shakenline_sip_dropped_total{reason="max-forwards"}`)
	mNotOurVia     = metrics.NewCounter(`shakenline_sip_dropped_total{reason="response-not-for-us"}`)
	mUnroutable    = metrics.NewCounter(`shakenline_sip_dropped_total{reason="unroutable"}`)
	mAckAbsorbed   = metrics.NewCounter(`shakenline_sip_dropped_total{reason="ack-to-redirect"}`)
	mBadMeta       = metrics.NewCounter(`shakenline_sip_dropped_total{reason="bad-steering-metadata"}`)
	mPanics        = metrics.NewCounter(`shakenline_sip_dropped_total{reason="internal-error"}`)

	mSent       = metrics.NewCounter(`shakenline_udp_sent_total`)
	mSendCalls  = metrics.NewCounter(`shakenline_udp_sendmmsg_calls_total`)
	mSendErrors = metrics.NewCounter(`shakenline_udp_send_errors_total`)
	// Receive batching: every recvmmsg(2) call a loop makes after gnet's
	// own read (an empty one included) and the datagrams they returned.
	// Datagrams per call is the batch size; packets minus these datagrams
	// is what gnet read one by one.
	mRecvCalls     = metrics.NewCounter(`shakenline_udp_recvmmsg_calls_total`)
	mRecvDatagrams = metrics.NewCounter(`shakenline_udp_recvmmsg_datagrams_total`)
	mRecvWaits     = metrics.NewCounter(`shakenline_udp_poll_waits_total`) // a drained loop waiting for more (rxLinger)
	// SIP over TCP and TLS (stream.go, conn.go, peer.go, tls.go).
	// Messages sent on connections (UDP datagrams: shakenline_udp_sent_total).
	mSentBy = byTransport(`shakenline_sip_stream_sent_total{transport="%s"}`)
	// Connections opened, inbound (accepted) and outbound (ours).
	mConnOpened = [nTransports][2]*metrics.Counter{
		{nil, nil},
		{metrics.NewCounter(`shakenline_sip_connections_opened_total{transport="tcp",direction="in"}`),
			metrics.NewCounter(`shakenline_sip_connections_opened_total{transport="tcp",direction="out"}`)},
		{metrics.NewCounter(`shakenline_sip_connections_opened_total{transport="tls",direction="in"}`),
			metrics.NewCounter(`shakenline_sip_connections_opened_total{transport="tls",direction="out"}`)},
	}
	mConnClosed        = closedCounters()
	mConnRefusedTotal  = metrics.NewCounter(`shakenline_sip_connections_refused_total{limit="total"}`)
	mConnRefusedSource = metrics.NewCounter(`shakenline_sip_connections_refused_total{limit="per-source"}`)
	// Attempts to connect that failed (the next hop refusing TCP is one),
	// and TLS handshakes that failed.
	mConnectErrors      = byTransport(`shakenline_sip_connect_errors_total{transport="%s"}`)
	mTLSHandshakeErrors = [2]*metrics.Counter{
		metrics.NewCounter(`shakenline_tls_handshake_errors_total{direction="in"}`),
		metrics.NewCounter(`shakenline_tls_handshake_errors_total{direction="out"}`),
	}
	mFrameErrors = frameCounters()
	// CRLF keep-alives answered (RFC 5626 section 3.5.1).
	mKeepalives = metrics.NewCounter(`shakenline_sip_keepalives_total`)
	// Requests moved from UDP to TCP by udp_mtu (RFC 3261 section 18.1.1).
	mMTUSwitched = metrics.NewCounter(`shakenline_sip_udp_mtu_switched_total`)
	// Requests not forwarded because the connection to their destination
	// failed and waits out its backoff (answered 503).
	mUnreachable = metrics.NewCounter(`shakenline_sip_dropped_total{reason="unreachable"}`)
	// Messages for a connection that closed, or whose backlog is full.
	mStreamDropped = [...]*metrics.Counter{
		dropClosed:  metrics.NewCounter(`shakenline_sip_stream_dropped_total{reason="closed"}`),
		dropBacklog: metrics.NewCounter(`shakenline_sip_stream_dropped_total{reason="backlog"}`),
	}
	// Buffers for incomplete messages refused at the budget.
	mStreamBudget = metrics.NewCounter(`shakenline_sip_stream_buffer_refused_total`)

	// A drained loop refilling the software key's nonce pool instead of
	// sleeping: one scalar multiplication per step (see loop.idle).
	mIdleSteps = metrics.NewCounter(`shakenline_loop_idle_refill_steps_total`)
)

// latencyHistogram is the added latency of signed calls (datagram read to
// stamped datagram handed to sendmmsg), one histogram per loop so that loops
// share no lock (a VictoriaMetrics histogram has a mutex). Called once per
// loop at its start, never per packet.
func latencyHistogram(loop int) *metrics.Histogram {
	return metrics.GetOrCreateHistogram(fmt.Sprintf(`shakenline_sign_added_latency_seconds{loop="%d"}`, loop))
}

// Stream drop reasons.
const (
	dropClosed = iota
	dropBacklog
)

// nOpen counts the open connections by transport and direction (0 in, 1
// out), for the gauges.
var nOpen [nTransports][2]atomic.Int64

func init() {
	for _, tr := range []Transport{TCP, TLS} {
		for dir, name := range []string{"in", "out"} {
			n := &nOpen[tr][dir]
			metrics.NewGauge(fmt.Sprintf(`shakenline_sip_connections{transport="%s",direction="%s"}`, tr, name),
				func() float64 { return float64(n.Load()) })
		}
	}
}

// byTransport declares one counter per transport from a name with one %s.
func byTransport(format string) [nTransports]*metrics.Counter {
	var cs [nTransports]*metrics.Counter
	for t := range nTransports {
		cs[t] = metrics.NewCounter(fmt.Sprintf(format, t))
	}
	return cs
}

func closedCounters() [nCloseReasons]*metrics.Counter {
	var cs [nCloseReasons]*metrics.Counter
	for r := range nCloseReasons {
		cs[r] = metrics.NewCounter(fmt.Sprintf(`shakenline_sip_connections_closed_total{reason="%s"}`, closeReasonNames[r]))
	}
	return cs
}

func frameCounters() [frameBudget + 1]*metrics.Counter {
	var cs [frameBudget + 1]*metrics.Counter
	for e := frameTooLarge; e <= frameBudget; e++ {
		cs[e] = metrics.NewCounter(fmt.Sprintf(`shakenline_sip_framing_errors_total{reason="%s"}`, closeReasonNames[frameClose[e]]))
	}
	return cs
}
