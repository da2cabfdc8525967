package prereq

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Cap is a Linux capability (capabilities(7)).
type Cap struct {
	Name string // as capsh prints it: CAP_NET_ADMIN
	Bit  int
}

// The capabilities the project's tests need.
var (
	CapNetAdmin = Cap{"CAP_NET_ADMIN", unix.CAP_NET_ADMIN} // links, addresses, XDP attach, IP_TRANSPARENT
	CapSysAdmin = Cap{"CAP_SYS_ADMIN", unix.CAP_SYS_ADMIN} // ip netns add (mounts), setns
	CapBPF      = Cap{"CAP_BPF", unix.CAP_BPF}             // BPF maps and programs (Linux >= 5.8; CAP_SYS_ADMIN covers it)
)

// checkCaps is the command line that shows a process's capabilities.
const checkCaps = "check: capsh --print, or grep Cap /proc/self/status and capsh --decode=<CapEff>"

// Caps skips (fails under CI) unless every capability in caps is in the
// effective set, naming the missing ones.
func Caps(t testing.TB, caps ...Cap) {
	t.Helper()
	Need(t, MissingCaps(caps...))
}

// MissingCaps returns nil when every capability in caps is effective, or
// an error naming those that are not and how to check.
func MissingCaps(caps ...Cap) error {
	eff, err := effectiveCaps()
	if err != nil {
		return fmt.Errorf("cannot read the process's capabilities: %w (%s)", err, checkCaps)
	}
	if m := missing(eff, caps); len(m) > 0 {
		return fmt.Errorf("needs capabilities %s, not in the effective set (CapEff=%016x; %s)", strings.Join(m, ", "), eff, checkCaps)
	}
	return nil
}

func missing(eff uint64, caps []Cap) []string {
	var m []string
	for _, c := range caps {
		if eff&(1<<uint(c.Bit)) == 0 {
			m = append(m, c.Name)
		}
	}
	return m
}

func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, err
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// Kernel skips (fails under CI) unless the running kernel is at least
// major.minor, naming the feature that needs it.
func Kernel(t testing.TB, major, minor int, feature string) {
	t.Helper()
	Need(t, KernelAtLeast(major, minor, feature))
}

// KernelAtLeast returns nil when the running kernel is at least
// major.minor, or an error naming the feature, the version it needs and
// the one running.
func KernelAtLeast(major, minor int, feature string) error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("%s needs Linux >= %d.%d; uname: %w (check: uname -r)", feature, major, minor, err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	maj, min, ok := parseRelease(release)
	if !ok {
		return fmt.Errorf("%s needs Linux >= %d.%d; cannot read the running kernel's version %q (check: uname -r)", feature, major, minor, release)
	}
	if maj < major || maj == major && min < minor {
		return fmt.Errorf("%s needs Linux >= %d.%d, running %s (check: uname -r)", feature, major, minor, release)
	}
	return nil
}

// parseRelease reads "6.18.44-fc" as 6, 18.
func parseRelease(r string) (major, minor int, ok bool) {
	num := func(s string) (int, string, bool) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n, err := strconv.Atoi(s[:i])
		return n, s[i:], err == nil
	}
	major, rest, ok := num(r)
	if !ok || !strings.HasPrefix(rest, ".") {
		return 0, 0, false
	}
	minor, _, ok = num(rest[1:])
	return major, minor, ok
}

// Permission explains err, the result of an operation that needs the
// capabilities in caps, when it is a permission error (EPERM, EACCES):
// the returned error names the capabilities missing from the effective
// set or, when none is, what else can deny it and how to check. It
// returns nil for any other error (a real failure, for the test to
// report). Use it as prereq.Need(t, prereq.Permission(...)).
func Permission(op string, err error, caps ...Cap) error {
	if err == nil || !errors.Is(err, os.ErrPermission) {
		return nil
	}
	eff, cerr := effectiveCaps()
	if cerr == nil {
		if m := missing(eff, caps); len(m) > 0 {
			return fmt.Errorf("%s: %v: needs capabilities %s, not in the effective set (CapEff=%016x; %s)",
				op, err, strings.Join(m, ", "), eff, checkCaps)
		}
	}
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = c.Name
	}
	return fmt.Errorf("%s: %v, although %s are effective: something else denies it: a seccomp filter (%s; check: grep Seccomp /proc/self/status), "+
		"a security module (check: cat /sys/kernel/security/lsm and its audit log), kernel lockdown (check: cat /sys/kernel/security/lockdown) "+
		"or, for bpf(2) before Linux 6.5, kernel.unprivileged_bpf_disabled with a capability dropped (check: sysctl kernel.unprivileged_bpf_disabled)",
		op, err, strings.Join(names, ", "), seccompStatus())
}

func seccompStatus() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "Seccomp: unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
			switch strings.TrimSpace(v) {
			case "0":
				return "Seccomp: 0, none here"
			case "2":
				return "Seccomp: 2, this process is filtered"
			}
			return "Seccomp:" + v
		}
	}
	return "Seccomp: unknown"
}
