package loadgen

import (
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// fineSleepMax is the longest wait the pacer takes with nanosleep;
// longer ones use time.Sleep.
const fineSleepMax = 2 * time.Millisecond

// pacer waits for a sending worker until its next INVITE is due. Go's
// timers wake a goroutine no sooner than about 1 ms on Linux (the netpoller
// waits in whole milliseconds), so a worker pacing 13,000 calls/s with
// time.Sleep sends bursts of 13 INVITEs once a millisecond, and a proxy
// queues the end of every burst behind its head. With fine set, short waits
// are a nanosleep(2) system call instead (an hrtimer: late by at most the
// thread's timer slack, 50 µs by default), so INVITEs leave one or two at a
// time, each about when it is due. The call blocks its thread, so fine
// pacing needs a second P for the sink's and the receivers' goroutines: it
// is used only with GOMAXPROCS ≥ 2.
type pacer struct {
	fine bool
	// early: an INVITE due within this is sent at once rather than after
	// a sleep that would cost more than it waits (fine pacing only).
	early time.Duration
}

// fineEarly is pacer.early for fine pacing: about a system call and a
// wake-up on a busy core.
const fineEarly = 20 * time.Microsecond

func newPacer() *pacer {
	if runtime.GOMAXPROCS(0) < 2 {
		return &pacer{}
	}
	return &pacer{fine: true, early: fineEarly}
}

// sleep waits d.
func (p *pacer) sleep(d time.Duration) {
	if !p.fine || d > fineSleepMax {
		time.Sleep(d)
		return
	}
	ts := unix.NsecToTimespec(int64(d))
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}

// EnableFinePacing raises GOMAXPROCS to 2 when it is lower (as under
// taskset with one CPU) and the GOMAXPROCS environment variable does not
// set it, so that the generator can pace with nanosleep (see pacer): the
// two Ps share the one CPU, the sender's sleeping thread and the thread
// running the sink and receive goroutines. It reports the
// GOMAXPROCS now in force.
func EnableFinePacing() int {
	if n := runtime.GOMAXPROCS(0); n < 2 && os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2)
	}
	return runtime.GOMAXPROCS(0)
}
