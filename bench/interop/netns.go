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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shakenline/shakenline/internal/netns"
)

// ErrPrereq reports a missing prerequisite (root, ip, kamailio).
var ErrPrereq = errors.New("interop: prerequisite missing")

// Prereqs returns ErrPrereq when the run cannot work here.
func Prereqs(kamailio bool) error {
	if err := netns.Available(); err != nil {
		return fmt.Errorf("%w: %v", ErrPrereq, err)
	}
	if kamailio {
		if _, err := exec.LookPath("kamailio"); err != nil {
			if _, err2 := os.Stat("/usr/sbin/kamailio"); err2 != nil {
				return fmt.Errorf("%w: kamailio", ErrPrereq)
			}
		}
		if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/kamailio/modules/secsipid.so"); err != nil {
			return fmt.Errorf("%w: kamailio-secsipid-modules", ErrPrereq)
		}
	}
	return nil
}

// labTag starts the lab's namespace names: sli<pid>-<n>-core and
// sli<pid>-<n>-<carrier>.
const labTag = "sli"

// lab is the network: a core namespace with a bridge and the PKI host
// address, and one namespace per carrier on that bridge. Addresses are
// from 198.18.0.0/15 only: core 198.18.0.1, carrier i 198.18.i.1 (its
// services) and 198.18.i.10-13 (its SBC trunks A, B, C, unsigned).
type lab struct {
	prefix string
	core   *netns.NS
	hosts  map[string]*netns.NS

	mu    sync.Mutex
	procs []*proc
	made  []*netns.NS
}

const labBits = 16

// coreAddr is the PKI host (CRL distribution points).
var coreAddr = netip.MustParseAddr("198.18.0.1")

func hostAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i), 1}) }
func trunkAddr(i int, trunk byte) netip.Addr {
	off := map[byte]byte{'A': 10, 'B': 11, 'C': 12, 'N': 13}[trunk]
	return netip.AddrFrom4([4]byte{198, 18, byte(i), off})
}

func newLab(names []string) (l *lab, err error) {
	// Namespaces that killed runs left behind go first; one that cannot
	// be removed does not stop this run, whose names differ.
	_, _ = netns.RemoveLeftovers(labTag)
	l = &lab{prefix: netns.Prefix(labTag), hosts: map[string]*netns.NS{}}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.core, err = l.addNS("core"); err != nil {
		return l, err
	}
	if err := l.core.Bridge("br0"); err != nil {
		return l, err
	}
	if err := l.core.AddAddr("br0", netip.PrefixFrom(coreAddr, labBits)); err != nil {
		return l, err
	}
	for i, name := range names {
		ns, err := l.addNS(name)
		if err != nil {
			return l, err
		}
		l.hosts[name] = ns
		if err := netns.Veth(netns.End{NS: ns, Name: "eth0"}, netns.End{NS: l.core, Name: fmt.Sprintf("c%d", i+1), Master: "br0"}); err != nil {
			return l, err
		}
		addrs := []netip.Addr{hostAddr(i + 1)}
		for _, t := range []byte("ABCN") {
			addrs = append(addrs, trunkAddr(i+1, t))
		}
		for _, a := range addrs {
			if err := ns.AddAddr("eth0", netip.PrefixFrom(a, labBits)); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

func (l *lab) addNS(name string) (*netns.NS, error) {
	ns, err := netns.Add(l.prefix + "-" + name)
	if err != nil {
		return nil, err
	}
	l.made = append(l.made, ns)
	return ns, nil
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
		if err := l.made[i].Delete(); err != nil {
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
func (l *lab) start(ctx context.Context, name string, ns *netns.NS, logPath string, port uint16, argv ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("interop: %w", err)
	}
	cmd := ns.Command(argv[0], argv[1:]...)
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
