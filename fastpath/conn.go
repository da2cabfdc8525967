package fastpath

import (
	"crypto/tls"
	"errors"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Stream connection limits that are not configuration (docs/ARCHITECTURE.md,
// "SIP over TCP and TLS").
const (
	// maxBacklog is the most bytes waiting to be written to one
	// connection: past it messages for the connection are dropped,
	// counted (as UDP drops datagrams when a socket buffer is full), and
	// a connection that stays past it for stuckTimeout (a peer that does
	// not read) is closed.
	maxBacklog = 1 << 20
	// streamBufferBudget is the most bytes lent at once to incomplete
	// messages and queued output of all connections (bufPool).
	streamBufferBudget = 64 << 20
	// dialTimeout bounds a connection attempt, TLS handshake included;
	// handshakeTimeout an inbound TLS handshake.
	dialTimeout      = 5 * time.Second
	handshakeTimeout = 10 * time.Second
	// writeTimeout bounds one write of a TLS connection's writer.
	writeTimeout = 10 * time.Second
	// sweepEvery is how often idle and slow connections are looked for.
	sweepEvery = time.Second
	// backoffMin and backoffMax bound the wait before connecting again
	// to an address that refused (doubling from min to max).
	backoffMin = 250 * time.Millisecond
	backoffMax = 30 * time.Second
)

// stuckTimeout is how long a connection's backlog may stay full before the
// connection is closed (a var for the tests).
var stuckTimeout = 10 * time.Second

// Defaults of the configurable limits (Config).
const (
	DefaultMaxConnections = 16384
	DefaultMaxPerSource   = 256
	DefaultIdleTimeout    = 120 * time.Second
	// DefaultMessageTimeout is how long an incomplete message may take to
	// arrive whole (a slowloris client sending a byte at a time).
	DefaultMessageTimeout = 10 * time.Second
)

// closeReason is why a connection closed (label of
// shakenline_sip_connections_closed_total).
type closeReason uint32

const (
	closeNone closeReason = iota
	closePeer
	closeIdle
	closeSlow
	closeTooLarge
	closeTooManyHeaders
	closeNoContentLength
	closeBadContentLength
	closeBudget
	closeBacklog
	closeWriteError
	closeHandshake
	closeConnect
	closeShutdown
	nCloseReasons
)

var closeReasonNames = [nCloseReasons]string{"none", "peer", "idle", "slow-message", "too-large",
	"too-many-headers", "no-content-length", "bad-content-length", "buffer-budget", "backlog",
	"write-error", "tls-handshake", "connect-failed", "shutdown"}

// frameClose maps a framing error to the reason it closes the connection.
var frameClose = [...]closeReason{frameOK: closeNone, frameTooLarge: closeTooLarge,
	frameTooManyHeaders: closeTooManyHeaders, frameNoContentLength: closeNoContentLength,
	frameBadContentLength: closeBadContentLength, frameBudget: closeBudget}

// connState is a connection's life: connecting (outbound, not yet open;
// what is sent meanwhile waits in pend), open, closed.
type connState uint32

const (
	connConnecting connState = iota
	connOpen
	connClosed
)

// conn is one SIP connection, TCP or TLS, inbound or outbound. A TCP
// connection's socket belongs to its home loop (gnet): only that loop
// reads it and writes it; another goroutine's message waits in pend and
// the home loop is woken to write it. A TLS connection has a reader and
// a writer goroutine of its own; anyone queues in pend for the writer.
// Conn values are never reused, so a pointer held by a job stays safe
// after the connection closes (its state says closed).
type conn struct {
	s    *Server
	id   uint64 // tag<<32 | slot in the connection table (our Via's ;i=)
	tr   Transport
	peer netip.AddrPort
	out  bool // we opened it (a next hop, or a client's address by its Via)
	fr   framer

	// TCP, on the home loop only (home itself is read by any loop).
	home   atomic.Pointer[loop]
	gc     gnet.Conn // set on the home loop, read by others under mu
	wpb    *[]byte   // this burst's output (flushed by loop.flush), nil when none
	wbuf   []byte
	corked bool

	// TLS.
	tc   *tls.Conn
	kick chan struct{} // wakes the writer

	mu    sync.Mutex
	state atomic.Uint32 // connState; written under mu
	ppb   *[]byte       // pend's pooled buffer
	pend  []byte        // output queued by other goroutines (or before the connection opened)

	last    atomic.Int64  // unix ns of the last message in or out
	full    atomic.Int64  // unix ns since when its backlog is full (0: it is not)
	partial atomic.Int64  // unix ns when the incomplete message the framer holds began; 0: none
	reason  atomic.Uint32 // why it is being closed, once asked (closeReason)

	// Outbound: when to try the address again after this attempt failed
	// (unix ns; 0: at once) and the wait that led to it.
	retryAt atomic.Int64
	backoff time.Duration
}

func (c *conn) isClosed() bool { return connState(c.state.Load()) == connClosed }
func (c *conn) isOpen() bool   { return connState(c.state.Load()) == connOpen }

// touch records traffic now (the idle timeout counts from the last).
func (c *conn) touch(now int64) {
	if c.last.Load() != now {
		c.last.Store(now)
	}
}

// send sends b (a whole message) on c from loop l (nil: not a loop, such
// as a signer's sender goroutine). On c's home loop it is written with the
// rest of the burst (loop.flush); anywhere else it is copied into pend and
// the connection's writer is woken. It reports false, counted, when the
// message cannot go: the connection is closed, or its backlog full.
func (c *conn) send(l *loop, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	if l != nil && c.tr == TCP && l == c.home.Load() && c.isOpen() {
		return l.cork(c, b)
	}
	c.mu.Lock()
	st := connState(c.state.Load())
	if st == connClosed {
		c.mu.Unlock()
		mStreamDropped[dropClosed].Inc()
		return false
	}
	if len(c.pend)+len(b) > maxBacklog || !c.pendRoom(len(b)) {
		c.mu.Unlock()
		c.overflow()
		return false
	}
	first := len(c.pend) == 0
	c.pend = append(c.pend, b...)
	gc := c.gc
	c.mu.Unlock()
	mSentBy[c.tr].Inc()
	c.touch(time.Now().UnixNano())
	if first && st == connOpen {
		c.wake(gc)
	}
	return true
}

// overflow drops a message for c's full backlog, counted, and closes c
// once its backlog has been full for stuckTimeout.
func (c *conn) overflow() {
	mStreamDropped[dropBacklog].Inc()
	now := time.Now().UnixNano()
	since := c.full.Load()
	switch {
	case since == 0:
		c.full.Store(now)
	case now-since > int64(stuckTimeout):
		c.shut(closeBacklog)
	}
}

// pendRoom makes room for n more bytes in pend (under mu): a pooled buffer
// while it fits the largest size, the heap past it (up to maxBacklog).
func (c *conn) pendRoom(n int) bool {
	need := len(c.pend) + n
	if need <= cap(c.pend) {
		return true
	}
	if need > bufSizes[len(bufSizes)-1] {
		if c.ppb != nil { // leave the pool: a large backlog is rare
			b := make([]byte, len(c.pend), need*2)
			copy(b, c.pend)
			c.s.bufs.put(c.ppb)
			c.ppb, c.pend = nil, b
		}
		return true
	}
	pb := c.s.bufs.get(need)
	if pb == nil {
		return false
	}
	b := append((*pb)[:0], c.pend...)
	c.s.bufs.put(c.ppb)
	c.ppb, c.pend = pb, b
	return true
}

// dropPend empties pend and returns its buffer (under mu).
func (c *conn) dropPend() {
	if c.ppb != nil {
		*c.ppb = c.pend[:0]
		c.s.bufs.put(c.ppb)
	}
	c.ppb, c.pend = nil, nil
}

// wake asks the goroutine that writes c to write pend: the home loop
// (gnet runs OnTraffic for c) or the TLS writer.
func (c *conn) wake(gc gnet.Conn) {
	switch {
	case c.tr == TLS:
		select {
		case c.kick <- struct{}{}:
		default:
		}
	case gc != nil:
		_ = gc.Wake(nil)
	}
}

// shut asks for c to be closed for reason, from any goroutine; the first
// reason given is the one counted. The closing itself happens on the
// goroutine that owns the socket (finish).
func (c *conn) shut(reason closeReason) {
	if !c.reason.CompareAndSwap(0, uint32(reason)) {
		return
	}
	c.mu.Lock()
	gc, tc := c.gc, c.tc
	c.mu.Unlock()
	switch {
	case tc != nil:
		_ = tc.Close()
	case gc != nil:
		_ = gc.Close()
	}
}

// finish is the end of c, on the goroutine that owned its socket: it is
// marked closed, what waits in pend is dropped, its buffers go back and
// its slot is freed. reason is used when no other was asked for.
func (c *conn) finish(reason closeReason) {
	c.mu.Lock()
	if connState(c.state.Load()) == connClosed {
		c.mu.Unlock()
		return
	}
	c.state.Store(uint32(connClosed))
	if len(c.pend) > 0 {
		mStreamDropped[dropClosed].Inc()
	}
	c.dropPend()
	c.mu.Unlock()
	if !c.reason.CompareAndSwap(0, uint32(reason)) {
		reason = closeReason(c.reason.Load())
	}
	mConnClosed[reason].Inc()
	c.fr.release()
	c.partial.Store(0)
	c.s.conns.remove(c)
}

// connTable numbers the open connections (our Via's ;i= parameter names
// one), enforces the limits on inbound ones, and is what the sweeper walks.
// Lookups are lock-free; adding and removing take its mutex (once per
// connection, never per message).
type connTable struct {
	slots  []atomic.Pointer[conn]
	mu     sync.Mutex
	free   []uint32
	bySrc  map[netip.Addr]int
	in     int // inbound connections open
	max    int // inbound connections at most
	perSrc int // inbound connections from one address at most
	rng    *mrand.ChaCha8
}

// Errors of connTable.add, counted by the caller.
var (
	errTooMany      = errors.New("fastpath: connection limit reached")
	errTooManyBySrc = errors.New("fastpath: connection limit for this source reached")
)

func newConnTable(max, perSrc int) *connTable {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(time.Now().UnixNano() >> (i % 8 * 8))
	}
	t := &connTable{max: max, perSrc: perSrc, bySrc: map[netip.Addr]int{},
		rng: mrand.NewChaCha8(seed)}
	// Outbound connections (next hops, clients reached by their Via) have
	// slots of their own beyond the inbound limit.
	n := max + max/4 + 64
	t.slots = make([]atomic.Pointer[conn], n)
	t.free = make([]uint32, n)
	for i := range t.free {
		t.free[i] = uint32(n - 1 - i)
	}
	return t
}

// add gives c a slot and its id; an inbound connection counts against
// the limits and is refused past them.
func (t *connTable) add(c *conn) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !c.out {
		if t.in >= t.max {
			return errTooMany
		}
		if t.bySrc[c.peer.Addr()] >= t.perSrc {
			return errTooManyBySrc
		}
	}
	if len(t.free) == 0 {
		return errTooMany
	}
	slot := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	var tag uint32
	for tag == 0 {
		tag = uint32(t.rng.Uint64())
	}
	c.id = uint64(tag)<<32 | uint64(slot)
	if !c.out {
		t.in++
		t.bySrc[c.peer.Addr()]++
	}
	nOpen[c.tr][dirOf(c.out)].Add(1)
	t.slots[slot].Store(c)
	return nil
}

