package nettest

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/shakenline/shakenline/internal/netns"
)

// tag starts the topology's namespace names: sl<pid>-<n>-{c,a,s}.
const tag = "sl"

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

// NS is a namespace of the topology: internal/netns's, with the testing
// forms of IP, Sysctl and SetGRO (they fail the test on error). Do, Go,
// Command and Name are netns.NS's.
type NS struct {
	*netns.NS
}

// Topology is the three-namespace test network.
type Topology struct {
	Client, Appliance, Server *NS
}

// sweep removes, once per process, the namespaces that killed runs left.
var sweep sync.Once

// Require skips the test when root, its privileges or the ip tool are
// missing, or fails it when CI=true; the message names what is missing.
// Namespaces need CAP_SYS_ADMIN (ip netns add mounts), links and XDP
// CAP_NET_ADMIN.
func Require(t testing.TB) {
	t.Helper()
	netns.Require(t)
}

// New builds the topology and registers its removal with t.Cleanup.
func New(t testing.TB, opts Options) *Topology {
	t.Helper()
	Require(t)
	sweep.Do(func() {
		if gone, err := netns.RemoveLeftovers(tag); len(gone) > 0 || err != nil {
			t.Logf("nettest: removed namespaces of killed runs %v (%v)", gone, err)
		}
	})
	if opts.ClientMTU == 0 {
		opts.ClientMTU = 1500
	}
	id := netns.Prefix(tag)
	topo := &Topology{
		Client:    &NS{netns.New(t, id+"-c")},
		Appliance: &NS{netns.New(t, id+"-a")},
		Server:    &NS{netns.New(t, id+"-s")},
	}
	c, a, s := topo.Client, topo.Appliance, topo.Server
	if err := netns.Veth(
		netns.End{NS: c.NS, Name: ClientIf, MAC: ClientMAC, MTU: opts.ClientMTU},
		netns.End{NS: a.NS, Name: ApplianceClientIf, MAC: ApplianceClientMAC, MTU: opts.ClientMTU}); err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(
		netns.End{NS: s.NS, Name: ServerIf, MAC: ServerMAC},
		netns.End{NS: a.NS, Name: ApplianceServerIf, MAC: ApplianceServerMAC}); err != nil {
		t.Fatal(err)
	}

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
		for _, p := range []netip.Prefix{netip.PrefixFrom(l.v4, 24), netip.PrefixFrom(l.v6, 64)} {
			if err := l.ns.AddAddr(l.dev, p); err != nil {
				t.Fatal(err)
			}
		}
		l.ns.IP(t, "neigh", "replace", l.peerV4.String(), "lladdr", l.peerMAC, "dev", l.dev, "nud", "permanent")
		l.ns.IP(t, "neigh", "replace", l.peerV6.String(), "lladdr", l.peerMAC, "dev", l.dev, "nud", "permanent")
		if l.defaultV4 {
			l.ns.IP(t, "route", "add", "default", "via", l.peerV4.String())
			l.ns.IP(t, "-6", "route", "add", "default", "via", l.peerV6.String())
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
	if err := n.NS.SetGRO(dev, on); err != nil {
		t.Fatal(err)
	}
}

// IP runs `ip -n <ns> args...`, failing the test on error.
func (n *NS) IP(t testing.TB, args ...string) {
	t.Helper()
	if err := n.NS.IP(args...); err != nil {
		t.Fatal(err)
	}
}

// Sysctl sets a sysctl inside the namespace.
func (n *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	if err := n.NS.Sysctl(key, value); err != nil {
		t.Fatal(err)
	}
}
