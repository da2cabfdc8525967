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
	// stampedRecv is the sink reader's receive batch, made (with kernel
	// timestamps on) when the socket is opened so that a failure to enable
	// them fails NewSink.
	stampedRecv *recvBatch
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
	ctl   []byte // per-message control data (transmit timestamp request), if any
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

// recvBatch is a recvmmsg(2) batch owned by one goroutine. A batch made
// with stamps reads the kernel's software receive timestamp of every
// datagram (SO_TIMESTAMPNS) from its control message; see stamp.
type recvBatch struct {
	c      *mmsgConn
	hdrs   []unix.Mmsghdr
	iovs   []unix.Iovec
	bufs   [][]byte
	oob    []byte // stampSpace bytes per message when stamps is set
	stamps bool
	n      int
	err    error
	fn     func(fd uintptr) bool
}

// stampSpace is the control buffer of one message: one SCM_TIMESTAMPNS
// cmsg (a 16-byte struct timespec), with room to spare.
var stampSpace = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))) + 16

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

// enableStamps turns on SO_TIMESTAMPNS on the socket (when there is one)
// and gives every message a control buffer for the timestamp. The kernel
// stamps each datagram with CLOCK_REALTIME when it enters the receive
// path (for loopback: when the sending process hands it to the device), so
// the stamp does not depend on when this process gets to read it.
func (b *recvBatch) enableStamps() error {
	if b.c != nil {
		var serr error
		if err := b.c.rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}); err != nil {
			return fmt.Errorf("loadgen: SO_TIMESTAMPNS: %w", err)
		}
		if serr != nil {
			return fmt.Errorf("loadgen: SO_TIMESTAMPNS: %w", serr)
		}
	}
	b.oob = make([]byte, stampSpace*len(b.hdrs))
	for i := range b.hdrs {
		b.hdrs[i].Hdr.Control = &b.oob[i*stampSpace]
	}
	b.stamps = true
	b.resetControl()
	return nil
}

// resetControl restores every message's control length before recvmmsg
// (the kernel overwrites it with what it wrote).
func (b *recvBatch) resetControl() {
	for i := range b.hdrs {
		b.hdrs[i].Hdr.SetControllen(stampSpace)
	}
}

// stamp returns the kernel receive timestamp of message i of the last recv
// (nanoseconds since the Unix epoch, CLOCK_REALTIME), or false when the
// message carries none (or one not after the epoch). It does not allocate.
func (b *recvBatch) stamp(i int) (int64, bool) {
	if !b.stamps {
		return 0, false
	}
	return parseStamp(b.oob[i*stampSpace : i*stampSpace+int(b.hdrs[i].Hdr.Controllen)])
}

// parseStamp finds an SCM_TIMESTAMPNS control message in oob.
func parseStamp(oob []byte) (int64, bool) {
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= hdr+int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[hdr]))
			if at := ts.Sec*1e9 + ts.Nsec; at > 0 {
				return at, true
			}
			return 0, false
		}
		adv := unix.CmsgSpace(l - hdr)
		if adv > len(oob) {
			return 0, false
		}
		oob = oob[adv:]
	}
	return 0, false
}

