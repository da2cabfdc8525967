package hsm

import (
	"context"
	"errors"
	"time"
)

// RemoteSigner is a link that signs whole PASSporTs elsewhere: a remote
// STI-AS reached through its ATIS-1000082 signing API (package stias). It
// takes the call's claims (Request.Input), not a digest, and answers with a
// whole Identity header value, whose certificate (x5u) is the remote's:
// New therefore does not check its key against the certificate, and the
// FCC own-certificate rule for it is the implementation's to check.
//
// A Chain gives a remote link the same queue, workers (one request in
// flight each), timeout, breaker, metrics and bypass rules as any other
// link. SignInput may allocate (it is a network call); it must be safe for
// concurrent use and return when ctx ends.
type RemoteSigner interface {
	Name() string
	// SignInput has the PASSporT of the signing input signed and appends
	// the Identity header value to dst, after checking it: an answer that
	// does not parse or does not carry exactly the claims asked for is an
	// error.
	SignInput(ctx context.Context, input, dst []byte) ([]byte, error)
}

// errNoInput is a request without a signing input reaching a remote link
// (never: dispatch skips remote links for such requests).
var errNoInput = errors.New("hsm: no signing input for a remote signer")

// signRemote runs one request on a remote link, as sign does for a key:
// the worker owns r only while it holds it in w.cur, so the signing input
// is copied in before and the Identity header value copied out after, and
// a request the monitor took away is left alone.
func (l *link) signRemote(ctx context.Context, w *worker, r *Request) {
	if time.Now().After(r.Deadline) {
		l.c.finish(r, ErrBudget)
		return
	}
	w.input = append(w.input[:0], r.Input...)
	w.cur.Store(r)
	start := nanotime()
	w.callStart.Store(start)
	var err error
	if len(w.input) == 0 {
		err = errNoInput
	} else {
		// The call ends with the link's timeout, when the monitor has
		// moved the request on anyway.
		cctx, cancel := context.WithTimeout(ctx, time.Duration(l.timeout))
		w.ident, err = l.rs.SignInput(cctx, w.input, w.ident[:0])
		cancel()
	}
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
		r.Identity = append(r.Identity[:0], w.ident...)
		r.SignedBy = l.name
		r.Done(r)
		return
	}
	l.failed(failError, err)
	l.c.forward(r, l.idx+1)
}
