//go:build linux

package es256

import "golang.org/x/sys/unix"

// setThreadIdle puts the calling OS thread in the SCHED_IDLE class (idle
// true), so that any ordinary thread of the process, the event loops first,
// preempts it the moment it wakes, or back in SCHED_OTHER (SCHED_NORMAL) at nice 0 (idle
// false; the kernel allows that to root or with CAP_SYS_NICE or an
// RLIMIT_NICE of 20). Where SCHED_IDLE is refused it tries nice 19. It
// reports whether the thread is now as asked. The caller must hold the
// thread (runtime.LockOSThread) for as long as it runs, and exit without
// unlocking so that the runtime ends the thread instead of reusing it.
func setThreadIdle(idle bool) bool { return setThreadIdleOf(unix.Gettid(), idle) }

// setThreadIdleOf is setThreadIdle for thread tid of this process.
func setThreadIdleOf(tid int, idle bool) bool {
	if !idle {
		return unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_NORMAL}, 0) == nil &&
			unix.Setpriority(unix.PRIO_PROCESS, tid, 0) == nil
	}
	if unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0) == nil {
		return true
	}
	return unix.Setpriority(unix.PRIO_PROCESS, tid, 19) == nil
}

// threadID is the calling OS thread's ID.
func threadID() int { return unix.Gettid() }
