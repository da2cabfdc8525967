// Package prereq owns the project's rule for what a test needs from the
// machine (root, a Debian tool, a Kamailio module, a softhsm2 library): when
// it is missing the test is skipped on a developer's machine, and fails when
// CI=true, so that coverage cannot silently vanish from CI (make test
// installs everything CI needs). Every test that depends on the machine goes
// through here, so the rule lives in one place.
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

// Root skips (fails under CI) unless the test runs as root.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Need(t, fmt.Errorf("root required"))
	}
}
