package fastpath

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/bpf"
	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/sip"
)

// loopFor returns the state of the gnet loop el whose UDP listener is fd
// (-1: not known yet, for a TCP connection's first event), creating it on
// the loop's first event. Each SO_REUSEPORT listener, and each connection,
// belongs to exactly one gnet loop, so a loop's state is only ever used by
// its own goroutine. Tests without gnet pass a nil el.
func (s *Server) loopFor(fd int, el gnet.EventLoop) *loop {
	if fd >= 0 && fd < len(s.byFD) {
		if l := s.byFD[fd].Load(); l != nil {
			return l
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var l *loop
	if el != nil {
		l = s.byEL[el]
	}
	if l == nil && fd >= 0 {
		l = s.loops[fd]
	}
	if l == nil {
		l = s.newLoop(fd, len(s.all), true)
		l.el = el
		s.all = append(s.all, l)
		if el != nil {
			s.byEL[el] = l
		}
	}
	if fd >= 0 {
		if l.fd < 0 { // its first datagram: its own socket from now on
			l.fd, l.rx = fd, newRx(fd)
			l.tx = newBatch(fd, isV6(fd))
		}
		s.loops[fd] = l
		if fd < len(s.byFD) {
			s.byFD[fd].Store(l)
		}
	}
	return l
}

func isV6(fd int) bool {
	sa, err := unix.Getsockname(fd)
	_, v6 := sa.(*unix.SockaddrInet6)
	return err == nil && v6
}

// loop is the per-event-loop state. Only its own goroutine touches it,
// except sendq/free (channels) and the job objects it lends out. A TLS
// loop (tls.go) is the same state, used by one TLS reader at a time.
type loop struct {
	s     *Server
	eg    egress         // the mode's (New)
	el    gnet.EventLoop // gnet's loop (nil: a TLS loop, or a test's)
	fd    int            // its UDP socket (-1: none yet; sends go through Server.udpOut)
	idx   int            // 0..loops-1, in the order loops saw their first event
	msg   sip.Message
	out   []byte // inline mode: the datagram being reinjected (sent at once)
	sc    *scratch
	rx    *rx    // recvmmsg(2) state for draining the socket after gnet's datagram (nil: no socket yet)
	tx    *batch // the loop's own sends, flushed once per burst (see queue)
	arena []byte // the datagrams in tx: each is built at arena[used:]
	used  int
	ws    *job         // the call being signed; taken from free only when it goes asynchronous
	idle  hsm.IdleWork // the signer's refill work, done when the socket is drained (nil: none)

	idleCred *credential.Credential // the credential idle belongs to
	noIdle   bool                   // a TLS loop: never does the signer's idle work

	in     ingress           // where the message in hand came from
	to     target            // where the request in hand goes (set by the egress before the decision)
	nconns int               // TCP connections this gnet loop owns
	peers  map[peerKey]*conn // connections it opened (peer.go)
	corked []*conn           // connections it wrote to in this burst (stream.go)

	bursts    uint64 // calls of drainSocket
	handedOff uint64 // the last burst that gave a call to a signer or verifier goroutine (see drainSocket)
	rng       *mrand.ChaCha8
	flow      bpf.Flow // inline mode: the original addresses of the datagram in hand
	tn        [2][]byte
	raw       []byte           // digits as dialled, before canonicalisation
	ann       []byte           // the identities forwardUnverified rewrites
	rt        claims.Retargets // a forwarded call's hops (divert.go)
	recv      received         // what its received PASSporTs reach
	clean     []byte           // an unverified INVITE without the caller's RCD Call-Info (rcd.go)
	cis       []sip.CallInfo
	free      chan *job
	made      atomic.Int32 // jobs made so far (free, lent out, or in sendq), at most MaxInFlight; written by the loop only
	sendq     chan *job
	hist      *metrics.Histogram
}

// newLoop makes a loop's state; fd is its UDP socket (-1: none yet), idle
// whether it does the signer's idle work (gnet loops do; TLS loops,
// which never wait on a socket, do not).
func (s *Server) newLoop(fd, idx int, idle bool) *loop {
	txfd, v6 := fd, false
	if fd >= 0 {
		v6 = isV6(fd)
	} else {
		txfd, v6 = s.udpOut, s.udpOutV6
	}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	l := &loop{
		s:     s,
		eg:    s.eg,
		fd:    fd,
		idx:   idx,
		out:   make([]byte, 0, sip.MaxMessage+outSlack),
		sc:    newScratch(),
		tx:    newBatch(txfd, v6),
		arena: make([]byte, txArena),
		rng:   mrand.NewChaCha8(seed),
		tn:    [2][]byte{make([]byte, 0, 32), make([]byte, 0, 32)},
		raw:   make([]byte, 0, 64),
		ann:   make([]byte, 0, 1024),
		clean: make([]byte, 0, sip.MaxMessage),
		cis:   make([]sip.CallInfo, 0, 8),
		free:  make(chan *job, s.cfg.MaxInFlight),
		sendq: make(chan *job, s.cfg.MaxInFlight),
		hist:  latencyHistogram(idx),
		peers: map[peerKey]*conn{},
	}
	if fd >= 0 {
		l.rx = newRx(fd)
	}
	// The free list starts small and grows on demand up to MaxInFlight
	// (getJob): 4096 jobs of about 10 KiB each, allocated and faulted in on
	// a loop's first datagram, held that datagram 70-250 ms on a busy host
	// (bench/interop's trace of the first calls through a fresh appliance).
	for range min(initialJobs, s.cfg.MaxInFlight) {
		l.free <- newJob(l)
		l.made.Add(1)
	}
	l.ws = newJob(l)
	l.noIdle = !idle
	l.followCredential(s.cfg.Credential.Load())
	l.bursts = lingerQuiet // no hand-off yet: the loop may linger from the start
	s.wg.Add(1)
	go l.runSender(newBatch(txfd, v6), s.stopSenders)
	return l
}

// getJob takes a job from the free list, or makes one while fewer than
// MaxInFlight exist (an allocation while the pool grows to what the load
// needs, never once it has). nil: MaxInFlight jobs are out.
func (l *loop) getJob() *job {
	select {
	case j := <-l.free:
		return j
	default:
	}
	if int(l.made.Load()) < l.s.cfg.MaxInFlight {
		l.made.Add(1)
		return newJob(l)
	}
	return nil
}

// initialJobs is how many jobs a loop makes when it starts.
const initialJobs = 32

// followCredential makes the loop's idle work that of c's signer (after a
// renewal switched the credential; the old signer is retired later).
func (l *loop) followCredential(c *credential.Credential) {
	if l.idle != nil {
		l.idle.Close()
		l.idle = nil
	}
	l.idleCred = c
	if l.noIdle {
		return
	}
	if iw, ok := c.Signer.(interface{ IdleWork(shard int) hsm.IdleWork }); ok {
		l.idle = iw.IdleWork(l.idx) // the shard TrySign uses
	}
}
