package bpf

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Which frames XDP may redirect, and where (see doc.go, "Redirect only
// where it works").

// ifCsumVerify mirrors IF_CSUM_VERIFY in steer.c.
const ifCsumVerify = 0x1

// redirectResync is how often the redirect targets are re-read without
// a link event (a lost notification cannot leave them wrong for longer).
const redirectResync = 5 * time.Second

// driverName is the device's driver (ETHTOOL_GDRVINFO), "" when the
// device does not say. Runs in the calling thread's network namespace.
func driverName(ifname string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, ifname)
	if err != nil {
		return ""
	}
	return cString(info.Driver[:])
}

// partialChecksums reports whether frames that native XDP sees on a device
// of this driver may carry a partial L4 checksum (CHECKSUM_PARTIAL): veth
// and tun hand XDP frames straight from a host's stack, where the
// checksum is left to an offload. A NIC's frames come from the wire,
// complete. An unknown driver is treated like a veth.
func partialChecksums(driver string) bool {
	switch driver {
	case "veth", "tun", "":
		return true
	}
	return false
}

// setIfaceFlags writes the attached interface's flags into the ifaces map
// and returns whether the program verifies L4 checksums there. Generic
// (skb) mode keeps the skb's checksum state through a redirect, so only
// native mode needs it.
func (s *Steering) setIfaceFlags(a *attached) (bool, error) {
	verify := a.mode == "native" && partialChecksums(a.driver)
	a.val.Flags = 0
	if verify {
		a.val.Flags |= ifCsumVerify
	}
	if err := s.objs.Ifaces.Put(uint32(a.ifindex), &a.val); err != nil {
		return false, fmt.Errorf("bpf: ifaces map: %w", err)
	}
	return verify, nil
}

// startRedirectWatch learns which interfaces take redirected frames,
// fills tx_ports with exactly those, and keeps it right as links change.
// Runs in the calling thread's network namespace (the sockets stay in it).
func (s *Steering) startRedirectWatch() error {
	nd, err := dialNetdev()
	switch {
	case errors.Is(err, errNoNetdevFamily):
		s.log.Warn("bpf: the kernel does not report which devices take XDP-redirected frames (Linux >= 6.3); "+
			"XDP steers INVITEs and the kernel forwards everything else", "err", err)
	case err != nil:
		return err
	default:
		s.nd = nd
	}
	var mgmt uint32
	if s.nd != nil {
		mgmt = s.nd.mgmt
	}
	ev, err := openLinkEvents(mgmt)
	if err != nil {
		return err
	}
	s.events = ev
	// The devmap resolves the ifindex of an update in the updating
	// thread's network namespace: the watcher must run in this one.
	netns, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bpf: own network namespace: %w", err)
	}
	s.mu.Lock()
	s.refreshRedirect(true)
	s.mu.Unlock()

	s.watchDone = make(chan struct{})
	go s.watchRedirect(netns)
	return nil
}

// enterNetns locks the calling goroutine to its thread and moves the
// thread into the namespace netns refers to, unless it is there already
// (the appliance process lives in one namespace and need not have
// CAP_SYS_ADMIN, which setns needs). The thread is never unlocked: it
// ends with the goroutine.
func enterNetns(netns int) error {
	runtime.LockOSThread()
	var want, have unix.Stat_t
	if err := unix.Fstat(netns, &want); err != nil {
		return err
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &have); err != nil {
		return err
	}
	if want.Dev == have.Dev && want.Ino == have.Ino {
		return nil
	}
	return unix.Setns(netns, unix.CLONE_NEWNET)
}

func (s *Steering) watchRedirect(netns int) {
	defer close(s.watchDone)
	err := enterNetns(netns)
	unix.Close(netns)
	if err != nil {
		// Without updates a target could stop taking frames unnoticed:
		// leave all forwarding to the kernel (deleting needs no namespace).
		s.log.Error("bpf: cannot follow link changes (the watcher cannot enter the interfaces' network namespace): "+
			"the kernel forwards everything XDP does not steer", "err", err)
		s.mu.Lock()
		for i := range s.ifaces {
			a := &s.ifaces[i]
			if err := s.objs.TxPorts.Delete(uint32(a.ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				s.log.Error("bpf: tx_ports map", "iface", a.name, "err", err)
			}
			a.redirect, a.redirectWhy = false, "link changes cannot be followed"
		}
		s.mu.Unlock()
		for {
			if _, err := s.events.wait(-1); errors.Is(err, os.ErrClosed) {
				return
			}
		}
	}
	for {
		_, err := s.events.wait(int(redirectResync / time.Millisecond))
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			s.log.Warn("bpf: watching links", "err", err)
			time.Sleep(time.Second) // no busy loop on a broken socket
		}
		s.mu.Lock()
		if !s.closed {
			s.refreshRedirect(false)
		}
		s.mu.Unlock()
	}
}

func (s *Steering) stopRedirectWatch() {
	s.stopOnce.Do(func() {
		if s.events == nil {
			return
		}
		if s.watchDone != nil {
			s.events.wake()
			<-s.watchDone
		}
		s.events.Close()
	})
}

// refreshRedirect re-reads every interface's redirect safety and updates
// tx_ports where it changed (all of them when initial). Caller holds mu.
func (s *Steering) refreshRedirect(initial bool) {
	for i := range s.ifaces {
		a := &s.ifaces[i]
		ok, why := s.redirectable(a)
		if ok == a.redirect && why == a.redirectWhy && !initial {
			continue
		}
		key := uint32(a.ifindex)
		var err error
		if ok {
			err = s.objs.TxPorts.Put(key, key)
		} else if err = s.objs.TxPorts.Delete(key); errors.Is(err, ebpf.ErrKeyNotExist) {
			err = nil
		}
		if err != nil {
			s.log.Error("bpf: tx_ports map", "iface", a.name, "err", err)
			continue
		}
		if ok != a.redirect || initial {
			if ok {
				s.log.Info("bpf: XDP forwards into this interface", "iface", a.name, "why", why)
			} else {
				s.log.Info("bpf: the kernel forwards into this interface (XDP redirect not safe)", "iface", a.name, "why", why)
			}
		}
		a.redirect, a.redirectWhy = ok, why
	}
}

// redirectable says whether frames XDP redirects into a can arrive. The
// kernel's answer is NETDEV_XDP_ACT_NDO_XMIT in the device's XDP features:
// a veth reports it only while its peer has an XDP program or GRO (without
// them the frames are dropped), a NIC driver while it can transmit XDP
// frames (some need their own XDP program attached, which Attach does).
func (s *Steering) redirectable(a *attached) (bool, string) {
	if s.nd == nil {
		return false, "the kernel does not report XDP features (netdev netlink family, Linux >= 6.3)"
	}
	f, err := s.nd.xdpFeatures(a.ifindex)
	if err != nil {
		return false, err.Error()
	}
	if f&netdevXDPActNdoXmit == 0 {
		if a.driver == "veth" {
			return false, "veth whose peer has neither an XDP program nor GRO: redirected frames would be dropped"
		}
		return false, "device does not take XDP-redirected frames now (no NETDEV_XDP_ACT_NDO_XMIT)"
	}
	return true, "device takes XDP-redirected frames (NETDEV_XDP_ACT_NDO_XMIT)"
}

// RedirectTargets says, per interface, whether XDP currently forwards into
// it (true) or leaves that to the kernel (false).
func (s *Steering) RedirectTargets() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]bool, len(s.ifaces))
	for _, a := range s.ifaces {
		m[a.name] = a.redirect
	}
	return m
}
