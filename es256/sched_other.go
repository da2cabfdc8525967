//go:build !linux

package es256

// setThreadIdle is a no-op outside Linux: refill workers then yield after
// every scalar multiplication instead.
func setThreadIdle(bool) bool { return false }

func setThreadIdleOf(int, bool) bool { return false }

func threadID() int { return 0 }
