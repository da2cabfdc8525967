//go:build race

package fastpath

// raceEnabled: the race detector makes sync.Pool drop buffers at random,
// so allocation counts of the pooled paths do not hold.
const raceEnabled = true
