package hsm

import "time"

// Submit implements Dispatcher. It never blocks and does not allocate.
func (c *Chain) Submit(r *Request) error {
	if r.Deadline.IsZero() {
		r.Deadline = time.Now().Add(c.budget)
	}
	r.Err, r.SignedBy, r.Identity = nil, "", r.Identity[:0]
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
		if l.s == nil {
			return false // a remote link
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
		if l.s == nil {
			continue
		}
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
		if !l.usable() || l.rs != nil && len(r.Input) == 0 {
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