func (t *connTable) remove(c *conn) {
	slot := uint32(c.id)
	if c.id == 0 || int(slot) >= len(t.slots) || t.slots[slot].Load() != c {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.slots[slot].Store(nil)
	t.free = append(t.free, slot)
	if !c.out {
		t.in--
		if n := t.bySrc[c.peer.Addr()] - 1; n > 0 {
			t.bySrc[c.peer.Addr()] = n
		} else {
			delete(t.bySrc, c.peer.Addr())
		}
	}
	nOpen[c.tr][dirOf(c.out)].Add(-1)
}

// get returns the connection with id, nil when it is gone.
func (t *connTable) get(id uint64) *conn {
	slot := uint32(id)
	if int(slot) >= len(t.slots) {
		return nil
	}
	c := t.slots[slot].Load()
	if c == nil || c.id != id {
		return nil
	}
	return c
}

// each calls fn for every connection in the table.
func (t *connTable) each(fn func(*conn)) {
	for i := range t.slots {
		if c := t.slots[i].Load(); c != nil {
			fn(c)
		}
	}
}

func dirOf(out bool) int {
	if out {
		return 1
	}
	return 0
}

// sweep closes, once a second, the connections idle past the idle
// timeout and those whose incomplete message is older than
// Config.MessageTimeout, until stop is closed.
func (s *Server) sweep(stop <-chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.sweepOnce(now.UnixNano())
		}
	}
}

