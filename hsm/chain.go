package hsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a signer Chain. Zero fields take the defaults shown.
type Config struct {
	// Signers in order of preference: a request goes to the first whose
	// breaker admits it and moves down the list on failure or timeout.
	Signers []SignerConfig
	// Budget is the per-call signing budget applied when a Request has no
	// Deadline. Past it the request fails with ErrBudget. Default 100ms.
	Budget time.Duration
	// QueueDepth is the queue length of each signer. When the first
	// admitting signer's queue is full the request spills to the next one;
	// when every queue is full Submit returns ErrQueueFull. Default 4096.
	QueueDepth int
	// Batch controls how workers take requests off their queue.
	Batch Batch
	// Breaker is the default for signers that leave theirs zero.
	Breaker Breaker
}

// Batch controls gathering. A worker that becomes free takes the first
// waiting request at once and up to MaxSize-1 more that are already queued,
// but never more than its fair share (queued/workers) so the other sessions
// get work too: the device is never idle while requests wait. With MaxWait
// > 0 a worker holding fewer than MaxSize requests waits up to MaxWait for
// more before signing, trading latency for fewer wake-ups; 0 (default) never
// waits.
type Batch struct {
	MaxSize int           // default 16
	MaxWait time.Duration // default 0
}

// SignerConfig is one link of the chain: either a PKCS#11 URI that New opens
// or a ready Signer (e.g. *Software).
type SignerConfig struct {
	// Name overrides the signer's name in metrics and health.
	Name string
	// PKCS11 is an RFC 7512 pkcs11: URI (module-path, token, object/id,
	// pin-source=file:...). Ignored when Signer is set.
	PKCS11 string
	// Signer is used as is when set.
	Signer Signer
	// Workers is the number of goroutines signing for this link; for
	// PKCS#11 each owns one session. Default for PKCS#11: GOMAXPROCS (the
	// CPUs the process may use), at least 4 and at most 8; GOMAXPROCS
	// otherwise.
	Workers int
	// Timeout bounds one signing call; a call still running after it is
	// taken away from the worker and sent to the next signer, and counts as
	// a failure. Default 50ms.
	Timeout time.Duration
	// Breaker overrides Config.Breaker field by field.
	Breaker Breaker
	// ReopenMax caps the backoff between attempts to reopen lost PKCS#11
	// sessions. Default 2s.
	ReopenMax time.Duration
}

// SignerHealth is one signer's state for /healthz, /readyz and logs.
type SignerHealth struct {
	Name      string `json:"name"`
	State     string `json:"state"`    // StateClosed, StateOpen, StateHalfOpen
	Ready     bool   `json:"ready"`    // sessions usable and workers not all stuck
	Sessions  int    `json:"sessions"` // open PKCS#11 sessions, or workers for other signers
	Queue     int    `json:"queue"`
	LastError string `json:"lastError,omitempty"`
}

// Chain is a Dispatcher over an ordered list of signers, each with its own
// workers, queue, timeout and circuit breaker.
type Chain struct {
	links  []*link
	budget time.Duration
	cancel context.CancelFunc
	wg     sync.WaitGroup
	owned  []*PKCS11
	once   sync.Once
}

type link struct {
	c       *Chain
	idx     int
	name    string
	s       Signer
	p11     *PKCS11 // when s is a PKCS#11 signer
	timeout int64
	batch   Batch
	br      breaker
	q       chan *Request
	bs      batchSigner // when s signs several digests per call
	workers []*worker
	ewmaNS  atomic.Int64 // moving average of one signature's duration, 0 until measured
	wedged  atomic.Bool  // every worker is stuck in a call past timeout
	lastErr atomic.Pointer[errBox]

	*linkMetrics // shared by the live links of every chain with this name (metrics.go)
}

