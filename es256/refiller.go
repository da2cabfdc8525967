package es256

// RefillerBatch is the number of tokens a Refiller computes together: its
// last Step shares two inversions (about 35 µs on the reference machine)
// among them, about 1 µs per token.
const RefillerBatch = 32

// Refiller refills a Signer's pool on the caller's own goroutine, one
// scalar multiplication per Step, for a caller with short idle gaps: an
// event loop that has drained its socket. Such a loop would otherwise
// sleep, and the background worker would run on the CPU the loop just left,
// so that every datagram after the gap costs a wakeup and two thread
// switches; with a Refiller the loop keeps its CPU and looks at its socket
// between steps, and no thread sleeps or wakes while refill work is left.
//
// A Refiller is not safe for concurrent use: each caller holds its own. The
// background workers keep running beside it; the pool's lock is taken once
// per batch, to read the free space and to push the finished tokens.
type Refiller struct {
	s    *Signer
	b    *batch
	n    int // tokens in the batch under way (0: none)
	done int // scalar multiplications done for it
}

// NewRefiller returns a Refiller for s. Its scratch space (about 8 KiB) is
// allocated here, once; Step allocates nothing.
func (s *Signer) NewRefiller() *Refiller {
	return &Refiller{s: s, b: newBatch(min(RefillerBatch, len(s.pool)))}
}

// Step does one slice of refill work and reports whether it did any:
// false when the pool has no room for a whole batch (or the signer is
// closed, or the system CSPRNG failed), and the caller may sleep. A step
// is one scalar multiplication (about 11 µs on the reference machine);
// the step that finishes a batch also does its two inversions and pushes
// its tokens into the pool (about 50 µs in all).
func (r *Refiller) Step() bool {
	s, b := r.s, r.b
	if r.n == 0 {
		s.mu.Lock()
		space := len(s.pool) - s.count
		closed := s.closed
		if !closed && space >= len(b.toks) {
			b.dM = s.dM
		}
		s.mu.Unlock()
		if closed || space < len(b.toks) {
			return false
		}
		if err := b.drawK(len(b.toks)); err != nil {
			b.wipe() // Sign reports the CSPRNG failing if it persists
			return false
		}
		r.n, r.done = len(b.toks), 0
	}
	b.mult(r.done)
	r.done++
	if r.done < r.n {
		return true
	}
	made := b.complete(r.n)
	s.made.Add(uint64(made))
	_, _, _ = s.push(b.toks[:made]) // after Close, push wipes and counts them discarded
	b.wipe()
	r.n, r.done = 0, 0
	return true
}

// Close wipes the batch under way, if any. The Refiller must not be used
// after.
func (r *Refiller) Close() {
	r.b.wipe()
	r.n, r.done = 0, 0
}
