package interop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrPrereq reports a missing prerequisite (root, ip, kamailio).
var ErrPrereq = errors.New("interop: prerequisite missing")

// Prereqs returns ErrPrereq when the run cannot work here.
func Prereqs(kamailio bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: root (network namespaces)", ErrPrereq)
	}
	tools := []string{"ip"}
	if kamailio {
		tools = append(tools, "kamailio")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			if _, err2 := os.Stat("/usr/sbin/" + t); err2 != nil {
				return fmt.Errorf("%w: %s", ErrPrereq, t)
			}
		}
	}
	if kamailio {
		if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/kamailio/modules/secsipid.so"); err != nil {
			return fmt.Errorf("%w: kamailio-secsipid-modules", ErrPrereq)
		}
	}
	return nil
}

// netns is a named network namespace made by this package.
type netns struct{ name string }

// do runs fn on an OS thread switched into the namespace. Sockets made by
// fn belong to the namespace; goroutines fn starts do not run in it.
func (n netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("interop: own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+n.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("interop: netns %s: %w", n.name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("interop: setns %s: %w", n.name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread() // only a thread back home may be reused
		}
		errc <- ferr
	}()
	return <-errc
}

func ipcmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("interop: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// lab is the network: a core namespace with a bridge and the PKI host
// address, and one namespace per carrier on that bridge. Addresses are
// from 198.18.0.0/15 only: core 198.18.0.1, carrier i 198.18.i.1 (its
// services) and 198.18.i.10-13 (its SBC trunks A, B, C, unsigned).
type lab struct {
	prefix string
	core   netns
	hosts  map[string]netns

	mu    sync.Mutex
	procs []*proc
	made  []string
}

const labMask = "/16"

// coreAddr is the PKI host (CRL distribution points).
var coreAddr = netip.MustParseAddr("198.18.0.1")

func hostAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i), 1}) }
func trunkAddr(i int, trunk byte) netip.Addr {
	off := map[byte]byte{'A': 10, 'B': 11, 'C': 12, 'N': 13}[trunk]
	return netip.AddrFrom4([4]byte{198, 18, byte(i), off})
}

func newLab(names []string) (l *lab, err error) {
	l = &lab{prefix: fmt.Sprintf("sli%d", os.Getpid()), hosts: map[string]netns{}}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	l.core = netns{l.prefix + "-core"}
	if err := l.addNS(l.core); err != nil {
		return l, err
	}
	steps := [][]string{
		{"-n", l.core.name, "link", "add", "br0", "type", "bridge"},
		{"-n", l.core.name, "link", "set", "br0", "up"},
		{"-n", l.core.name, "addr", "add", coreAddr.String() + labMask, "dev", "br0"},
	}
	for i, name := range names {
		ns := netns{fmt.Sprintf("%s-%s", l.prefix, name)}
		if err := l.addNS(ns); err != nil {
			return l, err
		}
		l.hosts[name] = ns
		peer := fmt.Sprintf("c%d", i+1)
		steps = append(steps,
			[]string{"link", "add", "eth0", "netns", ns.name, "type", "veth", "peer", "name", peer, "netns", l.core.name},
			[]string{"-n", l.core.name, "link", "set", peer, "master", "br0", "up"},
			[]string{"-n", ns.name, "link", "set", "eth0", "up"},
			[]string{"-n", ns.name, "addr", "add", hostAddr(i+1).String() + labMask, "dev", "eth0"},
		)
		for _, t := range []byte("ABCN") {
			steps = append(steps, []string{"-n", ns.name, "addr", "add", trunkAddr(i+1, t).String() + labMask, "dev", "eth0"})
		}
	}
	for _, s := range steps {
		if err := ipcmd(s...); err != nil {
			return l, err
		}
	}
	return l, nil
}

func (l *lab) addNS(ns netns) error {
	if err := ipcmd("netns", "add", ns.name); err != nil {
		return err
	}
	l.made = append(l.made, ns.name)
	return ipcmd("-n", ns.name, "link", "set", "lo", "up")
}

// close stops every process the lab started and removes its namespaces
// (which removes their links and the bridge). It returns what failed.
func (l *lab) close() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	for i := len(l.made) - 1; i >= 0; i-- {
		if err := ipcmd("netns", "del", l.made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	l.made = nil
	return errors.Join(errs...)
}

// proc is a process started in a namespace, in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File

	stopped time.Duration // how long stop waited
}

// start runs argv inside ns (ip netns exec), output to logPath, and
// waits until it has bound UDP port (read from /proc/PID/net/udp, which
// shows the process's own namespace).
func (l *lab) start(ctx context.Context, name string, ns netns, logPath string, port uint16, argv ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("interop: %w", err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("interop: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: f}
	go func() { _ = cmd.Wait(); close(p.done) }()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for !udpBound(cmd.Process.Pid, port) {
		select {
		case <-p.done:
			return nil, fmt.Errorf("interop: %s exited at start: %s", name, tail(logPath))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("interop: %s not listening on port %d: %s", name, port, tail(logPath))
		}
	}
	return p, nil
}

// stop ends the process group: SIGTERM, SIGKILL after 5 s.
func (p *proc) stop() {
	pg := p.cmd.Process.Pid
	start := time.Now()
	_ = syscall.Kill(-pg, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pg, syscall.SIGKILL)
		<-p.done
	}
	p.stopped = time.Since(start)
	_ = syscall.Kill(-pg, syscall.SIGKILL) // workers a dead parent left
	p.log.Close()
}

func udpBound(pid int, port uint16) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, file := range []string{"udp", "udp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 2 && strings.HasSuffix(fields[1], want) && fields[2] == "00000000:0000" {
				f.Close()
				return true
			}
		}
		f.Close()
	}
	return false
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}
