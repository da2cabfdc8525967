package es256

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/subtle"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"filippo.io/nistec"

	"github.com/shakenline/shakenline/internal/p256"
)

// Errors returned by this package. Wrapped errors keep these as their cause.
var (
	// ErrKey reports a missing, invalid or inconsistent private key.
	ErrKey = errors.New("es256: invalid private key")
	// ErrCurve reports a key on a curve other than P-256.
	ErrCurve = errors.New("es256: key is not on P-256")
	// ErrOptions reports an out-of-range Options field.
	ErrOptions = errors.New("es256: invalid options")
	// ErrClosed is returned by Sign after Close.
	ErrClosed = errors.New("es256: signer closed")
	// ErrRandom reports a failure of the system random number generator.
	ErrRandom = errors.New("es256: reading system randomness failed")
)

// Defaults and limits for Options.
const (
	DefaultPoolSize  = 1024
	DefaultWorkers   = 1
	DefaultBatchSize = 128

	MaxPoolSize  = 1 << 20
	MaxWorkers   = 64
	MaxBatchSize = 4096

	// maxInlineBatch bounds the tokens a Sign call computes when the pool is
	// empty: enough to amortise the two inversions (about 35 µs together
	// on the reference machine) to about 1 µs per token, few enough to keep
	// that call near half a millisecond.
	maxInlineBatch = 32
)

// Options tunes the token pool. The zero value selects the defaults.
type Options struct {
	// PoolSize is the number of precomputed tokens kept ready (default
	// DefaultPoolSize, at most MaxPoolSize; 96 bytes each). Refill starts
	// when the pool drops below half of it (the low-water mark) and runs
	// until the pool is full.
	PoolSize int
	// Workers is the number of background refill goroutines (default
	// DefaultWorkers, at most MaxWorkers). A negative value disables
	// background refill: every token is then computed inline by Sign.
	Workers int
	// BatchSize is the number of tokens computed together, sharing one
	// inversion mod n (for k⁻¹) and one mod p (for the affine x of k·G)
	// (default DefaultBatchSize, at most MaxBatchSize, clamped to PoolSize).
	BatchSize int
}

// Stats counts tokens. When no Sign, refill or Close is in flight,
// TokensMade = TokensUsed + TokensDiscarded + Pooled.
type Stats struct {
	TokensMade      uint64 // tokens computed, in the background or inline
	TokensUsed      uint64 // tokens consumed by Sign, each exactly once
	TokensDiscarded uint64 // tokens wiped unused (pool full, or Close)
	InlineFallbacks uint64 // Sign calls that found the pool empty
	Pooled          int    // tokens in the pool now
}

// Signer is a P-256 ECDSA signer with a pool of precomputed nonces. It is
// safe for concurrent use.
type Signer struct {
	dM          p256.Elem // private scalar d·2²⁵⁶ mod n; wiped by Close
	batchSize   int
	inlineBatch int
	lowWater    int

	mu     sync.Mutex
	pool   []token // pool[:count] are unused tokens; the rest are zero
	count  int
	closed bool

	kick    chan struct{} // capacity 1: "the pool is below low water"
	stop    chan struct{}
	wg      sync.WaitGroup
	scratch sync.Pool // *batch of inlineBatch, for inline refill

	made, used, discarded, inline atomic.Uint64

	// Refill workers run at idle priority (refill); critical is the pool
	// level below which Sign puts them back to normal priority at once
	// (boost), as other work on the CPU may starve an idle thread.
	critical int
	tidMu    sync.Mutex
	threads  []*refillThread // the workers holding an idle-priority thread
	boosts   atomic.Uint64   // calls of boost (tests)
}

// refillThread is a refill worker's OS thread; boosted tells the worker
// that Sign raised its priority.
type refillThread struct {
	tid     int
	boosted atomic.Bool
}

// New returns a Signer for key, which must be a valid P-256 private key
// whose public half matches the private scalar. New starts o.Workers
// refill goroutines that fill the pool in the background; Close stops them.
func New(key *ecdsa.PrivateKey, o Options) (*Signer, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: nil key", ErrKey)
	}
	if key.Curve != elliptic.P256() {
		return nil, ErrCurve
	}
	if err := o.fill(); err != nil {
		return nil, err
	}
	db, err := key.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	defer clear(db)
	pub, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrKey, err)
	}
	var d p256.Elem
	p256.SetBytes(&d, (*[32]byte)(db))
	if p256.LessThan(&d, &p256.OrderN)&(1^p256.IsZero(&d)) != 1 {
		return nil, fmt.Errorf("%w: scalar out of range", ErrKey)
	}
	q, err := nistec.NewP256Point().ScalarBaseMult(db)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if subtle.ConstantTimeCompare(q.Bytes(), pub) != 1 {
		return nil, fmt.Errorf("%w: public key does not match the private scalar", ErrKey)
	}
	p256.JacobianOK() // run the Jacobian self-test before the first batch

	s := &Signer{
		batchSize:   o.BatchSize,
		inlineBatch: min(o.BatchSize, maxInlineBatch),
		lowWater:    o.PoolSize / 2,
		critical:    o.PoolSize / 4,
		pool:        make([]token, o.PoolSize),
		kick:        make(chan struct{}, 1),
		stop:        make(chan struct{}),
	}
	p256.ToMont(&s.dM, &d, &p256.OrderN)
	d = p256.Elem{}
	s.scratch.New = func() any { return newBatch(s.inlineBatch) }
	for i := 0; i < o.Workers; i++ {
		s.wg.Add(1)
		go s.refill()
	}
	s.wake()
	return s, nil
}

