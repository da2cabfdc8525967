package fastpath

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/bpf"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/sip"
)

// Mode selects what the loops do with an initial INVITE.
type Mode int

const (
	Proxy    Mode = iota // stateless proxy to the next hop
	Redirect             // 302 with Identity back to the sender
	Inline               // XDP-steered, reinjected with original addresses
)

func (m Mode) String() string {
	switch m {
	case Proxy:
		return "proxy"
	case Redirect:
		return "redirect"
	case Inline:
		return "inline"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode parses "proxy", "redirect" or "inline".
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "proxy":
		return Proxy, nil
	case "redirect":
		return Redirect, nil
	case "inline":
		return Inline, nil
	}
	return 0, fmt.Errorf("fastpath: unknown mode %q (want proxy, redirect or inline)", s)
}

// Config configures a Server. Zero fields take the defaults documented here.
type Config struct {
	Mode      Mode
	Listen    netip.AddrPort // UDP address the loops listen on
	Advertise netip.AddrPort // address in our Via; default Listen (required when Listen is unspecified)
	NextHop   netip.AddrPort // proxy mode: where requests go; unset: by Request-URI (IP literal hosts)
	Loops     int            // event loops; default GOMAXPROCS

	Builder *passport.Builder
	Signer  hsm.Dispatcher
	Policy  *policy.Holder
	Numbers *e164.Canonicalizer

	// Credential, when set, replaces Builder, Signer and CertFingerprint:
	// each call reads it once and signs, stamps and audits with that one
	// credential, so a renewal that swaps it (certmgr) changes key and x5u
	// together, between calls (docs/KEYS.md, "Renewal").
	Credential *credential.Holder

	Freshness    time.Duration // a Date within this of now becomes iat; default 60s
	StaleDate    StaleDate     // a Date outside Freshness: StaleRefuse (forward unsigned, default) or StaleReplace
	Budget       time.Duration // per-call signing budget before P-Identity-Bypass; default 100ms
	ResignSigned bool          // also sign INVITEs that already carry a SHAKEN Identity
	MaxInFlight  int           // signing jobs per loop; default 4096
	SocketBuffer int           // SO_RCVBUF/SO_SNDBUF bytes; default 4 MiB

	// Inline mode: where steered INVITEs come from and how they leave.
	Audit           *audit.Log      // one record per signed call; nil: none
	CertFingerprint string          // for the audit records
	Verifier        Verifier        // terminating side (policy actions verify, verify-reject); nil: such calls pass unverified
	VerifyWorkers   int             // default GOMAXPROCS
	VerifyBudget    time.Duration   // per-call verification deadline, x5u and CRL fetches included; default 1s
	Steering        *bpf.Steering   // decodes the XDP metadata; its heartbeat is kept fresh from a loop tick
	Reinjector      *bpf.Reinjector // sends with the original source address

	Logger *slog.Logger
	Now    func() time.Time // default time.Now
}

// Server runs the event loops.
type Server struct {
	cfg       Config
	advertise netip.AddrPort
	viaHost   []byte // host part of our Via sent-by, as written
	viaPrefix []byte // "Via: SIP/2.0/UDP host:port;branch="
	log       *slog.Logger
	limit     logLimiter

	mu    sync.Mutex // guards loops creation only (once per loop)
	loops map[int]*loop
	byFD  [1024]atomic.Pointer[loop]
	wg    sync.WaitGroup // sender goroutines

	verifyq     chan *job // verification jobs of every loop (verification is rarer and slower than signing)
	eng         gnet.Engine
	booted      chan struct{}
	stopSenders chan struct{}
	stopped     atomic.Bool
}

