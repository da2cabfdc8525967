package bpf

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultMaxSockets bounds the Reinjector's socket cache.
const DefaultMaxSockets = 1024

type srcKey struct {
	addr [16]byte
	port uint16
	v6   bool
}

// Reinjector sends stamped INVITEs from their original source address and
// port to their original destination, as if the appliance were a wire.
//
// It keeps one UDP socket per original source (IP_TRANSPARENT and
// IP_FREEBIND, bound to the non-local source; needs CAP_NET_ADMIN), so the
// kernel routes the datagram and fragments it when it exceeds the path
// MTU. Sockets are created in the network namespace of the thread that
// first sends from a given source. The cache holds at most MaxSockets
// sockets; the oldest is closed when it is full. Safe for concurrent use.
type Reinjector struct {
	mu     sync.RWMutex
	socks  map[srcKey]int
	order  []srcKey // FIFO for eviction
	max    int
	closed bool
}

// NewReinjector returns a Reinjector caching up to maxSockets sockets
// (DefaultMaxSockets when <= 0).
func NewReinjector(maxSockets int) *Reinjector {
	if maxSockets <= 0 {
		maxSockets = DefaultMaxSockets
	}
	return &Reinjector{socks: make(map[srcKey]int), max: maxSockets}
}

// Send sends payload from f.Src to f.Dst. It does not block: a full socket
// buffer yields ErrWouldBlock. After the first datagram from a source it
// allocates nothing.
func (r *Reinjector) Send(f Flow, payload []byte) error {
	src, dst := f.Src.Addr().Unmap(), f.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return ErrFamily
	}
	k := srcKey{addr: src.As16(), port: f.Src.Port(), v6: !src.Is4()}

	r.mu.RLock()
	fd, ok := r.socks[k]
	if !ok {
		r.mu.RUnlock()
		if err := r.open(k); err != nil {
			return err
		}
		r.mu.RLock()
		fd, ok = r.socks[k]
		if !ok { // evicted or closed meanwhile
			r.mu.RUnlock()
			return ErrClosed
		}
	}
	defer r.mu.RUnlock() // keeps fd open during the send

	var p unsafe.Pointer
	if len(payload) > 0 {
		p = unsafe.Pointer(&payload[0])
	}
	var errno unix.Errno
	if k.v6 {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dst.As16()}
		sa.Port = htons(f.Dst.Port())
		_, _, errno = unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(p), uintptr(len(payload)),
			0, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	} else {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.As4()}
		sa.Port = htons(f.Dst.Port())
		_, _, errno = unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(p), uintptr(len(payload)),
			0, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	}
	switch errno {
	case 0:
		return nil
	case unix.EAGAIN:
		return ErrWouldBlock
	default:
		return fmt.Errorf("bpf: reinject to %v: %w", f.Dst, errno)
	}
}

func (r *Reinjector) open(k srcKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if _, ok := r.socks[k]; ok {
		return nil
	}
	fd, err := transparentSocket(k)
	if err != nil {
		return err
	}
	if len(r.order) >= r.max {
		old := r.order[0]
		r.order = r.order[1:]
		unix.Close(r.socks[old])
		delete(r.socks, old)
	}
	r.socks[k] = fd
	r.order = append(r.order, k)
	return nil
}

func transparentSocket(k srcKey) (int, error) {
	af, lvl, transparent, freebind := unix.AF_INET, unix.SOL_IP, unix.IP_TRANSPARENT, unix.IP_FREEBIND
	if k.v6 {
		af, lvl, transparent, freebind = unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, unix.IPV6_FREEBIND
	}
	fd, err := unix.Socket(af, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("bpf: reinject socket: %w", err)
	}
	opts := []struct{ lvl, opt int }{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR},
		{lvl, transparent},
		{lvl, freebind},
	}
	if k.v6 {
		opts = append(opts, struct{ lvl, opt int }{unix.SOL_IPV6, unix.IPV6_V6ONLY})
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.lvl, o.opt, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("bpf: reinject setsockopt %d/%d: %w", o.lvl, o.opt, err)
		}
	}
	var sa unix.Sockaddr
	if k.v6 {
		sa = &unix.SockaddrInet6{Port: int(k.port), Addr: k.addr}
	} else {
		sa = &unix.SockaddrInet4{Port: int(k.port), Addr: [4]byte(k.addr[12:16])}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bpf: reinject bind: %w", err)
	}
	return fd, nil
}

// Close closes every cached socket. Send fails with ErrClosed afterwards.
func (r *Reinjector) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for _, fd := range r.socks {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, fmt.Errorf("bpf: reinject close: %w", err))
		}
	}
	r.socks = nil
	r.order = nil
	return errors.Join(errs...)
}
