// Package cputime reads the CPU time the whole process has used, for
// benchmarks that report CPU per operation beside wall time.
package cputime

import "time"

// Process returns the user and total (user+system) CPU time of the whole
// process, all threads; zeros where the platform does not say.
func Process() (user, total time.Duration) { return process() }
