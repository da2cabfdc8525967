package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/internal/prereq"
)

// runDir is where ip netns keeps its namespaces.
const runDir = "/run/netns/"

// NS is a network namespace. Name is its name under /run/netns; the zero
// NS (Name "") is the namespace the process runs in.
type NS struct {
	Name string
	lock *os.File // /run/netns/Name, flock'ed while the process lives
}

// Available returns nil when namespaces can be made here, or an error
// naming what is missing: root, CAP_SYS_ADMIN (ip netns add mounts, setns),
// CAP_NET_ADMIN (links, addresses) or the ip tool.
func Available() error {
	if err := prereq.MissingRoot(); err != nil {
		return err
	}
	if err := prereq.MissingCaps(prereq.CapSysAdmin, prereq.CapNetAdmin); err != nil {
		return err
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("needs iproute2's ip: %w", err)
	}
	return nil
}

// Require skips t when Available reports something missing, or fails it
// when CI=true.
func Require(t testing.TB) {
	t.Helper()
	prereq.Need(t, Available())
}

// Add creates the namespace name with its loopback up and locks it for
// the life of the process (see RemoveLeftovers). The caller deletes it;
// on error nothing is left.
func Add(name string) (*NS, error) {
	if name == "" || strings.ContainsAny(name, "/ ") {
		return nil, fmt.Errorf("netns: bad name %q", name)
	}
	if err := run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	n := &NS{Name: name}
	f, err := os.Open(runDir + name)
	if err == nil {
		if err = unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
		}
	}
	if err != nil {
		_ = n.Delete()
		return nil, fmt.Errorf("netns: locking %s: %w", name, err)
	}
	n.lock = f
	if err := n.IP("link", "set", "lo", "up"); err != nil {
		_ = n.Delete()
		return nil, err
	}
	return n, nil
}

// New is Add for a test: it skips or fails t when namespaces cannot be
// made (Require), fails it when Add fails, and deletes the namespace with
// t.Cleanup, also when the test fails.
func New(t testing.TB, name string) *NS {
	t.Helper()
	Require(t)
	n, err := Add(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Delete(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// Delete kills the processes still running in the namespace and removes
// it, with its links.
func (n *NS) Delete() error {
	if n.Name == "" {
		return errors.New("netns: the process's own namespace is not deleted")
	}
	n.kill()
	if n.lock != nil {
		n.lock.Close() // an open file would keep the namespace alive
		n.lock = nil
	}
	return run("ip", "netns", "del", n.Name)
}

// kill sends SIGKILL to every process in the namespace (but this one,
// whose main thread may be inside it in Do), up to three times.
func (n *NS) kill() {
	for range 3 {
		out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
		var pids []int
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// IP runs `ip -n <name> args...` (plain `ip args...` for the zero NS).
func (n *NS) IP(args ...string) error {
	if n.Name != "" {
		args = append([]string{"-n", n.Name}, args...)
	}
	return run("ip", args...)
}

// Sysctl sets a sysctl inside the namespace (sysctl -qw key=value).
func (n *NS) Sysctl(key, value string) error {
	if n.Name == "" {
		return errors.New("netns: Sysctl tunes test namespaces, not the machine's")
	}
	return run("ip", "netns", "exec", n.Name, "sysctl", "-qw", key+"="+value)
}

// Command returns a command that runs inside the namespace (ip netns
// exec, which execs it: the process started is the command itself).
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	if n.Name == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on an OS thread switched into the namespace and waits for it.
// Sockets, links and interface lookups made by fn belong to the namespace;
// goroutines started by fn do not run in it.
func (n *NS) Do(fn func() error) error {
	if n.Name == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("netns: own namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(runDir+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("netns: %s: %w", n.Name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: setns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err == nil {
			// Only a thread back in its own namespace may be reused.
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Go starts fn like Do but does not wait; the returned channel yields its
// result.
func (n *NS) Go(fn func() error) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- n.Do(fn) }()
	return errc
}

// run runs a command and returns an error with its output when it fails.
func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("netns: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
