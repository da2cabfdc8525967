package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// The kernel's "netdev" generic netlink family (Linux >= 6.3), from
// include/uapi/linux/netdev.h, which Debian 12's linux-libc-dev (6.1)
// does not have yet.
const (
	netdevFamily          = "netdev"
	netdevMcgrpMgmt       = "mgmt"
	netdevCmdDevGet       = 1
	netdevADevIfindex     = 1
	netdevADevXDPFeatures = 3
	// NETDEV_XDP_ACT_NDO_XMIT: the device takes XDP_REDIRECTed frames
	// (implements ndo_xdp_xmit and can use it now: a veth reports it when
	// its peer has an XDP program or GRO, so that frames have a NAPI
	// context to land in; drivers that need their own XDP program for it
	// report it only while one is attached).
	netdevXDPActNdoXmit = 4

	// include/uapi/linux/genetlink.h
	genlHdrLen           = 4 // struct genlmsghdr
	ctrlAttrMcastGrpName = 1
	ctrlAttrMcastGrpID   = 2
)

// errNoNetdevFamily: the kernel has no netdev netlink family (< 6.3), so
// it cannot say which devices take redirected frames.
var errNoNetdevFamily = errors.New("kernel has no netdev netlink family (XDP features need Linux >= 6.3)")

// netdevConn is a request/response socket for the netdev family, bound
// to the network namespace of the thread that opened it.
type netdevConn struct {
	fd     int
	family uint16
	mgmt   uint32 // multicast group of the device notifications
	seq    uint32
	buf    []byte
}

func dialNetdev() (*netdevConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("bpf: generic netlink socket: %w", err)
	}
	c := &netdevConn{fd: fd, buf: make([]byte, 1<<16)}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		c.Close()
		return nil, fmt.Errorf("bpf: generic netlink bind: %w", err)
	}
	// A receive timeout keeps a kernel that never answers from hanging
	// the caller.
	tv := unix.Timeval{Sec: 2}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	msgs, err := c.request(unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY, 1, nlAttrString(unix.CTRL_ATTR_FAMILY_NAME, netdevFamily))
	if errors.Is(err, unix.ENOENT) {
		c.Close()
		return nil, errNoNetdevFamily
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("bpf: resolve netlink family %q: %w", netdevFamily, err)
	}
	for _, m := range msgs {
		for _, a := range nlAttrs(m) {
			switch a.typ {
			case unix.CTRL_ATTR_FAMILY_ID:
				if len(a.val) >= 2 {
					c.family = binary.NativeEndian.Uint16(a.val)
				}
			case unix.CTRL_ATTR_MCAST_GROUPS:
				for _, g := range nlAttrs(a.val) {
					var name string
					var id uint32
					for _, f := range nlAttrs(g.val) {
						switch f.typ {
						case ctrlAttrMcastGrpName:
							name = cString(f.val)
						case ctrlAttrMcastGrpID:
							if len(f.val) >= 4 {
								id = binary.NativeEndian.Uint32(f.val)
							}
						}
					}
					if name == netdevMcgrpMgmt {
						c.mgmt = id
					}
				}
			}
		}
	}
	if c.family == 0 {
		c.Close()
		return nil, fmt.Errorf("bpf: netlink family %q: no id in the answer", netdevFamily)
	}
	return c, nil
}

func (c *netdevConn) Close() error { return unix.Close(c.fd) }

// xdpFeatures returns the NETDEV_XDP_ACT_* bits of a device.
func (c *netdevConn) xdpFeatures(ifindex int) (uint64, error) {
	msgs, err := c.request(c.family, netdevCmdDevGet, 1, nlAttrU32(netdevADevIfindex, uint32(ifindex)))
	if err != nil {
		return 0, fmt.Errorf("bpf: netdev dev-get %d: %w", ifindex, err)
	}
	for _, m := range msgs {
		for _, a := range nlAttrs(m) {
			if a.typ == netdevADevXDPFeatures && len(a.val) >= 8 {
				return binary.NativeEndian.Uint64(a.val), nil
			}
		}
	}
	return 0, fmt.Errorf("bpf: netdev dev-get %d: no xdp-features attribute", ifindex)
}

