package fastpath

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxBatch is the most datagrams one sendmmsg(2) call carries.
const maxBatch = 64

// batch gathers datagrams for one sendmmsg(2) call on one socket. Its
// headers, iovecs and socket addresses are preallocated, so adding and
// flushing allocate nothing. A batch belongs to one goroutine.
type batch struct {
	fd    int
	v6    bool // the socket is AF_INET6: IPv4 peers are sent as v4-mapped
	n     int
	hdrs  [maxBatch]unix.Mmsghdr
	iovs  [maxBatch]unix.Iovec
	addr4 [maxBatch]unix.RawSockaddrInet4
	addr6 [maxBatch]unix.RawSockaddrInet6
}

func newBatch(fd int, v6 bool) *batch {
	return &batch{fd: fd, v6: v6}
}

// add queues b for dst; the caller keeps b unchanged until flush returns.
// It reports false when dst cannot be reached from this socket's family.
func (t *batch) add(b []byte, dst netip.AddrPort) bool {
	if len(b) == 0 {
		return true
	}
	if t.n == maxBatch {
		t.flush()
	}
	i := t.n
	h := &t.hdrs[i]
	*h = unix.Mmsghdr{}
	t.iovs[i].Base = &b[0]
	t.iovs[i].SetLen(len(b))
	h.Hdr.Iov = &t.iovs[i]
	h.Hdr.SetIovlen(1)
	a := dst.Addr()
	port := dst.Port()
	switch {
	case t.v6:
		sa := &t.addr6[i]
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		sa.Port = htons(port)
		h.Hdr.Name = (*byte)(unsafe.Pointer(sa))
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
	case a.Is4() || a.Is4In6():
		sa := &t.addr4[i]
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		sa.Port = htons(port)
		h.Hdr.Name = (*byte)(unsafe.Pointer(sa))
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
	default:
		return false
	}
	t.n++
	return true
}

// flush sends what is queued. Datagrams the kernel refuses (a full socket
// buffer, an unreachable peer) are counted as send errors and dropped: UDP
// SIP retransmits (RFC 3261 section 17.1.1.2).
func (t *batch) flush() {
	off := 0
	for off < t.n {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(t.fd),
			uintptr(unsafe.Pointer(&t.hdrs[off])), uintptr(t.n-off), 0, 0, 0)
		if errno != 0 {
			if errno == unix.EINTR {
				continue
			}
			// The first datagram failed; skip it and go on with the rest.
			mSendErrors.Inc()
			off++
			continue
		}
		mSendCalls.Inc()
		mSent.Add(int(r))
		off += int(r)
	}
	t.n = 0
}

func htons(p uint16) uint16 { return p<<8 | p>>8 }

// The loop's own sends are queued, not sent: each datagram is built in the
// arena (outBuf), queued in the loop's batch (queue) and sent with the rest
// of its burst (flush). Nothing queued points into a receive buffer.
const (
	// txArena holds the datagrams of one send batch (maxBatch typical
	// INVITEs, or two of the largest messages).
	txArena = 256 << 10
	// outSlack is what a stamp may add to a datagram: our Via, received
	// and rport, Max-Forwards, an Identity or P-Identity-Bypass header.
	outSlack = 4096
)

// outBuf returns an empty slice at the arena's free end with room for a
// datagram of n bytes plus outSlack, flushing first when the arena is too
// full. (A stamp that outgrows it still works: append moves it to the heap.)
func (l *loop) outBuf(n int) []byte {
	if len(l.arena)-l.used < n+outSlack {
		l.flush()
	}
	return l.arena[l.used:l.used]
}

// queue adds b (built in outBuf, or any buffer that lives until the next
// flush) to the loop's batch for dst, and flushes when the batch is full.
func (l *loop) queue(b []byte, dst netip.AddrPort) {
	if len(b) > 0 && l.used < len(l.arena) && &b[0] == &l.arena[l.used] {
		l.used += len(b)
	}
	if !l.tx.add(b, dst) {
		mUnroutable.Inc()
		return
	}
	if l.tx.n == maxBatch {
		l.flush()
	}
}

// flush sends the queued datagrams (one sendmmsg(2) call for up to
// maxBatch) and what the burst wrote to TCP connections (one write per
// connection), and frees the arena.
func (l *loop) flush() {
	if l.tx.n > 0 {
		l.tx.flush()
	}
	if len(l.corked) > 0 {
		l.flushStreams()
	}
	l.used = 0
}