type worker struct {
	slots     []atomic.Pointer[Request] // the batch in hand
	cur       atomic.Pointer[Request]   // the request being signed
	callStart atomic.Int64              // nanotime when the call began, 0 when idle
	digest    [32]byte                  // copies: r may be taken away mid-call
	sig       [64]byte
	timer     *time.Timer
	buf       *signBuf // batch path: digests in, signatures out
	errs      []error
}

// batchSigner signs b.digest[:n] in one call (the PKCS#11 signer: one
// session, one cgo crossing). A non-nil result fails the whole batch;
// otherwise errs[i] is digest i's.
type batchSigner interface {
	signBatch(ctx context.Context, b *signBuf, n int, errs []error) error
}

const (
	failError = iota
	failTimeout
	failSessionLost
	nFail
)

var failNames = [nFail]string{"error", "timeout", "session-lost"}

// New opens the PKCS#11 signers of cfg, checks every signer's key against
// cert (the FCC own-certificate rule: each link signs with the provider's
// own key) and starts the workers. Cancel ctx or call Close to stop.
func New(ctx context.Context, cfg Config, cert *x509.Certificate) (*Chain, error) {
	if cert == nil {
		return nil, errors.New("hsm: no certificate")
	}
	want, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || want.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: certificate key", ErrNotP256)
	}
	if len(cfg.Signers) == 0 {
		return nil, fmt.Errorf("%w: chain has no signers", ErrNoSigner)
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 100 * time.Millisecond
	}
	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = 4096
	}
	if cfg.Batch.MaxSize <= 0 {
		cfg.Batch.MaxSize = 16
	}
	cfg.Batch.MaxSize = min(cfg.Batch.MaxSize, maxBatch)
	cfg.Breaker = fillBreaker(cfg.Breaker, Breaker{Failures: 5, OpenFor: time.Second, HalfOpenProbes: 1})

	c := &Chain{budget: cfg.Budget}
	fail := func(err error) (*Chain, error) {
		for _, l := range c.links {
			l.releaseMetrics()
		}
		for _, p := range c.owned {
			_ = p.Close()
		}
		return nil, err
	}
	for i, sc := range cfg.Signers {
		l := &link{c: c, idx: i, batch: cfg.Batch}
		if sc.Timeout <= 0 {
			sc.Timeout = 50 * time.Millisecond
		}
		l.timeout = int64(sc.Timeout)
		l.br.init(fillBreaker(sc.Breaker, cfg.Breaker))
		switch {
		case sc.Signer != nil:
			l.s = sc.Signer
			if p, ok := sc.Signer.(*PKCS11); ok {
				l.p11 = p
			}
			if sc.Workers <= 0 {
				sc.Workers = runtime.GOMAXPROCS(0)
			}
		case sc.PKCS11 != "":
			u, err := ParseURI(sc.PKCS11)
			if err != nil {
				return fail(fmt.Errorf("%w (signer %d)", err, i+1))
			}
			if sc.Workers <= 0 {
				sc.Workers = defaultPKCS11Workers()
			}
			p, err := OpenPKCS11(u, PKCS11Options{Name: sc.Name, Sessions: sc.Workers, Want: want, ReopenMax: sc.ReopenMax})
			if err != nil {
				return fail(fmt.Errorf("%w (signer %d)", err, i+1))
			}
			c.owned = append(c.owned, p)
			l.s, l.p11 = p, p
		default:
			return fail(fmt.Errorf("hsm: signer %d: neither PKCS11 nor Signer set", i+1))
		}
		l.name = l.s.Name()
		if sc.Name != "" {
			l.name = sc.Name
		}
		if pub := l.s.Public(); pub == nil || !pub.Equal(want) {
			return fail(fmt.Errorf("%w: signer %q", ErrKeyMismatch, l.name))
		}
		l.q = make(chan *Request, cfg.QueueDepth)
		l.bs, _ = l.s.(batchSigner)
		l.workers = make([]*worker, sc.Workers)
		for j := range l.workers {
			w := &worker{slots: make([]atomic.Pointer[Request], cfg.Batch.MaxSize)}
			if l.bs != nil {
				w.buf, w.errs = new(signBuf), make([]error, cfg.Batch.MaxSize)
			}
			if cfg.Batch.MaxWait > 0 {
				w.timer = time.NewTimer(time.Hour)
				w.timer.Stop()
			}
			l.workers[j] = w
		}
		l.metrics()
		c.links = append(c.links, l)
	}
	ctx, c.cancel = context.WithCancel(ctx)
	for _, l := range c.links {
		for _, w := range l.workers {
			c.wg.Go(func() { l.work(ctx, w) })
		}
		c.wg.Go(func() { l.monitor(ctx) })
	}
	context.AfterFunc(ctx, func() { _ = c.Close() })
	return c, nil
}

