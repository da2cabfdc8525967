package hsm

import (
	"sync/atomic"
	"time"
)

// Breaker configures a signer's circuit breaker. Zero fields take defaults.
type Breaker struct {
	// Failures is the number of consecutive failures or timeouts that opens
	// the breaker. Default 5.
	Failures int
	// OpenFor is how long an open breaker sends no traffic before it lets
	// probes through (half-open). Default 1s.
	OpenFor time.Duration
	// HalfOpenProbes is how many requests may be in flight to a half-open
	// signer; one success closes the breaker, one failure opens it again.
	// Default 1.
	HalfOpenProbes int
}

// Breaker states, as reported by Health and the breaker state gauge.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half-open"
)

const (
	bClosed int32 = iota
	bOpen
	bHalfOpen
)

var stateNames = [...]string{StateClosed, StateOpen, StateHalfOpen}

// epoch anchors monotonic nanosecond timestamps kept in atomics.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// breaker is lock-free: the routing decision in Submit is a few atomic loads.
type breaker struct {
	failures int32
	openFor  int64
	probes   int32

	state    atomic.Int32
	fails    atomic.Int32
	openedAt atomic.Int64 // nanotime of the last trip
	inFlight atomic.Int32 // half-open probes admitted and not yet answered
}

func (b *breaker) init(c Breaker) {
	b.failures = int32(c.Failures)
	b.openFor = int64(c.OpenFor)
	b.probes = int32(c.HalfOpenProbes)
}

// allow reports whether a request may go to the signer now, admitting a
// probe when half-open. A request admitted as a probe must be answered by
// success or failure, or handed back with unprobe.
func (b *breaker) allow() (ok, probe bool) {
	switch b.state.Load() {
	case bClosed:
		return true, false
	case bOpen:
		if nanotime()-b.openedAt.Load() < b.openFor {
			return false, false
		}
		if b.state.CompareAndSwap(bOpen, bHalfOpen) {
			b.inFlight.Store(0)
		}
	}
	if b.state.Load() != bHalfOpen {
		return b.state.Load() == bClosed, false
	}
	if b.inFlight.Add(1) <= b.probes {
		return true, true
	}
	b.inFlight.Add(-1)
	return false, false
}

// unprobe returns a probe slot that was admitted but not used.
func (b *breaker) unprobe() { b.inFlight.Add(-1) }

func (b *breaker) success() {
	b.fails.Store(0)
	if b.state.Load() != bClosed {
		b.state.Store(bClosed)
	}
}

// failure counts a failure; it reports whether the breaker tripped.
func (b *breaker) failure() bool {
	switch b.state.Load() {
	case bOpen:
		return false
	case bHalfOpen:
		b.trip()
		return true
	}
	if b.fails.Add(1) >= b.failures {
		b.trip()
		return true
	}
	return false
}

func (b *breaker) trip() {
	b.openedAt.Store(nanotime())
	b.state.Store(bOpen)
	b.fails.Store(0)
}

// stuckProbes reopens a half-open breaker whose probes never answered.
func (b *breaker) stuckProbes(limit int64) {
	if b.state.Load() == bHalfOpen && nanotime()-b.openedAt.Load() > b.openFor+limit {
		b.trip()
	}
}
