package netns

import (
	"fmt"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The address ranges a test may use (RFC 2544 and RFC 5180 benchmarking
// ranges): AddAddr refuses any other.
var (
	RangeV4 = netip.MustParsePrefix("198.18.0.0/15")
	RangeV6 = netip.MustParsePrefix("2001:2::/48")
)

// End is one end of a veth pair.
type End struct {
	NS     *NS    // nil or the zero NS: the process's own namespace
	Name   string // device name, at most 15 bytes
	MAC    string // optional fixed address (02:00:...)
	MTU    int    // optional; 0 keeps the kernel's 1500
	Master string // optional bridge in NS to enslave this end to
}

func (e End) ns() *NS {
	if e.NS == nil {
		return &NS{}
	}
	return e.NS
}

// args is the part of `ip link add` that describes the end.
func (e End) args() []string {
	a := []string{"name", e.Name}
	if e.NS != nil && e.NS.Name != "" {
		a = append(a, "netns", e.NS.Name)
	}
	if e.MAC != "" {
		a = append(a, "address", e.MAC)
	}
	if e.MTU != 0 {
		a = append(a, "mtu", strconv.Itoa(e.MTU))
	}
	return a
}

// Veth creates a veth pair with its ends made directly in their
// namespaces, enslaves the ends that name a Master and sets both up.
// Removing either namespace removes the pair.
func Veth(a, b End) error {
	if len(a.Name) >= unix.IFNAMSIZ || len(b.Name) >= unix.IFNAMSIZ {
		return fmt.Errorf("netns: veth names %q, %q: at most %d bytes", a.Name, b.Name, unix.IFNAMSIZ-1)
	}
	args := append([]string{"link", "add"}, a.args()...)
	args = append(args, "type", "veth", "peer")
	if err := run("ip", append(args, b.args()...)...); err != nil {
		return err
	}
	for _, e := range []End{a, b} {
		if e.Master != "" {
			if err := e.ns().IP("link", "set", e.Name, "master", e.Master); err != nil {
				return err
			}
		}
		if err := e.ns().IP("link", "set", e.Name, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Bridge creates a bridge in the namespace and sets it up.
func (n *NS) Bridge(name string) error {
	if err := n.IP("link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	return n.IP("link", "set", name, "up")
}

// InRange reports whether p lies within RangeV4 or RangeV6.
func InRange(p netip.Prefix) bool {
	for _, r := range []netip.Prefix{RangeV4, RangeV6} {
		if p.IsValid() && p.Bits() >= r.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// AddAddr adds the address p (198.18.1.2/24) to dev in the namespace; an
// IPv6 address skips duplicate address detection (nodad), so it is usable
// at once. It refuses an address outside RangeV4 and RangeV6.
func (n *NS) AddAddr(dev string, p netip.Prefix) error {
	if !InRange(p) {
		return fmt.Errorf("netns: %v is outside %v and %v, the ranges tests may use", p, RangeV4, RangeV6)
	}
	args := []string{"addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	return n.IP(args...)
}

// SetGRO is `ethtool -K dev gro on|off` inside the namespace.
func (n *NS) SetGRO(dev string, on bool) error {
	return n.Do(func() error { return setGRO(dev, on) })
}

// setGRO is ETHTOOL_SGRO.
func setGRO(dev string, on bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: ethtool socket: %w", err)
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
		return fmt.Errorf("netns: ETHTOOL_SGRO %s: %w", dev, errno)
	}
	return nil
}
