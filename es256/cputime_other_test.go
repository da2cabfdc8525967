//go:build !unix

package es256

import "time"

func cpuTime() (user, total time.Duration) { return 0, 0 }