func (s *Server) sweepOnce(now int64) {
	idle := int64(s.cfg.IdleTimeout)
	s.conns.each(func(c *conn) {
		if p := c.partial.Load(); p != 0 && now-p > int64(s.cfg.MessageTimeout) {
			c.shut(closeSlow)
			return
		}
		if now-c.last.Load() > idle && connState(c.state.Load()) != connConnecting {
			c.shut(closeIdle)
		}
	})
}

// readStream frames what arrived on c (in, valid during the call) and
// routes each message on loop l; a ping is answered with CRLF. It reports
// false when c is to be closed (its reason set).
func (l *loop) readStream(c *conn, in []byte) bool {
	now := time.Now().UnixNano()
	c.touch(now)
	emitted := false
	for len(in) > 0 {
		n, msg, ping, err := c.fr.next(in)
		in = in[n:]
		switch {
		case err != frameOK:
			mFrameErrors[err].Inc()
			c.reason.CompareAndSwap(0, uint32(frameClose[err]))
			if ok, n := l.s.limit.allow(logFraming); ok {
				l.s.log.Warn("fastpath: SIP stream cannot be framed; connection closed",
					"transport", c.tr.String(), "from", c.peer, "reason", closeReasonNames[frameClose[err]], "suppressed_since_last", n)
			}
			return false
		case ping:
			mKeepalives.Inc()
			c.send(l, crlf)
		case msg != nil:
			emitted = true
			l.routeMessage(msg, c.peer, ingress{tr: c.tr, conn: c})
		}
	}
	// The incomplete message held now began in this read when another
	// one ended in it.
	if c.fr.partial() {
		if emitted || c.partial.Load() == 0 {
			c.partial.Store(now)
		}
	} else if c.partial.Load() != 0 {
		c.partial.Store(0)
	}
	return true
}

// crlf is the pong of RFC 5626 section 3.5.1.
var crlf = []byte("\r\n")
