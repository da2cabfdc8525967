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

// threadPolicy is the scheduling policy of thread tid of this process, or
// -1 when it cannot be read.
func threadPolicy(tid string) int {
	b, err := os.ReadFile("/proc/self/task/" + tid + "/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) <= 38 {
		return -1
	}
	p, _ := strconv.Atoi(f[38])
	return p
}

// TestSignBoostsStarvedWorker: when Sign takes the pool down to a quarter,
// the idle-priority worker is put back to normal priority at once (work
// outside the process could otherwise keep it off the CPU), and it lowers
// itself again once the pool has recovered.
func TestSignBoostsStarvedWorker(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("leaving SCHED_IDLE needs root or CAP_SYS_NICE")
	}
	before := idleThreads(t)
	s := newSigner(t, newKey(t), Options{PoolSize: 256, Workers: 1, BatchSize: 32})
	waitPooled(t, s, 256)
	var tid string
	for id := range idleThreads(t) {
		if !before[id] {
			tid = id
		}
	}
	if tid == "" {
		t.Fatal("no idle-priority refill thread")
	}
	// boost itself, on a full pool: the worker sleeps until kicked, so
	// nothing can lower it again before we look.
	s.boost()
	if p := threadPolicy(tid); p != 0 {
		t.Fatalf("worker thread policy %d after boost, want 0 (SCHED_OTHER)", p)
	}
	// Sign calls boost when it takes the pool down to a quarter. The worker
	// may already be back at idle priority when we look (it refills above
	// a quarter within a batch on a free core), so the call is counted.
	boosts := s.boosts.Load()
	var d [32]byte
	var sig [64]byte
	for s.Stats().Pooled > 256/4 {
		if err := s.Sign(&d, &sig); err != nil {
			t.Fatal(err)
		}
	}
	if s.boosts.Load() == boosts {
		t.Fatal("Sign took the pool down to a quarter without boosting the worker")
	}
	deadline := time.Now().Add(10 * time.Second)
	for (s.Stats().Pooled < 256 || threadPolicy(tid) != 5) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p := threadPolicy(tid); p != 5 || s.Stats().Pooled < 256 {
		t.Fatalf("after refill: policy %d, pooled %d; want 5 (SCHED_IDLE), 256", p, s.Stats().Pooled)
	}
}