func (b *recvBatch) read(fd uintptr) bool {
	if b.stamps {
		b.resetControl()
	}
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

// txStampFlags are the socket's SO_TIMESTAMPING flags on generator sockets:
// report software timestamps, number stamped datagrams (OPT_ID) and return
// only the stamp, not the datagram, on the error queue (OPT_TSONLY). Which
// datagrams are stamped is chosen per message by a control message
// (txStampCmsg), so ACKs and BYEs on the same socket are not stamped and
// do not consume IDs.
const txStampFlags = unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY

// txCmsgSpace is one SO_TIMESTAMPING control message with a 4-byte flag word.
var txCmsgSpace = unix.CmsgSpace(4)

// txErrOOB is the control buffer of one error-queue message: an
// SCM_TIMESTAMPING (three timespecs) and an IP(V6)_RECVERR (sock_extended_err
// and the offender address), with room to spare.
const txErrOOB = 256

// txStamper reads the kernel's software transmit timestamps of the
// datagrams a sendBatch sent. On loopback the stamp is taken when the
// datagram is handed to the device, inside sendmmsg, one per datagram: it
// does not charge a datagram for the ones sent before it in the batch, nor
// for a preemption of the sender before its turn.
type txStamper struct {
	c    *mmsgConn
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	oob  []byte
	pad  [1]byte
	n    int
	fn   func(fd uintptr)
	// ids[i] and at[i] are the OPT_ID and the stamp (CLOCK_REALTIME ns) of
	// the i-th stamp read by the last read.
	ids []uint32
	at  []int64
}

// enableTxStamps turns on SO_TIMESTAMPING on b's socket, asks for a
// transmit timestamp on every message of b, and returns the reader of
// those stamps.
func enableTxStamps(b *sendBatch) (*txStamper, error) {
	var serr error
	if err := b.c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING, txStampFlags)
	}); err != nil {
		return nil, fmt.Errorf("loadgen: SO_TIMESTAMPING: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("loadgen: SO_TIMESTAMPING: %w", serr)
	}
	size := len(b.hdrs)
	b.ctl = make([]byte, txCmsgSpace*size)
	for i := range b.hdrs {
		c := b.ctl[i*txCmsgSpace:]
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		h.Level, h.Type = unix.SOL_SOCKET, unix.SO_TIMESTAMPING
		h.SetLen(unix.CmsgLen(4))
		*(*uint32)(unsafe.Pointer(&c[unix.SizeofCmsghdr])) = unix.SOF_TIMESTAMPING_TX_SOFTWARE
		b.hdrs[i].Hdr.Control = &c[0]
		b.hdrs[i].Hdr.SetControllen(txCmsgSpace)
	}
	t := &txStamper{
		c:    b.c,
		hdrs: make([]unix.Mmsghdr, size),
		iovs: make([]unix.Iovec, size),
		oob:  make([]byte, txErrOOB*size),
		ids:  make([]uint32, size),
		at:   make([]int64, size),
	}
	for i := range t.hdrs {
		t.iovs[i].Base = &t.pad[0]
		t.iovs[i].SetLen(len(t.pad))
		t.hdrs[i].Hdr.Iov = &t.iovs[i]
		t.hdrs[i].Hdr.SetIovlen(1)
		t.hdrs[i].Hdr.Control = &t.oob[i*txErrOOB]
	}
	t.fn = t.readFD
	return t, nil
}

func (t *txStamper) readFD(fd uintptr) {
	for i := range t.hdrs {
		t.hdrs[i].Hdr.SetControllen(txErrOOB)
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&t.hdrs[0])), uintptr(len(t.hdrs)),
			unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return
		}
		t.n = int(r)
		return
	}
}

// read drains up to one batch of stamps from the error queue without
// waiting and returns how many it parsed into ids and at.
func (t *txStamper) read() int {
	t.n = 0
	if t.c.rc.Control(t.fn) != nil {
		return 0
	}
	got := 0
	for i := 0; i < t.n; i++ {
		id, at, ok := parseTxStamp(t.oob[i*txErrOOB : i*txErrOOB+int(t.hdrs[i].Hdr.Controllen)])
		if ok {
			t.ids[got], t.at[got] = id, at
			got++
		}
	}
	return got
}

// parseTxStamp reads one error-queue message's control data: the software
// stamp of SCM_TIMESTAMPING and the OPT_ID of the IP(V6)_RECVERR
// sock_extended_err whose origin is SO_EE_ORIGIN_TIMESTAMPING.
func parseTxStamp(oob []byte) (id uint32, at int64, ok bool) {
	const hdr = unix.SizeofCmsghdr
	var haveID, haveTS bool
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			break
		}
		data := oob[hdr:l]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPING && len(data) >= int(unsafe.Sizeof(unix.ScmTimestamping{})):
			ts := (*unix.ScmTimestamping)(unsafe.Pointer(&data[0]))
			if v := ts.Ts[0].Sec*1e9 + ts.Ts[0].Nsec; v > 0 {
				at, haveTS = v, true
			}
		case (h.Level == unix.SOL_IP && h.Type == unix.IP_RECVERR || h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_RECVERR) &&
			len(data) >= int(unsafe.Sizeof(unix.SockExtendedErr{})):
			ee := (*unix.SockExtendedErr)(unsafe.Pointer(&data[0]))
			if ee.Origin == unix.SO_EE_ORIGIN_TIMESTAMPING {
				id, haveID = ee.Data, true
			}
		}
		adv := unix.CmsgSpace(l - hdr)
		if adv > len(oob) {
			break
		}
		oob = oob[adv:]
	}
	return id, at, haveID && haveTS
}