// defaultPKCS11Workers sizes a PKCS#11 link to the CPUs the process may
// use, with four at least. A token in the process (SoftHSM) signs on those
// CPUs, and with batched calls its throughput on one core barely changes
// from 1 to 8 sessions (bench/hsmraw); a device in another process or box
// executes calls while the caller waits on the wire, and there each session
// keeps one more request in flight (bench/hsmraw BenchmarkRemote).
func defaultPKCS11Workers() int {
	return min(max(runtime.GOMAXPROCS(0), 4), 8)
}

// maxBatchTime bounds the expected duration of one batch call.
const maxBatchTime = 2 * time.Millisecond

func fillBreaker(b, def Breaker) Breaker {
	if b.Failures <= 0 {
		b.Failures = def.Failures
	}
	if b.OpenFor <= 0 {
		b.OpenFor = def.OpenFor
	}
	if b.HalfOpenProbes <= 0 {
		b.HalfOpenProbes = def.HalfOpenProbes
	}
	return b
}

// Submit implements Dispatcher. It never blocks and does not allocate.
func (c *Chain) Submit(r *Request) error {
	if r.Deadline.IsZero() {
		r.Deadline = time.Now().Add(c.budget)
	}
	r.Err, r.SignedBy = nil, ""
	if err := c.dispatch(r, 0); err != nil {
		countUnsigned(err)
		return err
	}
	return nil
}

// trySigner is a signer that can sign at once without blocking (the
// software signer with a warm nonce pool).
type trySigner interface {
	TrySignDigest(shard int, digest *[32]byte, sig *[64]byte) bool
}

// TrySign signs r on the caller's goroutine when the link the chain would
// pick for it (the first usable one whose breaker is closed) can sign
// without blocking, and reports whether it did; on true r.Sig and
// r.SignedBy are set and Done is NOT called. On false nothing happened and
// the caller submits r. The chain's order is kept: when an HSM comes first,
// TrySign always reports false. shard spreads callers over the signer's
// nonce pools (an event loop passes its own index). The latency histogram
// is not updated on this path (its mutex would be shared by all loops).
func (c *Chain) TrySign(r *Request, shard int) bool {
	for _, l := range c.links {
		if !l.usable() {
			continue
		}
		ok, probe := l.br.allow()
		if !ok {
			continue
		}
		if probe {
			l.br.unprobe()
			return false
		}
		ts, can := l.s.(trySigner)
		if !can || !ts.TrySignDigest(shard, &r.Digest, &r.Sig) {
			return false
		}
		l.mSigned.Inc()
		r.Err, r.SignedBy = nil, l.name
		return true
	}
	return false
}

// IdleWork is background work a caller does itself in small slices
// between its own tasks (an event loop between datagrams): Step does one
// slice (tens of microseconds at most) and reports whether it did any;
// false means there is nothing to do now and the caller may sleep. Close
// wipes what a slice under way holds. Not safe for concurrent use.
type IdleWork interface {
	Step() bool
	Close()
}

// idleWorker is a signer with IdleWork (the software signer's nonce pools).
type idleWorker interface {
	IdleWork(shard int) IdleWork
}

