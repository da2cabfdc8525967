// Package loadgen is the Go load generator of the benchmark suite: a
// Generator that sends unique SIP INVITEs (and, in full-call mode, the ACK
// and BYE of each answered call) and a Sink that plays the next hop.
//
// # What it owns
//
// The Generator binds Config.Sockets UDP sockets (many source ports) and
// sends INVITEs to Config.Target at a target rate (a token bucket per
// sending worker) or open loop, in sendmmsg(2) batches, bounded by a
// duration and a call count. With GOMAXPROCS ≥ 2 (EnableFinePacing) a
// paced worker waits for its next INVITE with nanosleep(2), so INVITEs leave one or two at a time when due rather than in the
// 1 ms bursts Go's timers would give. Every INVITE is unique: its sequence
// number sits in the Call-ID, the Via branch and the From tag, and the
// Call-ID also carries the send time (CLOCK_REALTIME nanoseconds, read just
// before the sendmmsg that carries it) and a per-generator run tag:
//
//	Call-ID: <seq:16 hex>-<send ns:16 hex>-<run:8 hex>@shakebench
//
// Calling numbers (From, Contact, P-Asserted-Identity tel URI) and called
// numbers (Request-URI, To) come from pools of +1 NANP numbers.
//
// The Sink receives in recvmmsg(2) batches, answers by the top Via (honouring
// received and rport) so responses flow back through a stateless proxy, and
// for each INVITE of the current run records the one-way latency and
// whether an Identity header was present. It can verify a sample of Identity
// headers against a public key (VerifyIdentity).
//
// # Latency
//
// Both ends are timed by the kernel, so neither the generator's batching nor
// the sink's scheduling counts. The arrival time is the kernel's software
// receive timestamp of the datagram at the sink's socket (SO_TIMESTAMPNS,
// read from recvmmsg's control messages; on loopback it is taken when the
// proxy hands the datagram to the device). The send time is the kernel's
// software transmit timestamp of the INVITE (SO_TIMESTAMPING with OPT_ID
// and OPT_TSONLY, requested per message by a control message and read from
// the socket's error queue right after each sendmmsg; on loopback it is
// taken as the datagram reaches the device, one per datagram). Both are
// CLOCK_REALTIME. Where a transmit stamp is missing (Config.UserSendTime,
// or a stamp not read) the Call-ID's send time stands in; where a receive
// stamp is missing, the sink's wall clock after recvmmsg does. Result
// counts how many INVITEs each stamp timed. Generator and Sink run in one
// process so a transmit stamp can be matched to its call.
//
// Step runs a rate ramp until loss passes a threshold (0.1 % by default)
// and reports the highest clean rate and each step's Result.
//
// # Concurrency
//
// A Generator runs one Run or Step at a time (ErrBusy otherwise). Inside a
// run, Config.Workers goroutines send, each on its own share of sockets, and
// one goroutine per socket receives responses. A Sink has one goroutine per
// reader socket and one verifier goroutine. Results are gathered through
// atomics in the run's ledger.
//
// # Buffer lifetime
//
// All packet buffers are allocated when a Generator or Sink is created: each
// socket's INVITE batch holds copies of a prebuilt template whose
// fixed-width fields (sequence, send time, numbers, Date) are patched in
// place; responses, ACKs and BYEs are built by appending into preallocated
// buffers sized so that append never grows them. Parsed messages are slices
// into the receive buffers and die with the next recvmmsg. The send and
// receive loops allocate nothing per packet (see the AllocsPerRun tests and
// the benchmarks in loadgen_timing_test.go).
//
// # Limits
//
// Each run keeps a ledger of 8 bytes per call it may send (rate × duration,
// or Config.MaxCalls for an open loop, default 10 million). Latency is
// recorded at 10 ns resolution and saturates at about 21 s; percentiles
// come from a log-linear histogram with under 1.6 % relative error.
// Messages over 8 KiB are not scanned. Via hosts must be IP literals. Only
// loopback or test-namespace addresses should be targeted.
//
// # TCP and TLS
//
// With Config.Transport "tcp" or "tls" each of Config.Sockets is a
// persistent connection to the target (several clients, as an SBC
// cluster's); a batch of INVITEs leaves in one write, and responses, ACKs
// and BYEs travel on the same connection. A Sink with SinkConfig.Transport
// accepts connections and answers each request on the connection it came
// on. Reads are framed by Content-Length (stream.go); a connection's
// buffers are allocated when it opens. Latency over a stream is the sink's
// read time minus the Call-ID's send time: no kernel timestamps, so the
// generator's and the sink's scheduling count.
package loadgen
