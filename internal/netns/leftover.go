package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

var seq atomic.Int64

// Prefix returns tag<pid>-<n>, a name prefix that no other process and no
// other call in this process returns; namespaces are named Prefix(tag) +
// "-" + a role ("sl4711-3-c"). tag is lowercase letters; RemoveLeftovers
// finds the names by it.
func Prefix(tag string) string {
	return fmt.Sprintf("%s%d-%d", tag, os.Getpid(), seq.Add(1))
}

// owner returns the pid in a name Prefix(tag) made, or false when name is
// not one of tag's.
func owner(name, tag string) (int, bool) {
	rest, ok := strings.CutPrefix(name, tag)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	if err != nil || pid <= 0 || digits[0] == '+' {
		return 0, false
	}
	return pid, true
}

// RemoveLeftovers removes the namespaces named by Prefix(tag) whose owner
// is gone: the pid in the name is not running and no process holds the
// namespace's lock (Add takes it). A run killed by a timeout leaves its
// namespaces, and the processes it started there, behind; this removes
// both. Namespaces of a process that still runs, here or in another pid
// namespace, are left alone. It returns the names removed.
func RemoveLeftovers(tag string) ([]string, error) {
	ents, err := os.ReadDir(runDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		pid, ok := owner(e.Name(), tag)
		if !ok || pid == os.Getpid() || running(pid) {
			continue
		}
		f, err := os.Open(runDir + e.Name())
		if err != nil {
			continue // removed meanwhile
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // its owner lives
			continue
		}
		n := &NS{Name: e.Name(), lock: f}
		if err := n.Delete(); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, n.Name)
	}
	return removed, errors.Join(errs...)
}

// running reports whether a process pid exists.
func running(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
