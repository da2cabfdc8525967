//go:build unix

package cputime

import (
	"syscall"
	"time"
)

func process() (user, total time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	u := time.Duration(ru.Utime.Nano())
	return u, u + time.Duration(ru.Stime.Nano())
}
