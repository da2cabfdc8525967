package cputime

import (
	"runtime"
	"testing"
	"time"
)

// Spinning for a while shows as user time, and total is never below user.
func TestProcessCountsWork(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no getrusage")
	}
	u0, t0 := Process()
	x := 0
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	u1, t1 := Process()
	if u1-u0 < 10*time.Millisecond || t1 < u1 || t1-t0 < u1-u0 {
		t.Fatalf("50 ms of spinning (%d rounds): user %v -> %v, total %v -> %v", x, u0, u1, t0, t1)
	}
}
