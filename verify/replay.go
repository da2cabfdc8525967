package verify

import (
	"sync"
	"time"
)

// replayFilter remembers signing-input hashes for at least window: entries
// live in the current generation until it is older than window or full,
// then in the previous one for another generation. Memory is bounded by two
// generations of capacity keys; when a generation fills before window has
// passed, the oldest keys are forgotten early.
type replayFilter struct {
	window   time.Duration
	capacity int

	mu        sync.Mutex
	cur, prev map[[32]byte]struct{}
	started   time.Time
}

func newReplayFilter(window time.Duration, capacity int) *replayFilter {
	return &replayFilter{window: window, capacity: capacity, cur: map[[32]byte]struct{}{}, prev: map[[32]byte]struct{}{}}
}

// seen records k and reports whether it was already recorded.
func (r *replayFilter) seen(k [32]byte, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started.IsZero() {
		r.started = now
	}
	if now.Sub(r.started) >= r.window || len(r.cur) >= r.capacity {
		r.prev, r.cur = r.cur, make(map[[32]byte]struct{}, len(r.cur))
		r.started = now
	}
	if _, ok := r.cur[k]; ok {
		return true
	}
	if _, ok := r.prev[k]; ok {
		return true
	}
	r.cur[k] = struct{}{}
	return false
}