func (o *Options) fill() error {
	if o.PoolSize == 0 {
		o.PoolSize = DefaultPoolSize
	}
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	switch {
	case o.PoolSize < 0 || o.PoolSize > MaxPoolSize:
		return fmt.Errorf("%w: PoolSize %d not in [1, %d]", ErrOptions, o.PoolSize, MaxPoolSize)
	case o.Workers > MaxWorkers:
		return fmt.Errorf("%w: Workers %d above %d", ErrOptions, o.Workers, MaxWorkers)
	case o.BatchSize < 0 || o.BatchSize > MaxBatchSize:
		return fmt.Errorf("%w: BatchSize %d not in [1, %d]", ErrOptions, o.BatchSize, MaxBatchSize)
	}
	o.BatchSize = min(o.BatchSize, o.PoolSize)
	return nil
}

// Sign writes the ECDSA signature of digest (a SHA-256 hash, used as the
// 256-bit integer e of SEC 1 section 4.1.3) to sig as r||s, each 32 bytes
// big-endian. With a token in the pool it takes one Montgomery
// multiplication and one modular addition and allocates nothing. With the
// pool empty it computes a small batch of tokens itself, uses one and pools
// the rest, so under sustained overload Sign slows to the raw rate rather
// than failing. The only errors are ErrClosed and ErrRandom.
func (s *Signer) Sign(digest *[32]byte, sig *[64]byte) error {
	var e p256.Elem
	p256.SetBytes(&e, digest)
	p256.ReduceOnce(&e, &e, &p256.OrderN)
	for {
		signed, empty, err := s.pop(&e, sig)
		switch {
		case err != nil:
			return err
		case signed:
			return nil
		case empty:
			ok, err := s.signInline(&e, sig)
			if err != nil || ok {
				return err
			}
		}
		// Otherwise s = 0 (probability ~2⁻²⁵⁶) or the inline batch was
		// degenerate: sign again.
	}
}

// TrySign is Sign for callers that must not block: with a precomputed
// token in the pool it signs (about 0.1 µs) and reports true; with the pool
// empty it asks a worker to refill and reports false at once, computing
// nothing, so that the caller can take another path.
func (s *Signer) TrySign(digest *[32]byte, sig *[64]byte) (bool, error) {
	var e p256.Elem
	p256.SetBytes(&e, digest)
	p256.ReduceOnce(&e, &e, &p256.OrderN)
	for {
		signed, empty, err := s.pop(&e, sig)
		if err != nil || empty {
			return false, err
		}
		if signed {
			return true, nil
		}
	}
}

// pop signs e with one pooled token. empty reports an empty pool (a refill
// has been asked for); signed is false with a token used when s came out 0,
// and the caller signs again.
func (s *Signer) pop(e *p256.Elem, sig *[64]byte) (signed, empty bool, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, false, ErrClosed
	}
	if s.count == 0 {
		s.mu.Unlock()
		s.wake()
		return false, true, nil
	}
	// The slot is wiped before the lock is released, so no other caller
	// can ever see this token again.
	s.count--
	tok := &s.pool[s.count]
	ok := online(tok, e, sig)
	*tok = token{}
	low := s.count < s.lowWater
	critical := s.count == s.critical
	s.mu.Unlock()
	s.used.Add(1)
	if low {
		s.wake()
	}
	if critical {
		s.boost()
	}
	return ok, false, nil
}

// signInline computes a batch of tokens on the calling goroutine, signs
// with the first and pools the rest.
func (s *Signer) signInline(e *p256.Elem, sig *[64]byte) (bool, error) {
	s.inline.Add(1)
	b := s.scratch.Get().(*batch)
	defer func() {
		b.wipe()
		s.scratch.Put(b)
	}()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, ErrClosed
	}
	b.dM = s.dM
	s.mu.Unlock()
	if err := b.drawK(s.inlineBatch); err != nil {
		return false, err
	}
	n := b.finish(s.inlineBatch, false)
	if n == 0 {
		return false, nil
	}
	s.made.Add(uint64(n))
	ok := online(&b.toks[0], e, sig)
	b.toks[0] = token{}
	s.used.Add(1)
	if _, _, err := s.push(b.toks[1:n]); err != nil {
		return false, err
	}
	return ok, nil
}