// IdleWork returns idle work for shard (see TrySign) that follows the
// chain's choice of signer, or nil when no link has any. Each Step steps the
// work of the link TrySign would sign with now (the first usable link whose
// breaker is closed), and only that: while a software key signs the calls, a
// loop that refills its nonce pool in its idle gaps never sleeps or wakes for
// it; while an HSM signs them, the software fallback's pool is left to its
// background workers at idle priority, and the CPU to the HSM's sessions.
func (c *Chain) IdleWork(shard int) IdleWork {
	ci := &chainIdle{c: c, ws: make([]IdleWork, len(c.links))}
	has := false
	for i, l := range c.links {
		if iw, ok := l.s.(idleWorker); ok {
			ci.ws[i] = iw.IdleWork(shard)
			has = true
		}
	}
	if !has {
		return nil
	}
	return ci
}

// chainIdle is a Chain's IdleWork: one IdleWork per link, nil where the
// link has none.
type chainIdle struct {
	c  *Chain
	ws []IdleWork
}

func (ci *chainIdle) Step() bool {
	for i, l := range ci.c.links {
		if !l.usable() || l.br.state.Load() != bClosed {
			continue
		}
		return ci.ws[i] != nil && ci.ws[i].Step()
	}
	return false
}

func (ci *chainIdle) Close() {
	for _, w := range ci.ws {
		if w != nil {
			w.Close()
		}
	}
}

// dispatch queues r at the first link from index from on that is usable
// and whose breaker admits it.
func (c *Chain) dispatch(r *Request, from int) error {
	full := false
	for i := from; i < len(c.links); i++ {
		l := c.links[i]
		if !l.usable() {
			continue
		}
		ok, probe := l.br.allow()
		if !ok {
			continue
		}
		if l.wouldMiss(r) {
			// The queue ahead of r would outlast its budget: try the next
			// signer, or bypass now, rather than answer after the call gave up.
			full = true
			if probe {
				l.br.unprobe()
			}
			continue
		}
		r.hop = i // before the send: after it, a worker owns r
		select {
		case l.q <- r:
			return nil
		default:
			full = true
			if probe {
				l.br.unprobe()
			}
		}
	}
	if full {
		return ErrQueueFull
	}
	return ErrNoSigner
}

// wouldMiss estimates whether r, queued on l now, would start signing after
// its deadline: the requests ahead of it, spread over l's workers, times
// the average signature time.
func (l *link) wouldMiss(r *Request) bool {
	avg := l.ewmaNS.Load()
	if avg == 0 || len(l.workers) == 0 {
		return false
	}
	wait := time.Duration(int64(len(l.q)) * avg / int64(len(l.workers)))
	return time.Now().Add(wait).After(r.Deadline)
}

// observe feeds one signature's duration into the moving average (weight
// 1/8). Racing workers may lose an update; the estimate stays close.
func (l *link) observe(ns int64) {
	old := l.ewmaNS.Load()
	if old == 0 {
		l.ewmaNS.Store(ns)
		return
	}
	l.ewmaNS.Store(old + (ns-old)/8)
}

// forward moves r past link from-1 after a failure or timeout there.
func (c *Chain) forward(r *Request, from int) {
	if time.Now().After(r.Deadline) {
		c.finish(r, ErrBudget)
		return
	}
	if err := c.dispatch(r, from); err != nil {
		c.finish(r, err)
	}
}

func (c *Chain) finish(r *Request, err error) {
	r.Err = err
	countUnsigned(err)
	r.Done(r)
}

func (l *link) usable() bool {
	if l.wedged.Load() {
		return false
	}
	return l.p11 == nil || l.p11.Ready()
}

func (l *link) sessions() int {
	if l.p11 != nil {
		return l.p11.Sessions()
	}
	return len(l.workers)
}