// New checks cfg and returns a Server; Run starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Credential == nil && cfg.Builder != nil && cfg.Signer != nil {
		cfg.Credential = credential.NewHolder(&credential.Credential{Signer: cfg.Signer, Builder: cfg.Builder, Fingerprint: cfg.CertFingerprint})
	}
	if cfg.Credential == nil || cfg.Credential.Load() == nil || cfg.Policy == nil || cfg.Numbers == nil {
		return nil, errors.New("fastpath: Builder and Signer (or Credential), Policy and Numbers are required")
	}
	if !cfg.Listen.IsValid() {
		return nil, errors.New("fastpath: a listen address is required")
	}
	if cfg.Mode == Inline && (cfg.Steering == nil || cfg.Reinjector == nil) {
		return nil, errors.New("fastpath: inline mode needs the XDP steering and a reinjector")
	}
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	if cfg.Freshness <= 0 {
		cfg.Freshness = 60 * time.Second
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 100 * time.Millisecond
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.SocketBuffer <= 0 {
		cfg.SocketBuffer = 4 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	adv := cfg.Advertise
	if !adv.IsValid() {
		adv = cfg.Listen
	}
	if adv.Addr().IsUnspecified() && cfg.Mode != Inline { // inline adds no Via
		return nil, errors.New("fastpath: listening on an unspecified address needs an advertised address for Via")
	}
	s := &Server{cfg: cfg, advertise: adv, log: cfg.Logger, loops: map[int]*loop{},
		booted: make(chan struct{}), stopSenders: make(chan struct{})}
	host := adv.Addr().Unmap().String()
	if adv.Addr().Is6() && !adv.Addr().Is4In6() {
		host = "[" + host + "]"
	}
	s.viaHost = []byte(host)
	s.viaPrefix = fmt.Appendf(nil, "Via: SIP/2.0/UDP %s:%d;branch=", host, adv.Port())
	if cfg.VerifyWorkers <= 0 {
		s.cfg.VerifyWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.VerifyBudget <= 0 {
		s.cfg.VerifyBudget = time.Second
	}
	s.verifyq = make(chan *job, cfg.MaxInFlight)
	return s, nil
}

// Run serves until ctx is cancelled or Stop is called.
func (s *Server) Run(ctx context.Context) error {
	addr := "udp4://" + s.cfg.Listen.String()
	switch a := s.cfg.Listen.Addr(); {
	case a.Is6() && a.IsUnspecified():
		// gnet makes "::" an IPv6-only socket; an empty host is the
		// dual-stack wildcard (IPv4 peers arrive v4-mapped).
		addr = "udp://:" + strconv.Itoa(int(s.cfg.Listen.Port()))
	case a.Is6() && !a.Is4In6():
		addr = "udp6://" + s.cfg.Listen.String()
	}
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	if s.cfg.Verifier != nil {
		for range s.cfg.VerifyWorkers {
			s.wg.Add(1)
			go s.verifyWorker(ctx)
		}
	}
	err := gnet.Run(&handler{s: s}, addr,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithReusePort(true),
		gnet.WithLockOSThread(false),
		gnet.WithReadBufferCap(sip.MaxMessage+1),
		gnet.WithSocketRecvBuffer(s.cfg.SocketBuffer),
		gnet.WithSocketSendBuffer(s.cfg.SocketBuffer),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithTicker(s.cfg.Mode == Inline),
	)
	close(s.stopSenders)
	s.wg.Wait()
	s.mu.Lock()
	for _, l := range s.loops { // the loops have ended with gnet.Run
		if l.idle != nil {
			l.idle.Close()
		}
	}
	s.mu.Unlock()
	return err
}

// Booted is closed once the loops listen.
func (s *Server) Booted() <-chan struct{} { return s.booted }

// Stop stops the loops; Run returns.
func (s *Server) Stop() {
	if s.stopped.Swap(true) {
		return
	}
	<-s.booted
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.eng.Stop(ctx)
}

type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.s.eng = eng
	close(h.s.booted)
	return gnet.None
}

// heartbeatEvery keeps the XDP program's view of the loops fresh; it fails
// open after bpf.DefaultStaleAfter without one.
const heartbeatEvery = 100 * time.Millisecond

// OnTick runs on one event loop: a heartbeat that stops when the loops stop.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	if st := h.s.cfg.Steering; st != nil {
		if err := st.Heartbeat(); err != nil {
			if ok, n := h.s.limit.allow(logHeartbeat); ok {
				h.s.log.Warn("fastpath: XDP heartbeat failed; INVITEs pass unsigned until it succeeds", "err", err, "suppressed_since_last", n)
			}
		}
	}
	return heartbeatEvery, gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	pkt, _ := c.Next(-1)
	ua, ok := c.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return gnet.None
	}
	// A dual-stack socket reports IPv4 peers v4-mapped; policy prefixes,
	// the next-hop comparison and received= all want the plain address.
	ap := ua.AddrPort()
	h.s.loopFor(c.Fd()).burst(pkt, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	return gnet.None
}

