package hsm

import (
	"context"
	"time"
)

// Request is one signing job handed from an event loop to the signers. The
// submitter owns it again once Done has been called (exactly once, from a
// signer goroutine, never from the submitter's own stack).
type Request struct {
	Digest   [32]byte
	Sig      [64]byte
	Deadline time.Time // the call's signing budget; past it the request fails with ErrBudget
	Err      error     // nil when Sig (or Identity) holds a signature
	SignedBy string    // Name() of the signer that produced Sig
	Done     func(*Request)

	// Input is the PASSporT signing input (base64url header "." base64url
	// claims) Digest was computed from, set by the submitter and only read
	// by a remote link (RemoteSigner: a remote STI-AS takes claims, not a
	// digest); a request without it is never given to one. The submitter
	// keeps it unchanged until Done.
	Input []byte
	// Identity is set instead of Sig when a remote link signed: the whole
	// Identity header value the remote STI-AS returned (its x5u, its
	// signature), to be stamped as it is. Submit empties it and reuses its
	// capacity.
	Identity []byte

	hop int // index of the Chain link the request is queued at
}

// Dispatcher accepts signing jobs without blocking the caller.
type Dispatcher interface {
	// Submit queues r; it returns ErrQueueFull (and does not call Done) when
	// the queue is full, so the caller can bypass at once. A Chain also
	// returns ErrNoSigner (again without calling Done) when no signer is
	// available at all. Any error from Submit means Done will not be called.
	Submit(r *Request) error
}

// Pool is a Dispatcher that runs a fixed number of workers over one Signer.
type Pool struct {
	s     Signer
	queue chan *Request
}

// NewPool starts workers goroutines that sign from a queue of the given
// depth. Cancel ctx to stop them.
func NewPool(ctx context.Context, s Signer, workers, depth int) *Pool {
	p := &Pool{s: s, queue: make(chan *Request, depth)}
	for range workers {
		go p.work(ctx)
	}
	return p
}

// Submit implements Dispatcher.
func (p *Pool) Submit(r *Request) error {
	select {
	case p.queue <- r:
		return nil
	default:
		return ErrQueueFull
	}
}

func (p *Pool) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-p.queue:
			if !r.Deadline.IsZero() && time.Now().After(r.Deadline) {
				r.Err = ErrBudget
			} else {
				r.Err = p.s.SignDigest(ctx, &r.Digest, &r.Sig)
				r.SignedBy = p.s.Name()
			}
			r.Done(r)
		}
	}
}