func (l *link) work(ctx context.Context, w *worker) {
	maxN := len(w.slots)
	nw := len(l.workers)
	for {
		var r *Request
		select {
		case <-ctx.Done():
			return
		case r = <-l.q:
		}
		w.slots[0].Store(r)
		n := 1
		limit := min(maxN, 1+len(l.q)/nw)
		if l.bs != nil {
			// The batch is one call on one session: keep it short, so that
			// it stays far inside the timeout (which the monitor applies to
			// the whole call) and a slow device (a network HSM, whose
			// signatures are round trips) spreads a queue over its
			// sessions instead of serialising it on one.
			if avg := l.ewmaNS.Load(); avg > 0 {
				limit = min(limit, max(1, int(min(l.timeout/8, int64(maxBatchTime))/avg)))
			}
		}
	drain:
		for n < limit {
			select {
			case r = <-l.q:
				w.slots[n].Store(r)
				n++
			default:
				break drain
			}
		}
		if w.timer != nil && n < maxN {
			w.timer.Reset(l.batch.MaxWait)
		gather:
			for n < maxN {
				select {
				case r = <-l.q:
					w.slots[n].Store(r)
					n++
				case <-w.timer.C:
					break gather
				}
			}
			w.timer.Stop()
		}
		if l.bs != nil {
			l.signBatch(ctx, w, n)
			continue
		}
		for i := range n {
			if r := w.slots[i].Swap(nil); r != nil {
				l.sign(ctx, w, r)
			}
		}
	}
}

// sign runs one request on this link. The worker owns r only while it holds
// it in w.cur: the monitor may take it away on timeout, after which the
// worker must not touch r (its submitter may already be reusing it).
func (l *link) sign(ctx context.Context, w *worker, r *Request) {
	if time.Now().After(r.Deadline) {
		l.c.finish(r, ErrBudget)
		return
	}
	w.digest = r.Digest
	w.cur.Store(r)
	start := nanotime()
	w.callStart.Store(start)
	err := l.s.SignDigest(ctx, &w.digest, &w.sig)
	el := nanotime() - start
	l.observe(el)
	w.callStart.Store(0)
	if !w.cur.CompareAndSwap(r, nil) {
		return // timed out: the monitor sent r on
	}
	if err == nil {
		l.br.success()
		l.mSigned.Inc()
		l.mLatency.Update(float64(el) / 1e9)
		r.Sig = w.sig
		r.SignedBy = l.name
		r.Done(r)
		return
	}
	kind := failError
	if errors.Is(err, ErrSessionLost) || sessionLost(err) {
		kind = failSessionLost
	}
	l.failed(kind, err)
	l.c.forward(r, l.idx+1)
}

// signBatch signs the n requests in w.slots in one call. While the call
// runs (callStart set) the monitor may take every slot away on timeout;
// the worker delivers only the requests it can still swap out.
func (l *link) signBatch(ctx context.Context, w *worker, n int) {
	now := time.Now()
	k := 0
	for i := range n {
		r := w.slots[i].Swap(nil)
		if r == nil {
			continue // a late monitor tick took it (it saw the previous call stuck)
		}
		if now.After(r.Deadline) {
			l.c.finish(r, ErrBudget)
			continue
		}
		w.buf.digest[k] = r.Digest
		w.slots[k].Store(r)
		k++
	}
	if k == 0 {
		return
	}
	start := nanotime()
	w.callStart.Store(start)
	err := l.bs.signBatch(ctx, w.buf, k, w.errs)
	el := nanotime() - start
	l.observe(el / int64(k))
	w.callStart.Store(0)
	failed := false
	for i := range k {
		r := w.slots[i].Swap(nil)
		if r == nil {
			continue // timed out: the monitor sent it on
		}
		e := err
		if e == nil {
			e = w.errs[i]
		}
		if e == nil {
			l.br.success()
			l.mSigned.Inc()
			l.mLatency.Update(float64(el) / float64(k) / 1e9)
			r.Sig = w.buf.sig[i]
			r.SignedBy = l.name
			r.Done(r)
			continue
		}
		if !failed || err == nil {
			kind := failError
			if errors.Is(e, ErrSessionLost) || sessionLost(e) {
				kind = failSessionLost
			}
			l.failed(kind, e)
			failed = true
		}
		l.c.forward(r, l.idx+1)
	}
}