// request sends one generic netlink request and returns the payloads
// (after the genl header) of the answer's messages.
func (c *netdevConn) request(family uint16, cmd, version uint8, attrs ...[]byte) ([][]byte, error) {
	c.seq++
	b := make([]byte, unix.SizeofNlMsghdr+genlHdrLen, 64)
	for _, a := range attrs {
		b = append(b, a...)
	}
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], family)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(b[8:], c.seq)
	b[16], b[17] = cmd, version
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(c.buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("short netlink error")
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return nil, unix.Errno(-e)
				}
				return out, nil // the ACK ends the answer
			case unix.NLMSG_DONE:
				return out, nil
			default:
				if len(m.Data) >= genlHdrLen {
					out = append(out, append([]byte(nil), m.Data[genlHdrLen:]...))
				}
			}
		}
	}
}

// linkEvents is a non-blocking socket subscribed to what changes the
// answer of redirectable: link changes (rtnetlink) and, where the kernel
// has them, netdev feature notifications (a veth's NDO_XMIT changes with
// its peer, in whatever namespace that peer lives).
type linkEvents struct {
	rtnl, genl int // -1 when absent
	stop       int // eventfd: Close wakes the waiter
	buf        []byte
}

func openLinkEvents(mgmt uint32) (*linkEvents, error) {
	e := &linkEvents{rtnl: -1, genl: -1, stop: -1, buf: make([]byte, 1<<16)}
	fail := func(what string, err error) (*linkEvents, error) {
		e.Close()
		return nil, fmt.Errorf("bpf: link events: %s: %w", what, err)
	}
	var err error
	if e.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail("eventfd", err)
	}
	if e.rtnl, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE); err != nil {
		return fail("rtnetlink socket", err)
	}
	if err := unix.Bind(e.rtnl, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		return fail("rtnetlink bind", err)
	}
	if mgmt != 0 {
		if e.genl, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_GENERIC); err != nil {
			return fail("generic netlink socket", err)
		}
		if err := unix.Bind(e.genl, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fail("generic netlink bind", err)
		}
		if err := unix.SetsockoptInt(e.genl, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(mgmt)); err != nil {
			return fail("join netdev mgmt group", err)
		}
	}
	return e, nil
}

// wait blocks until an event arrives (true), the timeout passes (false)
// or Close is called (os.ErrClosed). It drains what arrived: the caller
// re-reads the state, not the events. A socket that overflowed (ENOBUFS)
// counts as an event.
func (e *linkEvents) wait(timeoutMs int) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(e.stop), Events: unix.POLLIN}, {Fd: int32(e.rtnl), Events: unix.POLLIN}}
	if e.genl >= 0 {
		fds = append(fds, unix.PollFd{Fd: int32(e.genl), Events: unix.POLLIN})
	}
	n, err := unix.Poll(fds, timeoutMs)
	if errors.Is(err, unix.EINTR) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bpf: link events: poll: %w", err)
	}
	if fds[0].Revents != 0 {
		return false, os.ErrClosed
	}
	if n == 0 {
		return false, nil
	}
	for _, f := range fds[1:] {
		if f.Revents != 0 {
			e.drain(int(f.Fd))
		}
	}
	return true, nil
}

// drain reads a non-blocking socket until it is empty (at most 1024
// messages: a storm of link changes must not keep the caller here).
func (e *linkEvents) drain(fd int) {
	for range 1024 {
		_, _, err := unix.Recvfrom(fd, e.buf, 0)
		if err != nil && !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EINTR) {
			return // EAGAIN: empty
		}
	}
}

// wake makes wait return os.ErrClosed; Close after the waiter is gone.
func (e *linkEvents) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(e.stop, one[:])
}

func (e *linkEvents) Close() {
	for _, fd := range []int{e.rtnl, e.genl, e.stop} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// Netlink attributes.

type nlAttr struct {
	typ uint16
	val []byte
}

func nlAttrU32(typ uint16, v uint32) []byte {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint16(b[0:], 8)
	binary.NativeEndian.PutUint16(b[2:], typ)
	binary.NativeEndian.PutUint32(b[4:], v)
	return b
}

func nlAttrString(typ uint16, s string) []byte {
	l := 4 + len(s) + 1
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], s)
	return b
}

// nlAttrs parses a run of netlink attributes (a generic netlink payload
// after its header, or a nested attribute's value).
func nlAttrs(b []byte) []nlAttr {
	var out []nlAttr
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		if l < 4 || l > len(b) {
			break
		}
		out = append(out, nlAttr{typ: binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER), val: b[4:l]})
		l = (l + 3) &^ 3
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return out
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
