//go:build unix

package verify

import (
	"syscall"
	"time"
)

// cpuTime returns the user and total (user+system) CPU time of the whole
// process, all threads.
func cpuTime() (user, total time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	u := time.Duration(ru.Utime.Nano())
	return u, u + time.Duration(ru.Stime.Nano())
}