func (l *link) failed(kind int, err error) {
	l.mFail[kind].Inc()
	l.br.failure()
	if err != nil {
		l.lastErr.Store(&errBox{err})
	}
}

var errCallTimeout = errors.New("hsm: signing call timed out")

// monitor takes requests away from calls that overran the link's timeout,
// marks the link wedged when every worker is stuck, and then hands its
// queue to the next signers.
func (l *link) monitor(ctx context.Context) {
	period := min(max(time.Duration(l.timeout)/4, time.Millisecond), 20*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := nanotime()
		stuck := 0
		for _, w := range l.workers {
			cs := w.callStart.Load()
			if cs == 0 || now-cs <= l.timeout {
				continue
			}
			stuck++
			if r := w.cur.Swap(nil); r != nil {
				l.failed(failTimeout, errCallTimeout)
				l.c.forward(r, l.idx+1)
			}
			took := false
			for i := range w.slots {
				if r := w.slots[i].Swap(nil); r != nil {
					took = true
					l.c.forward(r, l.idx+1)
				}
			}
			if took && l.bs != nil {
				// The batch path signs every slot in the one call.
				l.failed(failTimeout, errCallTimeout)
			}
		}
		l.wedged.Store(stuck == len(l.workers))
		if !l.usable() {
		drain:
			for {
				select {
				case r := <-l.q:
					l.c.forward(r, l.idx+1)
				default:
					break drain
				}
			}
		}
		l.br.stuckProbes(2 * l.timeout)
	}
}

// Health reports every signer in chain order.
func (c *Chain) Health() []SignerHealth {
	out := make([]SignerHealth, len(c.links))
	for i, l := range c.links {
		h := SignerHealth{
			Name:     l.name,
			State:    stateNames[l.br.state.Load()],
			Ready:    l.usable(),
			Sessions: l.sessions(),
			Queue:    len(l.q),
		}
		if b := l.lastErr.Load(); b != nil {
			h.LastError = b.err.Error()
		}
		if l.p11 != nil && !l.p11.Ready() {
			if err := l.p11.LastError(); err != nil {
				h.LastError = err.Error()
			}
		}
		out[i] = h
	}
	return out
}

// Ready reports whether at least one signer can take requests now
// (usable, breaker not open): the /readyz answer.
func (c *Chain) Ready() bool {
	for _, l := range c.links {
		if l.usable() && l.br.state.Load() != bOpen {
			return true
		}
	}
	return false
}

// Close stops the workers, fails requests still queued with ErrNoSigner,
// closes the PKCS#11 signers New opened and unregisters the chain's
// metrics. Do not Submit after Close. It waits at most 2s for calls stuck
// in a device.
func (c *Chain) Close() error {
	c.once.Do(func() {
		c.cancel()
		done := make(chan struct{})
		go func() { c.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
		for _, l := range c.links {
		drain:
			for {
				select {
				case r := <-l.q:
					c.finish(r, ErrNoSigner)
				default:
					break drain
				}
			}
		}
		for _, p := range c.owned {
			_ = p.Close()
		}
		for _, l := range c.links {
			l.releaseMetrics()
		}
	})
	return nil
}

// BypassReason maps a signing error (Submit's result or Request.Err) to the
// short reason token the fast path writes into P-Identity-Bypass:
// "timeout", "queue-full", "signer-down" or "error"; "" for nil.
func BypassReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrBudget), errors.Is(err, context.DeadlineExceeded), errors.Is(err, errCallTimeout):
		return "timeout"
	case errors.Is(err, ErrQueueFull):
		return "queue-full"
	case errors.Is(err, ErrNoSigner), errors.Is(err, ErrSessionLost):
		return "signer-down"
	}
	return "error"
}