// push moves toks into the pool as far as it has room, wipes toks, and
// reports how many were pooled and whether the pool is now full.
func (s *Signer) push(toks []token) (int, bool, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		clear(toks)
		s.discarded.Add(uint64(len(toks)))
		return 0, false, ErrClosed
	}
	n := copy(s.pool[s.count:], toks)
	s.count += n
	full := s.count == len(s.pool)
	s.mu.Unlock()
	clear(toks)
	s.discarded.Add(uint64(len(toks) - n))
	return n, full, nil
}

// boost puts the idle-priority refill workers back to normal priority
// (where the kernel allows it): the pool has fallen to the critical level,
// and work outside the process may be keeping idle threads off the CPU.
// Each worker lowers itself again once the pool is back above that level.
func (s *Signer) boost() {
	s.boosts.Add(1)
	s.tidMu.Lock()
	defer s.tidMu.Unlock()
	for _, t := range s.threads {
		if setThreadIdleOf(t.tid, false) {
			t.boosted.Store(true)
		}
	}
}

// wake asks a refill worker to run, without blocking.
func (s *Signer) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// refill is a background worker. It sleeps until kicked, then fills the
// pool to the top in batches. It runs on an OS thread of its own at idle
// priority (SCHED_IDLE, or nice 19; setThreadIdle), so the kernel gives the
// CPU to an event loop the moment the loop has work and refill uses only
// what the loops leave: a loop never waits behind a batch. Should the pool
// fall to a quarter of its size anyway (the CPU taken by other work), Sign
// puts the worker back to normal priority (boost) and the worker computes
// its batches so until the pool is back above that, where the kernel lets
// it (root or CAP_SYS_NICE); otherwise Sign's inline fallback covers. The thread is never unlocked, so the
// runtime ends it with the worker and no other goroutine ever runs at its
// priority. Where the priority cannot be lowered at all the worker yields
// after every scalar multiplication instead, so the signing goroutines get
// the CPU first ("low priority" in effect, as Go has no goroutine
// priorities). It never holds s.mu during the scalar multiplications.
func (s *Signer) refill() {
	defer s.wg.Done()
	runtime.LockOSThread()
	idle := setThreadIdle(true)
	yield := !idle
	var me *refillThread
	if idle {
		me = &refillThread{tid: threadID()}
		s.tidMu.Lock()
		s.threads = append(s.threads, me)
		s.tidMu.Unlock()
		// Deregistered before the thread ends: a thread ID can be reused.
		defer func() {
			s.tidMu.Lock()
			s.threads = slices.DeleteFunc(s.threads, func(t *refillThread) bool { return t == me })
			s.tidMu.Unlock()
		}()
	}
	b := newBatch(s.batchSize)
	defer b.wipe()
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		for {
			s.mu.Lock()
			space := len(s.pool) - s.count
			closed := s.closed
			b.dM = s.dM
			s.mu.Unlock()
			if closed || space == 0 {
				break
			}
			if !yield {
				// Give the P back to the Go scheduler once a batch.
				runtime.Gosched()
			}
			if space > s.batchSize {
				s.wake() // enough work for another worker too
			}
			if !yield {
				// Idle priority unless the pool is at or below the critical
				// level. Decided under tidMu, which boost holds too, from a
				// fresh count: a boost is never undone by a stale decision.
				s.tidMu.Lock()
				if me.boosted.Swap(false) {
					idle = false
				}
				s.mu.Lock()
				want := s.count > s.critical
				s.mu.Unlock()
				if want != idle && setThreadIdle(want) {
					idle = want
				}
				s.tidMu.Unlock()
			}
			n := min(s.batchSize, space)
			if err := b.drawK(n); err != nil {
				// The system CSPRNG failed; Sign will report it if it
				// persists. Wait for the next kick.
				b.wipe()
				break
			}
			made := b.finish(n, yield)
			s.made.Add(uint64(made))
			_, full, err := s.push(b.toks[:made])
			b.wipe()
			if err != nil {
				return
			}
			if full {
				break // to the top: wait for the next kick
			}
			select {
			case <-s.stop:
				return
			default:
			}
		}
	}
}

// Close stops the refill workers, wipes every pooled token and the private
// scalar, and makes later Sign calls fail with ErrClosed. It waits for the
// workers to finish and is safe to call more than once.
func (s *Signer) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	n := s.count
	clear(s.pool)
	s.count = 0
	s.dM = p256.Elem{}
	s.mu.Unlock()
	s.discarded.Add(uint64(n))
	close(s.stop)
	s.wg.Wait()
}

// Stats returns the token counters.
func (s *Signer) Stats() Stats {
	s.mu.Lock()
	pooled := s.count
	s.mu.Unlock()
	return Stats{
		TokensMade:      s.made.Load(),
		TokensUsed:      s.used.Load(),
		TokensDiscarded: s.discarded.Load(),
		InlineFallbacks: s.inline.Load(),
		Pooled:          pooled,
	}
}
