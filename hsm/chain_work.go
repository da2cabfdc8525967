package hsm

import (
	"context"
	"errors"
	"time"
)

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
				if l.rs != nil {
					l.signRemote(ctx, w, r)
				} else {
					l.sign(ctx, w, r)
				}
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
