// Package prereq owns the project's rule for what a test needs from the
// machine (root, a capability, a kernel feature, a Debian tool, a Kamailio
// module, a softhsm2 library): when it is missing the test is skipped on a
// developer's machine, and fails when CI=true, so that coverage cannot
// silently vanish from CI (make test installs everything CI needs). Every
// test that depends on the machine goes through here, so the rule lives in
// one place. A message about a missing privilege or kernel feature names
// it and the command that shows it (id -u, capsh --print, grep Cap
// /proc/self/status, uname -r), so that whoever reads the skip can check
// and fix the machine (privilege.go).
package prereq

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the run is CI's (CI=true, as .ci/run sets it).
func InCI() bool { return os.Getenv("CI") == "true" }

// Need skips t (fails it under CI) when err, the result of checking a
// prerequisite, is not nil.
func Need(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("prerequisite missing (required when CI=true): %v", err)
	}
	t.Skipf("prerequisite missing: %v", err)
}

// Tool returns the path of the named program, or skips (fails under CI).
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, err)
	return p
}

// Tools checks several programs at once.
func Tools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		Tool(t, n)
	}
}

// Root skips (fails under CI) unless the test runs as root. Root is the
// user, not the privileges: a test that needs a capability also checks it
// with Caps, which says which one is missing (a container's root often
// lacks some).
func Root(t testing.TB) {
	t.Helper()
	Need(t, MissingRoot())
}

// MissingRoot returns nil when the process runs as root, or an error
// saying it does not and how to check: Root for code that is not a test
// (a lab command that reports what is missing).
func MissingRoot() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("needs root (effective uid 0), running as uid %d (check: id -u)", uid)
	}
	return nil
}