// burst handles first (gnet's datagram, valid only during this call; nil
// for none), then drains the socket with recvmmsg(2), sending what each
// round produced in shared sendmmsg(2) calls (sooner when the loop's send
// batch or arena fills). With the socket drained, the loop does one step of
// its signer's idle work (refilling its nonce pool) and reads again; with
// none left, it waits on the socket for rxLinger before it goes back to
// gnet. At most rxRounds rounds, and none once the server is stopping
// (gnet's Stop reaches the loop through its own queue).
//
// Nor does a loop that has recently handed calls to other goroutines (an
// HSM's sessions, the verifiers, the sender): those work while the loop
// idles, and they need Ps the waiting loop would hold, whereas gnet's idle
// path (runtime.Gosched) lets them run at once. Waiting pays where the
// loop does all the work itself: signing on the loop with a software key.
func (l *loop) burst(first []byte, src netip.AddrPort) {
	l.bursts++
	if len(first) > 0 {
		l.dispatch(first, src)
		l.flush()
	}
	for range rxRounds {
		n := l.rx.read()
		for i := range n {
			if pkt, src, ok := l.rx.datagram(i); ok && len(pkt) > 0 {
				l.dispatch(pkt, src)
			}
		}
		// Nothing queued points into the receive buffers (queue copies
		// into the arena), but sending per round bounds the latency a
		// long burst adds to its first datagrams, and nothing may wait
		// unsent while the loop waits for more.
		l.flush()
		if n == rxBatch {
			continue
		}
		// Drained. Rather than sleep, refill the software key's nonce
		// pool a step at a time and look at the socket between steps: a
		// datagram that arrives meanwhile waits at most one step (about
		// 12 µs), and neither it nor its sender pays a wakeup. Otherwise
		// the background worker would do that refill once the loop
		// slept, and the next datagram would cost a wakeup and two
		// thread switches. Measured at 12k-20k calls/s on one core: 3-4
		// times fewer context switches and 6-15 % less CPU per call.
		if c := l.s.cfg.Credential.Load(); c != l.idleCred {
			l.followCredential(c)
		}
		if l.idle != nil && !l.s.stopped.Load() && l.idle.Step() {
			mIdleSteps.Inc()
			continue
		}
		if l.bursts-l.handedOff < lingerQuiet || l.s.stopped.Load() || !l.rx.wait() {
			return
		}
	}
}

// lingerQuiet is how many bursts without a hand-off to another goroutine
// a loop waits for before it lingers again (see burst).
const lingerQuiet = 1024

func (l *loop) dispatch(pkt []byte, src netip.AddrPort) {
	if l.s.cfg.Mode == Inline {
		l.inline(pkt)
		return
	}
	l.process(pkt, src)
}

