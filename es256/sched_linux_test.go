//go:build linux

package es256

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// idleThreads counts this process's threads in the SCHED_IDLE class
// (field 41 of /proc/self/task/TID/stat is the policy; 5 is SCHED_IDLE),
// without the main thread unless withMain: the runtime never ends the main
// thread, it parks it for good when a goroutine locked to it exits.
func idleThreads(t *testing.T, withMain bool) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	n := 0
	for _, task := range tasks {
		if !withMain && task.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
		if len(f) > 38 {
			if p, _ := strconv.Atoi(f[38]); p == 5 {
				n++
			}
		}
	}
	return n
}

// TestRefillWorkerRunsIdle: each refill worker holds a thread of its own in
// SCHED_IDLE while the signer lives (so an event loop always preempts it),
// the pool still fills, and Close ends those threads instead of handing
// them, at idle priority, to other goroutines (a worker that ran on the main
// thread leaves it parked for good, which is the runtime's rule).
func TestRefillWorkerRunsIdle(t *testing.T) {
	before := idleThreads(t, true)
	s, err := New(newKey(t), Options{PoolSize: 256, Workers: 2, BatchSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Pooled < 256 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p := s.Stats().Pooled; p < 256 {
		t.Fatalf("pool holds %d of 256 tokens after 10 s", p)
	}
	during := idleThreads(t, true)
	for during < before+2 && time.Now().Before(deadline) { // a worker not yet scheduled
		time.Sleep(5 * time.Millisecond)
		during = idleThreads(t, true)
	}
	s.Close()
	var after int
	for i := 0; i < 100; i++ {
		if after = idleThreads(t, false); after <= before {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if during < before+2 {
		t.Fatalf("SCHED_IDLE threads: %d before New, %d with 2 workers running", before, during)
	}
	if after > before {
		t.Fatalf("SCHED_IDLE threads: %d before New, %d after Close: a worker's thread outlived it", before, after)
	}
}
