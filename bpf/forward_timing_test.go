package bpf

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/bpf/nettest"
)

// BenchmarkForwarding measures non-INVITE UDP forwarding through the
// appliance namespace: first the kernel's own forwarding (no XDP on the
// appliance), then the XDP program, in the same run and topology. The
// client blasts prebuilt frames with AF_PACKET sendmmsg; the server's veth
// counts and drops them in XDP so the receiver's stack does not limit the
// rate. Each phase lasts one second. Reported: kernel-pps, xdp-pps and
// their ratio. Run with -benchtime=1x.
func BenchmarkForwarding(b *testing.B) {
	const phase = time.Second
	topo := nettest.New(b, nettest.Options{})

	var sink sinkObjects
	if err := loadSinkObjects(&sink, nil); err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	err := topo.Server.Do(func() error {
		ifc, err := net.InterfaceByName(nettest.ServerIf)
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: sink.XdpSink, Interface: ifc.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return err
		}
		b.Cleanup(func() { l.Close() })
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	sunk := func() uint64 {
		var per []uint64
		if err := sink.SinkCount.Lookup(uint32(0), &per); err != nil {
			b.Fatal(err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		return n
	}

	frame := frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC,
		src: cliV4, dst: srvV4, payload: make([]byte, 64)}.bytes()
	frame[len(frame)-64] = 0x80 // looks like RTP: not SIP at all
	fd := packetSocket(b, topo.Client)

	measure := func() (fwd, offered float64) {
		var stop atomic.Bool
		var sent atomic.Uint64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent.Store(blast(fd, frame, &stop))
		}()
		time.Sleep(100 * time.Millisecond) // warm up
		n0, t0 := sunk(), time.Now()
		time.Sleep(phase)
		n1, t1 := sunk(), time.Now()
		stop.Store(true)
		wg.Wait()
		el := t1.Sub(t0).Seconds()
		return float64(n1-n0) / el, float64(sent.Load()) / (el + 0.1)
	}

	b.ResetTimer()
	kernel, kOffered := measure()

	var s *Steering
	if err := topo.Appliance.Do(func() (err error) {
		s, err = Attach(Config{Ifaces: []string{nettest.ApplianceClientIf, nettest.ApplianceServerIf}, SteerPort: testSteerPort})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	xdp, xOffered := measure()
	b.StopTimer()

	c, err := s.Counters()
	if err != nil {
		b.Fatal(err)
	}
	if c[nettest.ApplianceClientIf].Forwarded() == 0 {
		b.Fatal("XDP forwarded nothing")
	}
	b.ReportMetric(kernel, "kernel-pps")
	b.ReportMetric(xdp, "xdp-pps")
	b.ReportMetric(xdp/kernel, "xdp/kernel")
	b.ReportMetric(0, "ns/op")
	b.Logf("kernel forwarding %.0f pps (offered %.0f), XDP forwarding %.0f pps (offered %.0f), ratio %.2f (modes %v)",
		kernel, kOffered, xdp, xOffered, xdp/kernel, s.Modes())
}

// packetSocket opens an AF_PACKET socket on the client's veth.
func packetSocket(b *testing.B, ns *nettest.NS) int {
	var fd int
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(nettest.ClientIf)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index, Protocol: 0})
	})
	if err != nil {
		b.Fatal(fmt.Errorf("packet socket: %w", err))
	}
	b.Cleanup(func() { unix.Close(fd) })
	return fd
}

// blast sends frame in batches of 64 with sendmmsg until stop; it returns
// the number of frames the kernel accepted.
func blast(fd int, frame []byte, stop *atomic.Bool) uint64 {
	const batch = 64
	iov := unix.Iovec{Base: &frame[0]}
	iov.SetLen(len(frame))
	var msgs [batch]unix.Mmsghdr
	for i := range msgs {
		msgs[i].Hdr.Iov = &iov
		msgs[i].Hdr.SetIovlen(1)
	}
	var total uint64
	for !stop.Load() {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), batch, 0, 0, 0)
		if errno != 0 {
			if errno == unix.ENOBUFS || errno == unix.EAGAIN {
				continue
			}
			return total
		}
		total += uint64(n)
	}
	return total
}
