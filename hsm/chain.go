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
	// Remote is a remote STI-AS (RemoteSigner), used as is when set; its
	// Workers are its requests in flight (default 16).
	Remote RemoteSigner
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
	s       Signer       // nil for a remote link
	rs      RemoteSigner // when the link is a remote STI-AS
	p11     *PKCS11      // when s is a PKCS#11 signer
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
	input     []byte // remote link: the signing input, copied in
	ident     []byte // remote link: the Identity header value, copied out
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
		case sc.Remote != nil:
			l.rs = sc.Remote
			if sc.Workers <= 0 {
				sc.Workers = 16
			}
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
		if l.p11 != nil {
			// A token that allows fewer sessions than workers: one worker
			// per session it gave (the others would only wait).
			sc.Workers = min(sc.Workers, l.p11.SessionCap())
		}
		if l.rs != nil {
			l.name = l.rs.Name()
		} else {
			l.name = l.s.Name()
		}
		if sc.Name != "" {
			l.name = sc.Name
		}
		if l.s != nil {
			if pub := l.s.Public(); pub == nil || !pub.Equal(want) {
				return fail(fmt.Errorf("%w: signer %q", ErrKeyMismatch, l.name))
			}
		}
		l.q = make(chan *Request, cfg.QueueDepth)
		if l.s != nil {
			l.bs, _ = l.s.(batchSigner)
		}
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
