package nettest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/internal/prereq"
)

// Fixed addressing of the topology.
var (
	ClientV4          = netip.MustParseAddr("198.18.1.2")
	ApplianceClientV4 = netip.MustParseAddr("198.18.1.1")
	ApplianceServerV4 = netip.MustParseAddr("198.18.2.1")
	ServerV4          = netip.MustParseAddr("198.18.2.2")
	ClientV6          = netip.MustParseAddr("2001:2:0:1::2")
	ApplianceClientV6 = netip.MustParseAddr("2001:2:0:1::1")
	ApplianceServerV6 = netip.MustParseAddr("2001:2:0:2::1")
	ServerV6          = netip.MustParseAddr("2001:2:0:2::2")
)

// Interface names and MACs.
const (
	ClientIf          = "c0"
	ApplianceClientIf = "ac0"
	ApplianceServerIf = "as0"
	ServerIf          = "s0"

	ClientMAC          = "02:00:00:00:01:02"
	ApplianceClientMAC = "02:00:00:00:01:01"
	ApplianceServerMAC = "02:00:00:00:02:01"
	ServerMAC          = "02:00:00:00:02:02"
)

// Options tune the topology.
type Options struct {
	// ClientMTU is the MTU of the client link (c0/ac0). Default 1500. The
	// server link stays at 1500, so larger packets from the client must be
	// fragmented by the appliance.
	ClientMTU int
	// NeighbourGRO turns GRO on on the client's and the server's veth (c0,
	// s0), as a host that tunes its veths might: a veth with GRO has a
	// NAPI context, so the appliance's XDP can redirect frames into its
	// peer. By default the neighbours are left as ip-link creates them
	// (GRO off, TX checksum offload on), as a container or VM host has
	// them: then XDP must leave forwarding into them to the kernel.
	NeighbourGRO bool
}

// NS is a named network namespace.
type NS struct {
	Name string
}

// Topology is the three-namespace test network.
type Topology struct {
	Client, Appliance, Server *NS
}

var seq atomic.Int64

// Require skips the test when root, its privileges or the ip tool are
// missing, or fails it when CI=true; the message names what is missing.
// Namespaces need CAP_SYS_ADMIN (ip netns add mounts), links and XDP
// CAP_NET_ADMIN.
func Require(t testing.TB) {
	t.Helper()
	prereq.Root(t)
	prereq.Caps(t, prereq.CapSysAdmin, prereq.CapNetAdmin)
	prereq.Tool(t, "ip")
}

// New builds the topology and registers its removal with t.Cleanup.
func New(t testing.TB, opts Options) *Topology {
	t.Helper()
	Require(t)
	if opts.ClientMTU == 0 {
		opts.ClientMTU = 1500
	}
	id := fmt.Sprintf("sl%d-%d", os.Getpid(), seq.Add(1))
	topo := &Topology{
		Client:    &NS{Name: id + "-c"},
		Appliance: &NS{Name: id + "-a"},
		Server:    &NS{Name: id + "-s"},
	}
	for _, ns := range []*NS{topo.Client, topo.Appliance, topo.Server} {
		run(t, "ip", "netns", "add", ns.Name)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
				t.Errorf("nettest: removing %s: %v: %s", ns.Name, err, out)
			}
		})
		ns.ip(t, "link", "set", "lo", "up")
	}
	c, a, s := topo.Client, topo.Appliance, topo.Server
	mtu := fmt.Sprint(opts.ClientMTU)
	run(t, "ip", "link", "add", ClientIf, "netns", c.Name, "address", ClientMAC, "mtu", mtu,
		"type", "veth", "peer", "name", ApplianceClientIf, "netns", a.Name, "address", ApplianceClientMAC, "mtu", mtu)
	run(t, "ip", "link", "add", ServerIf, "netns", s.Name, "address", ServerMAC,
		"type", "veth", "peer", "name", ApplianceServerIf, "netns", a.Name, "address", ApplianceServerMAC)

	a.Sysctl(t, "net.ipv4.ip_forward", "1")
	a.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	for _, l := range []struct {
		ns                   *NS
		dev                  string
		v4, v6               netip.Addr
		peerV4, peerV6       netip.Addr
		peerMAC              string
		defaultV4, defaultV6 bool
	}{
		{c, ClientIf, ClientV4, ClientV6, ApplianceClientV4, ApplianceClientV6, ApplianceClientMAC, true, true},
		{a, ApplianceClientIf, ApplianceClientV4, ApplianceClientV6, ClientV4, ClientV6, ClientMAC, false, false},
		{a, ApplianceServerIf, ApplianceServerV4, ApplianceServerV6, ServerV4, ServerV6, ServerMAC, false, false},
		{s, ServerIf, ServerV4, ServerV6, ApplianceServerV4, ApplianceServerV6, ApplianceServerMAC, true, true},
	} {
		l.ns.ip(t, "addr", "add", l.v4.String()+"/24", "dev", l.dev)
		l.ns.ip(t, "addr", "add", l.v6.String()+"/64", "dev", l.dev, "nodad")
		l.ns.ip(t, "link", "set", l.dev, "up")
		l.ns.ip(t, "neigh", "replace", l.peerV4.String(), "lladdr", l.peerMAC, "dev", l.dev, "nud", "permanent")
		l.ns.ip(t, "neigh", "replace", l.peerV6.String(), "lladdr", l.peerMAC, "dev", l.dev, "nud", "permanent")
		if l.defaultV4 {
			l.ns.ip(t, "route", "add", "default", "via", l.peerV4.String())
			l.ns.ip(t, "-6", "route", "add", "default", "via", l.peerV6.String())
		}
	}
	if opts.NeighbourGRO {
		c.SetGRO(t, ClientIf, true)
		s.SetGRO(t, ServerIf, true)
	}
	return topo
}

// SetGRO is `ethtool -K dev gro on|off` inside the namespace.
func (n *NS) SetGRO(t testing.TB, dev string, on bool) {
	t.Helper()
	if err := n.Do(func() error { return setGRO(dev, on) }); err != nil {
		t.Fatal(err)
	}
}

// setGRO is ETHTOOL_SGRO.
func setGRO(dev string, on bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("nettest: ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	val := struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_SGRO}
	if on {
		val.data = 1
	}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(&val)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return fmt.Errorf("nettest: ETHTOOL_SGRO %s: %w", dev, errno)
	}
	return nil
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("nettest: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func (n *NS) ip(t testing.TB, args ...string) {
	t.Helper()
	run(t, "ip", append([]string{"-n", n.Name}, args...)...)
}

// IP runs `ip -n <ns> args...`, failing the test on error.
func (n *NS) IP(t testing.TB, args ...string) { t.Helper(); n.ip(t, args...) }

// Sysctl sets a sysctl inside the namespace.
func (n *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	run(t, "ip", "netns", "exec", n.Name, "sysctl", "-qw", key+"="+value)
}

// Do runs fn on an OS thread switched into the namespace and waits for it.
// Sockets, links and interface lookups made by fn belong to the namespace;
// goroutines started by fn do not run in it.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("nettest: own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("nettest: netns %s: %w", n.Name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("nettest: setns %s: %w", n.Name, err)
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

// Command returns a command that runs inside the namespace.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}
