package fastpath

import (
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/sip"
)

// Receive batching. gnet reads one datagram per readiness event (one
// epoll_wait and one recvfrom each). When it hands us one, more are often
// queued behind it (generators, SBCs and the next hop all send in bursts),
// so OnTraffic drains the same socket with recvmmsg(2) before returning to
// gnet, and the loop's own sends of the whole burst leave in shared
// sendmmsg(2) calls (see loop.queue and loop.flush).
const (
	// rxBatch is the most datagrams one recvmmsg(2) call reads.
	rxBatch = 32
	// rxRounds bounds the recvmmsg calls per readiness event, so that a
	// busy socket cannot keep the loop from gnet's own work (its task
	// queue: Stop) for longer than rxRounds*rxBatch datagrams; epoll
	// reports the socket again at once if more wait.
	rxRounds = 64
	// rxLinger is how long a loop that has drained its socket waits in
	// poll(2) for the next datagram before it goes back to gnet. gnet's
	// idle path (epoll_wait with timeout 0, runtime.Gosched, epoll_wait
	// again) makes the Go scheduler wake a spare thread whenever another
	// P is idle (serve runs one P per loop on top of one per core): two
	// thread switches per idle period, which at tens of thousands of
	// datagrams a second cost more than the datagrams themselves. Waiting
	// here instead costs one blocking syscall, and nothing while traffic
	// keeps coming.
	rxLinger = time.Millisecond
	// rxSlot is one receive buffer: the largest message accepted plus one
	// byte, so that an oversized datagram still shows as too large to the
	// parser (as gnet's read buffer does).
	rxSlot = sip.MaxMessage + 1
)

// rx is a loop's recvmmsg(2) state: headers, iovecs, source addresses and
// buffers, allocated once when the loop starts (about 2 MiB).
type rx struct {
	fd    int
	hdrs  [rxBatch]unix.Mmsghdr
	iovs  [rxBatch]unix.Iovec
	names [rxBatch]unix.RawSockaddrInet6 // large enough for AF_INET too
	buf   []byte                         // rxBatch slots of rxSlot bytes
	pfd   unix.PollFd
	ts    unix.Timespec
}

func newRx(fd int) *rx {
	r := &rx{fd: fd, buf: make([]byte, rxBatch*rxSlot)}
	r.pfd = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	r.ts = unix.NsecToTimespec(int64(rxLinger))
	for i := range r.hdrs {
		r.iovs[i].Base = &r.buf[i*rxSlot]
		r.iovs[i].SetLen(rxSlot)
	}
	return r
}

// read reads up to rxBatch queued datagrams without blocking and returns
// how many (0 when none is waiting, or on an error other than EINTR: the
// datagram that caused it stays with gnet's next read).
func (r *rx) read() int {
	for i := range r.hdrs {
		h := &r.hdrs[i]
		h.Hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&r.names[i])), Namelen: unix.SizeofSockaddrInet6,
			Iov: &r.iovs[i]}
		h.Hdr.SetIovlen(1)
		h.Len = 0
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&r.hdrs[0])),
			rxBatch, unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		mRecvCalls.Inc()
		if errno != 0 {
			return 0
		}
		mRecvDatagrams.Add(int(n))
		return int(n)
	}
}

// datagram returns the i-th datagram of the last read and its source,
// IPv4-mapped sources unmapped (as OnTraffic does with gnet's). ok is false
// for a source of another family (never on a UDP socket).
func (r *rx) datagram(i int) (pkt []byte, src netip.AddrPort, ok bool) {
	n := int(r.hdrs[i].Len)
	pkt = r.buf[i*rxSlot : i*rxSlot+n]
	sa := &r.names[i]
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		return pkt, netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), uint16(p[0])<<8|uint16(p[1])), true
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return pkt, netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1])), true
	}
	return pkt, netip.AddrPort{}, false
}

// wait blocks until a datagram is queued on the socket or rxLinger has
// passed, and reports whether one is.
func (r *rx) wait() bool {
	r.pfd.Revents = 0
	ts := r.ts // ppoll may write the time left back
	n, _, errno := unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&r.pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	mRecvWaits.Inc()
	return errno == 0 && n == 1 && r.pfd.Revents&unix.POLLIN != 0
}

// drainSocket routes first (gnet's datagram, valid only during this call; nil
// for none), then drains the socket with recvmmsg(2), sending what each
// round produced in shared sendmmsg(2) calls (sooner when the loop's send
// batch or arena fills). With the socket drained, the loop does one step of
// its signer's idle work (refilling its nonce pool) and reads again; with
// none left, it waits on the socket for rxLinger before it goes back to
// gnet. At most rxRounds rounds, and none once the server is stopping
// (gnet's Stop reaches the loop through its own queue).
//
// Nor does a loop that has recently handed calls to other goroutines (an
// HSM's sessions, the verifiers, the sender): those work while the loop
// idles, and they need Ps the waiting loop would hold, whereas gnet's idle
// path (runtime.Gosched) lets them run at once. Waiting pays where the
// loop does all the work itself: signing on the loop with a software key.
func (l *loop) drainSocket(first []byte, src netip.AddrPort) {
	l.bursts++
	if len(first) > 0 {
		l.routeDatagram(first, src)
		l.flush()
	}
	for range rxRounds {
		n := l.rx.read()
		for i := range n {
			if pkt, src, ok := l.rx.datagram(i); ok && len(pkt) > 0 {
				l.routeDatagram(pkt, src)
			}
		}
		// Nothing queued points into the receive buffers (queue copies
		// into the arena), but sending per round bounds the latency a
		// long burst adds to its first datagrams, and nothing may wait
		// unsent while the loop waits for more.
		l.flush()
		if n == rxBatch {
			continue
		}
		// Drained. Rather than sleep, refill the software key's nonce
		// pool a step at a time and look at the socket between steps: a
		// datagram that arrives meanwhile waits at most one step (about
		// 12 µs), and neither it nor its sender pays a wakeup. Otherwise
		// the background worker would do that refill once the loop
		// slept, and the next datagram would cost a wakeup and two
		// thread switches. Measured at 12k-20k calls/s on one core: 3-4
		// times fewer context switches and 6-15 % less CPU per call.
		if c := l.s.cfg.Credential.Load(); c != l.idleCred {
			l.followCredential(c)
		}
		if l.idle != nil && !l.s.stopped.Load() && l.idle.Step() {
			mIdleSteps.Inc()
			continue
		}
		// A loop with TCP connections never lingers: its connections'
		// events wait in gnet's epoll meanwhile.
		if l.bursts-l.handedOff < lingerQuiet || l.nconns > 0 || l.s.stopped.Load() || !l.rx.wait() {
			return
		}
	}
}

// lingerQuiet is how many bursts without a hand-off to another goroutine
// a loop waits for before it lingers again (see drainSocket).
const lingerQuiet = 1024