// loopFor returns the state of the loop that owns listener fd, creating it
// on the loop's first packet. Each SO_REUSEPORT listener belongs to exactly
// one gnet loop, so a loop's state is only ever used by its own goroutine.
func (s *Server) loopFor(fd int) *loop {
	if fd >= 0 && fd < len(s.byFD) {
		if l := s.byFD[fd].Load(); l != nil {
			return l
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.loops[fd]; ok {
		return l
	}
	l := s.newLoop(fd, len(s.loops))
	s.loops[fd] = l
	if fd >= 0 && fd < len(s.byFD) {
		s.byFD[fd].Store(l)
	}
	return l
}

// syncSigner is a Dispatcher that can also sign at once, without blocking
// (hsm.Chain when its first usable signer is a software key with a warm
// nonce pool).
type syncSigner interface {
	TrySign(r *hsm.Request, shard int) bool
}

// loop is the per-event-loop state. Only its own gnet goroutine touches it,
// except sendq/free (channels) and the job objects it lends out.
type loop struct {
	s     *Server
	fd    int
	idx   int // 0..loops-1, in the order loops saw their first datagram
	msg   sip.Message
	out   []byte // inline mode: the datagram being reinjected (sent at once)
	sc    *scratch
	rx    *rx    // recvmmsg(2) state for draining the socket after gnet's datagram
	tx    *batch // the loop's own sends, flushed once per burst (see queue)
	arena []byte // the datagrams in tx: each is built at arena[used:]
	used  int
	ws    *job         // the call being signed; taken from free only when it goes asynchronous
	idle  hsm.IdleWork // the signer's refill work, done when the socket is drained (nil: none)

	idleCred *credential.Credential // the credential idle belongs to

	bursts    uint64 // calls of burst
	handedOff uint64 // the last burst that gave a call to a signer or verifier goroutine (see burst)
	rng       *mrand.ChaCha8
	flow      bpf.Flow // inline mode: the original addresses of the datagram in hand
	tn        [2][]byte
	raw       []byte // digits as dialled, before canonicalisation
	ann       []byte // the identities forwardUnverified rewrites
	free      chan *job
	sendq     chan *job
	hist      *metrics.Histogram
}

func (s *Server) newLoop(fd, idx int) *loop {
	v6 := false
	if sa, err := unix.Getsockname(fd); err == nil {
		_, v6 = sa.(*unix.SockaddrInet6)
	}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	l := &loop{
		s:     s,
		fd:    fd,
		idx:   idx,
		out:   make([]byte, 0, sip.MaxMessage+outSlack),
		sc:    newScratch(),
		rx:    newRx(fd),
		tx:    newBatch(fd, v6),
		arena: make([]byte, txArena),
		rng:   mrand.NewChaCha8(seed),
		tn:    [2][]byte{make([]byte, 0, 32), make([]byte, 0, 32)},
		raw:   make([]byte, 0, 64),
		ann:   make([]byte, 0, 1024),
		free:  make(chan *job, s.cfg.MaxInFlight),
		sendq: make(chan *job, s.cfg.MaxInFlight),
		hist:  latencyHistogram(idx),
	}
	for range s.cfg.MaxInFlight {
		l.free <- newJob(l)
	}
	l.ws = newJob(l)
	l.followCredential(s.cfg.Credential.Load())
	l.bursts = lingerQuiet // no hand-off yet: the loop may linger from the start
	s.wg.Add(1)
	go l.sender(newBatch(fd, v6), s.stopSenders)
	return l
}

// followCredential makes the loop's idle work that of c's signer (after a
// renewal switched the credential; the old signer is retired later).
func (l *loop) followCredential(c *credential.Credential) {
	if l.idle != nil {
		l.idle.Close()
		l.idle = nil
	}
	l.idleCred = c
	if iw, ok := c.Signer.(interface{ IdleWork(shard int) hsm.IdleWork }); ok {
		l.idle = iw.IdleWork(l.idx) // the shard TrySign uses
	}
}

// handle processes one datagram from src and sends what it produced; pkt
// is only valid during the call. (The event loop goes through burst.)
func (l *loop) handle(pkt []byte, src netip.AddrPort) {
	l.process(pkt, src)
	l.flush()
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

// The loop's own sends are queued, not sent: each datagram is built in the
// arena (outBuf), queued in the loop's batch (queue) and sent with the rest
// of its burst (flush). Nothing queued points into a receive buffer.
const (
	// txArena holds the datagrams of one send batch (maxBatch typical
	// INVITEs, or two of the largest messages).
	txArena = 256 << 10
	// outSlack is what a stamp may add to a datagram: our Via, received
	// and rport, Max-Forwards, an Identity or P-Identity-Bypass header.
	outSlack = 4096
)

// outBuf returns an empty slice at the arena's free end with room for a
// datagram of n bytes plus outSlack, flushing first when the arena is too
// full. (A stamp that outgrows it still works: append moves it to the heap.)
func (l *loop) outBuf(n int) []byte {
	if len(l.arena)-l.used < n+outSlack {
		l.flush()
	}
	return l.arena[l.used:l.used]
}

// queue adds b (built in outBuf, or any buffer that lives until the next
// flush) to the loop's batch for dst, and flushes when the batch is full.
func (l *loop) queue(b []byte, dst netip.AddrPort) {
	if len(b) > 0 && l.used < len(l.arena) && &b[0] == &l.arena[l.used] {
		l.used += len(b)
	}
	if !l.tx.add(b, dst) {
		mUnroutable.Inc()
		return
	}
	if l.tx.n == maxBatch {
		l.flush()
	}
}

// flush sends the queued datagrams (one sendmmsg(2) call for up to
// maxBatch) and frees the arena.
func (l *loop) flush() {
	if l.tx.n > 0 {
		l.tx.flush()
	}
	l.used = 0
}

// sign handles an initial INVITE as the policy decides: signing (on the
// loop or queued), verification (queued), or neither. It returns false when
// the caller is to forward the call unsigned and untouched (policy
// "forward", no number to sign, already signed, or verification not
// possible); every other outcome, bypass included, is handled here.
func (l *loop) sign(pkt []byte, src, dst netip.AddrPort) bool {
	m := &l.msg
	cfg := &l.s.cfg
	var ok bool
	l.tn[0], ok = OrigTN(l.tn[0][:0], l.raw, pkt, m, cfg.Numbers)
	if !ok {
		l.tn[0] = l.tn[0][:0]
	}
	dec := cfg.Policy.Load().Decide(src.Addr(), l.tn[0])
	switch dec.Action {
	case policy.Verify, policy.VerifyReject:
		if l.startVerify(pkt, src, dst, dec.Action == policy.VerifyReject) {
			return true
		}
		return l.forwardUnverified(pkt, src, dst)
	case policy.Forward:
		mUnsignedPolicy.Inc()
		return false
	}
	if m.NumIdentity > 0 && !cfg.ResignSigned && hasShakenIdentity(pkt, m) {
		mUnsignedSigned.Inc()
		return false
	}
	if !ok {
		mUnsignedNoOrig.Inc()
		return false
	}
	if l.tn[1], ok = DestTN(l.tn[1][:0], l.raw, pkt, m, cfg.Numbers); !ok {
		mUnsignedNoDest.Inc()
		return false
	}
	// RFC 8224 sections 4.1 and 6.1: a Date outside freshness is not
	// signed (unless stale_date: replace); a missing one is added.
	now := cfg.Now()
	iat, dact := DateRule(pkt, m, now, cfg.Freshness, cfg.StaleDate)
	if dact == DateStale || dact == DateBad {
		l.staleDate(pkt, m, src, dact, now)
		return false
	}
	// The call is prepared in the loop's workspace job: when it is signed
	// here, on the loop, neither the datagram nor its parse is copied and
	// no job changes hands.
	j := l.ws
	j.start = time.Now()
	j.src, j.dst, j.flow = src, dst, l.flow
	j.orig = append(j.orig[:0], l.tn[0]...)
	j.dest = append(j.dest[:0], l.tn[1]...)
	j.setDate(m, iat, dact)
	j.decision = dec
	j.reject = false
	j.claims = passport.Claims{Attest: j.decision.Attest, Orig: j.orig, Dest: j.destv[:], IAT: iat}
	j.destv[0] = j.dest
	_, _ = l.rng.Read(j.claims.OrigID[:])
	// One credential for the whole call: the x5u in the signing input, the
	// key that signs it and the Identity header's info= all come from it.
	j.cred = cfg.Credential.Load()
	j.input = j.cred.Builder.AppendSigningInput(j.input[:0], &j.claims)
	j.req.Digest = sha256.Sum256(j.input)
	j.req.Deadline = j.start.Add(cfg.Budget) // the signers' clock, not cfg.Now (the dates' clock)
	j.req.Err, j.req.SignedBy = nil, ""
	// A signer that can sign at once (a warm software nonce pool: about
	// 0.1 µs) costs less than the two hand-offs of the asynchronous path,
	// so the call is finished here, on the loop. Otherwise, and for every
	// HSM, the request is queued and the loop goes on.
	if ss, ok := j.cred.Signer.(syncSigner); ok && ss.TrySign(&j.req, l.idx) {
		if cfg.Mode == Inline {
			l.out = j.stamp(l.out[:0], pkt, m, &j.req)
			l.reinject(l.out)
		} else {
			l.queue(j.stamp(l.outBuf(len(pkt)), pkt, m, &j.req), j.dst)
		}
		l.hist.UpdateDuration(j.start)
		mSignedOnLoop.Inc()
		return true
	}
	// Asynchronous: the workspace goes to the signer with a copy of the
	// datagram, and a job from the free list takes its place.
	nj := l.getJob()
	if nj == nil {
		mBypassOverload.Inc()
		l.bypassNow(pkt, src, dst, bypassHeaders[bypassOverload])
		return true
	}
	l.ws = nj
	l.handedOff = l.bursts
	j.pkt = append(j.pkt[:0], pkt...)
	j.msg = *m
	if err := j.cred.Signer.Submit(&j.req); err != nil {
		// Submit refused (queue full, or no signer usable): Done will not
		// be called, so the call is bypassed here, now.
		l.free <- j
		l.bypassNow(pkt, src, dst, bypassHeader(err))
	}
	return true
}

// staleDate counts and logs (at most once a minute) an INVITE that is not
// signed because of its Date: outside the freshness window (RFC 8224
// section 4.1) or not a date at all. The caller forwards it unsigned.
func (l *loop) staleDate(pkt []byte, m *sip.Message, src netip.AddrPort, act DateAction, now time.Time) {
	if act == DateBad {
		mUnsignedBadDate.Inc()
		if ok, n := l.s.limit.allow(logBadDate); ok {
			l.s.log.Warn("fastpath: INVITE with a Date that does not parse forwarded unsigned (RFC 8224 section 4.1; stale_date: replace would replace it)",
				"from", src, "date", string(m.Date.In(pkt)), "suppressed_since_last", n)
		}
		return
	}
	mUnsignedStale.Inc()
	if ok, n := l.s.limit.allow(logStaleDate); ok {
		d, _ := sip.ParseDate(m.Date.In(pkt))
		l.s.log.Warn("fastpath: INVITE with a Date outside the freshness window forwarded unsigned (RFC 8224 section 4.1; stale_date: replace would replace it)",
			"from", src, "date", string(m.Date.In(pkt)), "skew_seconds", d-now.Unix(), "freshness", l.s.cfg.Freshness, "suppressed_since_last", n)
	}
}

// forwardUnverified forwards at once an INVITE the policy gives to
// verification that cannot be verified now (no verifier configured, or the
// verifiers' queue full), annotated No-TN-Validation: the next hop sees
// that the call was not verified, and no verstat the caller wrote survives
// (an overload an attacker provokes must not pass his own
// TN-Validation-Passed). The call completes, under verify-reject too. In
// redirect mode it reports false and the caller redirects the call as it
// is (a 302 carries no verification result).
func (l *loop) forwardUnverified(pkt []byte, src, dst netip.AddrPort) bool {
	if l.s.cfg.Mode == Redirect {
		return false
	}
	m := &l.msg
	ann, buf := verstatAnnotation(l.ann[:0], pkt, m, verstatNoneParam)
	l.ann = buf
	mForwarded.Inc()
	if l.s.cfg.Mode == Inline {
		l.sc.ed.n = 0
		ann.addTo(&l.sc.ed)
		l.out = l.sc.ed.apply(l.out[:0], pkt)
		l.reinject(l.out)
		return true
	}
	l.queue(l.s.stampRequestEdit(l.outBuf(len(pkt)), pkt, m, src, nil, l.sc, &ann, nil), dst)
	return true
}

var verstatNoneParam = []byte(";verstat=" + VerstatNone)

// bypassNow forwards (or, in redirect mode, redirects) the call at once,
// unsigned, with P-Identity-Bypass.
func (l *loop) bypassNow(pkt []byte, src, dst netip.AddrPort, hdr []byte) {
	m := &l.msg
	if l.s.cfg.Mode == Inline {
		mForwarded.Inc()
		l.out = stampInline(l.out[:0], pkt, m, hdr, nil, l.sc)
		l.reinject(l.out)
		return
	}
	if l.s.cfg.Mode == Redirect {
		l.reply(pkt, src, 302, "Moved Temporarily", l.contact(pkt, m), hdr)
		return
	}
	mForwarded.Inc()
	l.queue(l.s.stampRequest(l.outBuf(len(pkt)+len(hdr)), pkt, m, src, hdr, l.sc), dst)
}

// hasShakenIdentity reports whether one of the Identity headers is a SHAKEN
// PASSporT (ppt=shaken, quoted or not).
func hasShakenIdentity(pkt []byte, m *sip.Message) bool {
	for i := 0; i < int(m.NumIdentity); i++ {
		if containsFold(m.Identity[i].In(pkt), "shaken") {
			return true
		}
	}
	return false
}

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		ok := true
		for k := 0; k < len(s); k++ {
			c := b[i+k]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != s[k] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (l *loop) getJob() *job {
	select {
	case j := <-l.free:
		return j
	default:
		return nil
	}
}

// sender batches finished jobs into sendmmsg calls and returns them to the
// free list. It stops when the server stops; sendq is never closed, so a
// signer finishing late never sends on a closed channel (the queue holds
// every job the loop owns, so that send never blocks either).
func (l *loop) sender(tx *batch, stop <-chan struct{}) {
	defer l.s.wg.Done()
	var held [maxBatch]*job
	for {
		var j *job
		select {
		case <-stop:
			return
		case j = <-l.sendq:
		}
		n := 0
		for j != nil && n < maxBatch {
			if l.s.cfg.Mode == Inline {
				// One socket per original source: nothing to batch across
				// sources, so each goes out with its own sendmsg.
				if err := l.s.cfg.Reinjector.Send(j.flow, j.out); err != nil {
					mSendErrors.Inc()
				} else {
					mSent.Inc()
				}
				held[n] = j
				n++
			} else if tx.add(j.out, j.dst) {
				held[n] = j
				n++
			} else {
				mUnroutable.Inc()
				l.free <- j
			}
			select {
			case j = <-l.sendq:
			default:
				j = nil
			}
		}
		if j != nil { // batch full: keep it for the next round
			l.sendq <- j
		}
		tx.flush()
		for i := 0; i < n; i++ {
			l.hist.UpdateDuration(held[i].start)
			l.free <- held[i]
			held[i] = nil
		}
	}
}
