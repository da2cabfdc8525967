//go:build linux

package es256

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// idleThreads returns the IDs of this process's threads in the SCHED_IDLE
// class (field 41 of /proc/self/task/TID/stat is the policy; 5 is
// SCHED_IDLE).
func idleThreads(t *testing.T) map[string]bool {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	ids := map[string]bool{}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
		if len(f) > 38 {
			if p, _ := strconv.Atoi(f[38]); p == 5 {
				ids[task.Name()] = true
			}
		}
	}
	return ids
}

// TestRefillWorkerRunsIdle: each refill worker holds a thread of its own in
// SCHED_IDLE while the signer lives (so an event loop always preempts it),
// the pool still fills, and Close ends those threads instead of handing
// them, at idle priority, to other goroutines. A worker that ran on the
// main thread leaves it parked for good (the runtime never ends the main
// thread), so the main thread is not held against Close.
func TestRefillWorkerRunsIdle(t *testing.T) {
	before := idleThreads(t)
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
	var mine []string
	for len(mine) < 2 && time.Now().Before(deadline) { // a worker not yet scheduled
		mine = mine[:0]
		for id := range idleThreads(t) {
			if !before[id] {
				mine = append(mine, id)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	if len(mine) < 2 {
		t.Fatalf("new SCHED_IDLE threads with 2 workers running: %v", mine)
	}
	main := strconv.Itoa(os.Getpid())
	for i := 0; ; i++ {
		now, left := idleThreads(t), []string{}
		for _, id := range mine {
			if now[id] && id != main {
				left = append(left, id)
			}
		}
		if len(left) == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("worker threads %v still at SCHED_IDLE 1 s after Close", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
