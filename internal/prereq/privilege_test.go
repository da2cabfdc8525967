package prereq

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMissingCap is run by TestCapsNamesPrivilege in a child process
// whose bounding set lacks CAP_NET_ADMIN.
func TestMissingCap(t *testing.T) {
	if os.Getenv("PREREQ_CHILD") == "" {
		t.Skip("run by TestCapsNamesPrivilege")
	}
	Caps(t, CapNetAdmin)
	t.Log("reached past a missing capability")
}

// TestCapsNamesPrivilege: a test whose process lacks a capability skips
// (fails under CI=true) with a message that names the capability and the
// command that shows it. The child runs as root without CAP_NET_ADMIN
// (setpriv drops it from the bounding set, so exec does not grant it).
func TestCapsNamesPrivilege(t *testing.T) {
	Root(t)
	setpriv := Tool(t, "setpriv")
	run := func(ci string) string {
		cmd := exec.Command(setpriv, "--bounding-set=-net_admin", "--", os.Args[0], "-test.run=^TestMissingCap$", "-test.v")
		cmd.Env = append(os.Environ(), "PREREQ_CHILD=1", "CI="+ci)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	for _, ci := range []string{"", "true"} {
		out := run(ci)
		want := "--- SKIP: TestMissingCap"
		if ci == "true" {
			want = "--- FAIL: TestMissingCap"
		}
		if !strings.Contains(out, want) || strings.Contains(out, "reached past") {
			t.Errorf("CI=%q: want %q:\n%s", ci, want, out)
		}
		for _, s := range []string{"CAP_NET_ADMIN", "capsh --print", "grep Cap /proc/self/status"} {
			if !strings.Contains(out, s) {
				t.Errorf("CI=%q: the message does not say %q:\n%s", ci, s, out)
			}
		}
	}
	if err := MissingCaps(CapNetAdmin); err != nil {
		t.Errorf("root has CAP_NET_ADMIN here, but: %v", err)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, c := range []struct {
		r        string
		maj, min int
		ok       bool
	}{
		{"6.18.44-fc-v1272", 6, 18, true},
		{"5.10.0-28-amd64", 5, 10, true},
		{"6.1", 6, 1, true},
		{"6", 0, 0, false},
		{"x.y", 0, 0, false},
	} {
		maj, min, ok := parseRelease(c.r)
		if ok != c.ok || maj != c.maj || min != c.min {
			t.Errorf("parseRelease(%q) = %d, %d, %v", c.r, maj, min, ok)
		}
	}
	if err := KernelAtLeast(2, 6, "anything"); err != nil {
		t.Errorf("Linux >= 2.6: %v", err)
	}
	err := KernelAtLeast(999, 1, "the frobnicator")
	if err == nil || !strings.Contains(err.Error(), "the frobnicator needs Linux >= 999.1, running ") || !strings.Contains(err.Error(), "uname -r") {
		t.Errorf("KernelAtLeast(999, 1): %v", err)
	}
}

func TestPermission(t *testing.T) {
	if err := Permission("op", fmt.Errorf("wrapped: %w", unix.EINVAL), CapNetAdmin); err != nil {
		t.Errorf("EINVAL is not a missing privilege: %v", err)
	}
	if err := Permission("op", nil); err != nil {
		t.Errorf("no error: %v", err)
	}
	// Bit 62 is no capability: never effective.
	err := Permission("frobnicating", fmt.Errorf("run program: %w", unix.EPERM), Cap{"CAP_FROB", 62})
	if err == nil || !strings.Contains(err.Error(), "frobnicating: run program: operation not permitted: needs capabilities CAP_FROB") ||
		!strings.Contains(err.Error(), "capsh --print") {
		t.Errorf("missing capability: %v", err)
	}
	// Nothing missing: something else denies it, and the message says
	// where to look.
	err = Permission("frobnicating", unix.EACCES)
	for _, s := range []string{"frobnicating: permission denied", "seccomp", "grep Seccomp /proc/self/status", "/sys/kernel/security/lsm"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("no capability missing: %v lacks %q", err, s)
		}
	}
}

// TestMissingRootChild is run by TestMissingRoot as an ordinary user.
func TestMissingRootChild(t *testing.T) {
	if os.Getenv("PREREQ_CHILD") == "" {
		t.Skip("run by TestMissingRoot")
	}
	if err := MissingRoot(); err == nil || !strings.Contains(err.Error(), "running as uid 65534 (check: id -u)") {
		t.Fatalf("MissingRoot as uid 65534: %v", err)
	}
	Root(t)
	t.Log("reached past a missing root")
}

// TestMissingRoot: root is no error; an ordinary user is one that says
// which uid runs and how to check, and Root skips on it.
func TestMissingRoot(t *testing.T) {
	Root(t)
	if err := MissingRoot(); err != nil {
		t.Fatalf("running as root, but: %v", err)
	}
	setpriv := Tool(t, "setpriv")
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--", os.Args[0], "-test.run=^TestMissingRootChild$", "-test.v")
	cmd.Env = append(os.Environ(), "PREREQ_CHILD=1", "CI=")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "--- SKIP: TestMissingRootChild") || strings.Contains(string(out), "reached past") {
		t.Errorf("as uid 65534, Root must skip:\n%s", out)
	}
}
