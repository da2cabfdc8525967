// Package fastpath owns the per-packet path of the appliance: gnet v2 event
// loops (one per core, SO_REUSEPORT) that read SIP datagrams and SIP over
// TCP (and TLS connections on goroutines of their own), parse only what a
// PASSporT needs, hand initial INVITEs to the signers without blocking,
// stamp the Identity header into a pooled buffer and send the result with
// batched sendmmsg(2) calls, or one write per connection and burst.
//
// Receive batching: gnet hands a loop one datagram per readiness event; the
// loop then drains its socket itself with recvmmsg(2) (rxBatch datagrams a
// call, at most rxRounds calls), and, once drained, waits up to rxLinger in
// poll(2) for more before going back to gnet, whose idle path costs thread
// switches (recv.go). What a round of datagrams produces leaves in one
// sendmmsg(2) call.
//
// Modes (Config.Mode), chosen once when New builds the server: each mode
// is an egress value (route.go) that the loops call for every datagram
// and every decided call, so nothing on the packet path tests the mode.
//   - proxy (proxy.go): a stateless proxy (RFC 3261 section 16.11). Requests get our Via
//     (branch derived from the incoming top Via, so retransmissions map to
//     the same branch), Max-Forwards is decremented (483 at zero) and the
//     request goes to the next hop. Responses are routed back by the Via under
//     ours, ours removed. Only initial INVITEs (no To tag) are signed.
//   - redirect (redirect.go): each initial INVITE is answered with 302 Moved Temporarily,
//     Contact the original Request-URI, plus the Identity header (the
//     ClearIP/Neustar style) and a Date header equal to the iat; the SBC
//     copies the headers into its own INVITE (docs/ARCHITECTURE.md,
//     redirect mode, says why the Date).
//   - inline (inline.go): INVITEs steered to us by the XDP program in package bpf are
//     stamped and reinjected towards their original destination with their
//     original source address.
//
// Buffer lifetime: gnet's packet slice is only valid inside OnTraffic, and a
// receive slot only until the next recvmmsg. What the loop sends itself is
// built in the loop's send arena, never pointing into a received datagram,
// and the arena is reused after the sendmmsg that carried it. A call signed
// on the loop is prepared in the loop's workspace job and stamped straight
// into the arena. A request that goes to an asynchronous signer is copied
// into that job, which then travels (packet copy, parse offsets, signing
// input and output buffer) to a signer goroutine and back to the loop's
// sender, which returns it to the free list after sendmmsg; a job from the
// free list becomes the loop's new workspace. Nothing else keeps a packet.
//
// Concurrency: each loop has its own state (parser, scratch buffers, random
// source, job pool, sender goroutine); no lock on the signing path is shared
// by all loops: the policy table is read through an atomic pointer, and a
// warm software key signs on the loop from the loop's own nonce-pool shard.
// Two queues are shared by design: an HSM's request queue (the issue's
// "requests from all loops gathered and spread over the sessions"), and the
// terminating side's verification queue (a verification costs about 100 µs;
// the channel operation is noise beside it).
//
// Date rules (RFC 8224 sections 4.1 and 6.1, package claims): an
// INVITE without Date is signed with iat = now and leaves with a Date of
// that second; a Date within Config.Freshness is the iat; a Date outside it
// (or one that does not parse) is not signed and leaves as it came, counted
// (shakenline_calls_unsigned_total{reason="stale-date"|"bad-date"}) and
// logged at most once a minute, unless Config.StaleDate is claims.StaleReplace:
// then the Date is replaced by now and signed (a deviation from the RFC).
// The Date is added or replaced by the same edit that inserts the Identity
// header (job.setDate, stamp.go), in every mode.
//
// Failure rules: a malformed message never stops a loop (it is forwarded
// unsigned in proxy mode, answered 400 in redirect mode when it can be
// answered, counted, and logged at most once a minute per reason); a signer
// that fails or misses the call's budget yields P-Identity-Bypass, never a
// lost call; a full job pool or signer queue bypasses at once.
//
// Parse and stamp allocate nothing per packet, signed on the loop or not,
// malformed or not (see fastpath_timing_test.go).
// Package fastpath must not import net/http, encoding/json or the API
// packages (checked by TestDependencies).
//
// # A datagram's way, and where each step lives
//
//   - config.go: Config and Mode; server.go: New (defaults, the mode's
//     egress), Run, Stop.
//   - handler.go: gnet's callbacks: OnTraffic hands the datagram to its
//     loop (loop.go: per-loop state, created on the loop's first event),
//     or a TCP connection's bytes to stream.go.
//   - recv.go: drainSocket, the receive burst: gnet's datagram, then the
//     socket drained with recvmmsg(2), each datagram to routeDatagram.
//   - route.go: routeMessage (counted by transport, panics recovered) calls
//     the mode's egress: proxy.go, redirect.go, inline.go route requests,
//     responses and malformed messages, and say how each decided call
//     leaves; send and sendRequest take a message to its target.
//   - sign.go: handleInvite, the decision for an initial INVITE (policy:
//     verify, forward or sign; already signed; numbers and Date through
//     package claims), and signInvite, which signs on the loop or hands the
//     call to a signer goroutine (job.go: the call's job, its stamping when
//     the signer answers, the bypass reasons).
//   - verify.go: the terminating side (startVerify, the verification
//     workers, the verstat annotation; the verstat grammar is package sip's).
//   - stamp.go: the edits that forward a request or response; respond.go:
//     locally generated responses.
//   - send.go: the loop's send arena and sendmmsg(2) batches; sender.go:
//     the sender goroutine that sends finished jobs.
//   - log.go, metrics.go: rate-limited logging and the counters.
//
// The decision, the claims and the stamps know nothing of the transport:
// every message, a datagram or one framed on a connection, goes through
// routeMessage (route.go) with its ingress (transport, connection), and
// every message leaves through loop.send / loop.sendRequest (route.go) to a
// target (address, transport, connection). A new PASSporT (div, rcd)
// extends signInvite and package claims.
//
// # SIP over TCP and TLS (docs/ARCHITECTURE.md, "SIP over TCP and TLS")
//
//   - transport.go: Transport, target and ingress, our Via's connection
//     parameter (;i=), the transports a Via or a Request-URI names.
//   - frame.go: the stream framer (RFC 3261 section 18.3: Content-Length
//     mandatory; a message split across reads, several in one read, a body
//     arriving late; CRLFCRLF keep-alives, RFC 5626 section 3.5.1) and the
//     pooled buffers of incomplete messages and queued output, within a
//     budget.
//   - conn.go: the connection (conn: TCP on a gnet loop, or TLS), the
//     connection table (ids, limits per source and in total), sending on a
//     connection from any goroutine (conn.send), closing, the sweeper
//     (idle connections, slow messages), readStream (framing to routing).
//   - stream.go: TCP on the gnet loops: accepting (OnOpen), reading
//     (OnTraffic), closing (OnClose); a burst's output to one connection
//     written once (cork, flushStreams, called by loop.flush).
//   - tls.go: TLS on goroutines (a reader that borrows a TLS loop per read,
//     a writer per connection), TLS 1.2 and 1.3 only.
//   - peer.go: connections we open (next hops, addresses a Request-URI or
//     a Via names over a stream): one per loop and address, opened on
//     demand, reused, retried with backoff; readiness (NextHopReady).
//
// Stateless over connections: a request that came on a connection leaves
// with our Via naming it (;i=<16 hex>: a slot of the connection table and
// a random tag), so its responses go back on it (RFC 3261 section 18.2.2)
// with nothing kept per call; when that connection is gone they go by the
// Via under ours. udp_mtu (Config.UDPMTU) moves a request that would leave
// over UDP larger than the MTU to TCP towards the same address and port,
// our Via switched to TCP in place (RFC 3261 section 18.1.1).
//
// Metrics of the stream transports (metrics.go): shakenline_sip_packets_total
// and shakenline_calls_seen_total by transport, shakenline_sip_stream_sent_total,
// shakenline_sip_connections (gauge) and shakenline_sip_connections_opened_total
// by transport and direction, shakenline_sip_connections_closed_total{reason},
// shakenline_sip_connections_refused_total{limit}, shakenline_sip_connect_errors_total,
// shakenline_tls_handshake_errors_total{direction}, shakenline_sip_framing_errors_total{reason},
// shakenline_sip_keepalives_total, shakenline_sip_udp_mtu_switched_total,
// shakenline_sip_stream_dropped_total{reason}, shakenline_sip_stream_buffer_refused_total,
// shakenline_sip_dropped_total{reason="unreachable"}.
package fastpath
