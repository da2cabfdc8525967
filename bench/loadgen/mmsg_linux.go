package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockBufBytes is the SO_RCVBUF/SO_SNDBUF size forced on every socket (root
// may exceed net.core.rmem_max with the *FORCE options; others fall back).
const sockBufBytes = 8 << 20

// sockaddrStore is big enough for sockaddr_in and sockaddr_in6.
type sockaddrStore = unix.RawSockaddrInet6

// setSockaddr writes ap into sa as a sockaddr_in or sockaddr_in6 and returns
// its length. It does not allocate.
func setSockaddr(sa *sockaddrStore, ap netip.AddrPort) uint32 {
	addr := ap.Addr()
	port := ap.Port()
	if addr.Is4() || addr.Is4In6() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr.Unmap().As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: addr.As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet6
}

// mmsgConn wraps one UDP socket for batched I/O through the Go netpoller.
type mmsgConn struct {
	conn *net.UDPConn
	rc   syscall.RawConn
}

func newMmsgConn(conn *net.UDPConn) (*mmsgConn, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("loadgen: raw conn: %w", err)
	}
	c := &mmsgConn{conn: conn, rc: rc}
	// Large buffers: a benchmark must not lose packets in its own sockets.
	// Errors are ignored on purpose: without root the plain options apply.
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBufBytes) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, sockBufBytes)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBufBytes) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sockBufBytes)
		}
	})
	return c, nil
}

// sendBatch is a sendmmsg(2) batch owned by one goroutine. Callers fill
// bufs/lengths and destinations, then call send.
type sendBatch struct {
	c     *mmsgConn
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []sockaddrStore
	bufs  [][]byte
	// state for the prebuilt closure (a method value made once, so the
	// per-batch call allocates nothing)
	off, n int
	err    error
	fn     func(fd uintptr) bool
}

func newSendBatch(c *mmsgConn, size, bufSize int) *sendBatch {
	b := &sendBatch{
		c:     c,
		hdrs:  make([]unix.Mmsghdr, size),
		iovs:  make([]unix.Iovec, size),
		names: make([]sockaddrStore, size),
		bufs:  make([][]byte, size),
	}
	for i := range b.hdrs {
		b.bufs[i] = make([]byte, bufSize)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(0)
		h := &b.hdrs[i].Hdr
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	b.fn = b.write
	return b
}

// setDest sets the destination of message i.
func (b *sendBatch) setDest(i int, ap netip.AddrPort) {
	b.hdrs[i].Hdr.Namelen = setSockaddr(&b.names[i], ap)
}

// copyDest copies the destination of message j into message i.
func (b *sendBatch) copyDest(i, j int) {
	b.names[i] = b.names[j]
	b.hdrs[i].Hdr.Namelen = b.hdrs[j].Hdr.Namelen
}

// setLen sets the payload length of message i (the bytes are bufs[i][:n]).
func (b *sendBatch) setLen(i, n int) { b.iovs[i].SetLen(n) }

func (b *sendBatch) write(fd uintptr) bool {
	for b.off < b.n {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&b.hdrs[b.off])), uintptr(b.n-b.off), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EAGAIN:
			return false
		case e == unix.EINTR:
			continue
		case e != 0:
			// A refused or unreachable destination (ICMP from a closed
			// port) fails one message: skip it and go on with the batch.
			if e == unix.ECONNREFUSED || e == unix.EHOSTUNREACH || e == unix.ENETUNREACH {
				b.off++
				continue
			}
			b.err = e
			return true
		}
		b.off += int(r)
	}
	return true
}

// send transmits messages [0,n). It blocks (in the netpoller) while the
// socket buffer is full and returns after all were handed to the kernel.
func (b *sendBatch) send(n int) error {
	if n == 0 {
		return nil
	}
	b.off, b.n, b.err = 0, n, nil
	if err := b.c.rc.Write(b.fn); err != nil {
		return fmt.Errorf("loadgen: sendmmsg: %w", err)
	}
	if b.err != nil {
		return fmt.Errorf("loadgen: sendmmsg: %w", b.err)
	}
	return nil
}

// recvBatch is a recvmmsg(2) batch owned by one goroutine.
type recvBatch struct {
	c    *mmsgConn
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	bufs [][]byte
	n    int
	err  error
	fn   func(fd uintptr) bool
}

func newRecvBatch(c *mmsgConn, size, bufSize int) *recvBatch {
	b := &recvBatch{
		c:    c,
		hdrs: make([]unix.Mmsghdr, size),
		iovs: make([]unix.Iovec, size),
		bufs: make([][]byte, size),
	}
	for i := range b.hdrs {
		b.bufs[i] = make([]byte, bufSize)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(bufSize)
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
	}
	b.fn = b.read
	return b
}

func (b *recvBatch) read(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.n = int(r)
			return true
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			continue
		case unix.ECONNREFUSED:
			// ICMP port unreachable for an earlier send: not an error of
			// this socket's reception; try again.
			continue
		default:
			b.err = e
			return true
		}
	}
}

// recv waits for at least one datagram and returns how many arrived; message
// i is bufs[i][:hdrs[i].Len]. After the conn is closed it returns
// ErrClosed.
func (b *recvBatch) recv() (int, error) {
	b.n, b.err = 0, nil
	if err := b.c.rc.Read(b.fn); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return 0, ErrClosed
		}
		return 0, fmt.Errorf("loadgen: recvmmsg: %w", err)
	}
	if b.err != nil {
		return 0, fmt.Errorf("loadgen: recvmmsg: %w", b.err)
	}
	return b.n, nil
}

// msg returns received message i of the last recv.
func (b *recvBatch) msg(i int) []byte { return b.bufs[i][:b.hdrs[i].Len] }
