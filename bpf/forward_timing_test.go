package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/bpf/nettest"
	"github.com/shakenline/shakenline/internal/prereq"
)

// fwdFrameLens are the sizes of the generated frames on the veth (no
// FCS): 14 Ethernet + 20 IPv4 + 8 UDP + 22 payload bytes (the smallest
// Ethernet frame), and + 200 payload bytes (an RTP packet: 12-byte header,
// 20 ms of G.711), the first also TestTrafficGenForwarding's.
var fwdFrameLens = []int{64, 242}

// fwdPort is the UDP port of the generated traffic: RTP-like, not SIP, so
// the steering program forwards it.
const fwdPort = 40000

// BenchmarkForwarding measures non-INVITE UDP forwarding through the
// appliance namespace, XDP against the kernel, in the same run and
// topology (issue 5: the XDP path should forward at least twice as many
// packets per second as the kernel).
//
// Source: xdp_trafficgen (trafficgen.c) run with BPF_PROG_TEST_RUN in
// live-frame mode in the client namespace, ingress c0: each frame is
// XDP_TX'd out of c0 for real, IPv4/UDP to 198.18.2.2:40000, one
// sub-benchmark per size in fwdFrameLens.
// Sink: xdp_sink (sink.c) on s0 counts and drops them, so neither the
// sender's nor the receiver's socket stack limits the rate.
//
// Modes, each measured for fwdPhase:
//
//   - source: xdp_sink on ac0, once, first: the generator and one veth
//     hop alone, the ceiling of the other two;
//   - xdp: Attach on ac0 and as0 (bpf_fib_lookup + devmap redirect;
//     xdp_sink on s0 makes as0 a redirect target, and as ac0 is a native
//     veth the program proves each frame's UDP checksum complete before
//     redirecting it: the cost the checksum rule adds, which
//     BenchmarkChecksumCost isolates);
//   - kernel: nothing attached on the appliance links, the kernel's
//     ip_forward carries the frames (GRO is on on ac0 so that the veth
//     has NAPI, which frames sent into a veth by XDP need).
//
// xdp and kernel alternate, fwdRounds times each.
//
// All of it runs on the generating CPU: live frames are sent from the
// syscall with bottom halves disabled, and the softirqs they raise (ac0's
// NAPI, then s0's) run on the same CPU when each batch of 64 ends. So the
// delivered rate is one core's rate for generating, forwarding and
// sinking; the *-fwd-ns metrics subtract the source mode's time per packet
// to estimate the forwarding cost alone.
//
// Reported, averaged over the rounds: xdp-pps, kernel-pps, xdp/kernel
// (delivered per wall-clock second, what issue 5 asks); xdp-pps-cpu,
// kernel-pps-cpu, xdp/kernel-cpu (delivered per second of the generating
// thread's CPU time: the same ratio with the time other load took from
// that CPU removed, see fwdRate); source-pps; xdp-fwd-ns, kernel-fwd-ns
// (CPU time per forwarded packet minus the source mode's) and
// fwd-cost-ratio (kernel ns / xdp ns). Run with -benchtime=1x; it takes
// about 12 s per frame size.
func BenchmarkForwarding(b *testing.B) {
	for _, n := range fwdFrameLens {
		b.Run(fmt.Sprintf("frame=%d", n), func(b *testing.B) { benchmarkForwarding(b, n) })
	}
}

func benchmarkForwarding(b *testing.B, frameLen int) {
	const (
		fwdPhase  = 2 * time.Second
		fwdRounds = 2
	)
	r := newFwdRig(b, frameLen)
	measure := func() fwdRate {
		m, err := r.measure(fwdPhase)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}

	b.ResetTimer()
	l := r.attachSink(r.topo.Appliance, nettest.ApplianceClientIf)
	source := measure()
	l.Close()
	var xdp, kernel fwdRate
	var forwarded uint64
	for i := 0; i < fwdRounds; i++ {
		s := r.attachSteering()
		m := measure()
		c, err := s.Counters()
		if err != nil {
			b.Fatal(err)
		}
		forwarded += c[nettest.ApplianceClientIf].Forwarded()
		modes := s.Modes()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.Logf("round %d xdp:    delivered %.0f pps, %.0f per CPU-second, %d frames lost of %d (modes %v)", i, m.delivered, m.perCPU, m.lost, m.offered, modes)
		xdp = xdp.add(m, fwdRounds)

		m = measure()
		b.Logf("round %d kernel: delivered %.0f pps, %.0f per CPU-second, %d frames lost of %d", i, m.delivered, m.perCPU, m.lost, m.offered)
		kernel = kernel.add(m, fwdRounds)
	}
	b.StopTimer()

	if forwarded == 0 {
		b.Fatal("XDP forwarded nothing")
	}
	if xdp.delivered == 0 || kernel.delivered == 0 || source.delivered == 0 {
		b.Fatalf("nothing delivered: xdp %+v kernel %+v source %+v", xdp, kernel, source)
	}
	// CPU time per packet, minus generating and sinking.
	xdpNS := 1e9/xdp.perCPU - 1e9/source.perCPU
	kernNS := 1e9/kernel.perCPU - 1e9/source.perCPU
	b.ReportMetric(xdp.delivered, "xdp-pps")
	b.ReportMetric(kernel.delivered, "kernel-pps")
	b.ReportMetric(xdp.delivered/kernel.delivered, "xdp/kernel")
	b.ReportMetric(xdp.perCPU, "xdp-pps-cpu")
	b.ReportMetric(kernel.perCPU, "kernel-pps-cpu")
	b.ReportMetric(xdp.perCPU/kernel.perCPU, "xdp/kernel-cpu")
	b.ReportMetric(source.delivered, "source-pps")
	b.ReportMetric(xdpNS, "xdp-fwd-ns")
	b.ReportMetric(kernNS, "kernel-fwd-ns")
	b.ReportMetric(kernNS/xdpNS, "fwd-cost-ratio")
	b.ReportMetric(0, "ns/op")
	b.Logf("source (sink on ac0): delivered %.0f pps, %.0f per CPU-second, %d frames lost of %d", source.delivered, source.perCPU, source.lost, source.offered)
	b.Logf("XDP forwarding %.0f pps (lost %d of %d), kernel forwarding %.0f pps (lost %d of %d): ratio %.2f",
		xdp.delivered, xdp.lost, xdp.offered, kernel.delivered, kernel.lost, kernel.offered, xdp.delivered/kernel.delivered)
	b.Logf("per CPU-second: XDP %.0f, kernel %.0f: ratio %.2f", xdp.perCPU, kernel.perCPU, xdp.perCPU/kernel.perCPU)
	b.Logf("forwarding CPU time per packet: XDP %.0f ns, kernel %.0f ns, ratio %.2f", xdpNS, kernNS, kernNS/xdpNS)
}

// add returns r plus m's rates divided by n (for averaging n
// measurements) and plus m's frame counts.
func (r fwdRate) add(m fwdRate, n int) fwdRate {
	return fwdRate{delivered: r.delivered + m.delivered/float64(n), perCPU: r.perCPU + m.perCPU/float64(n),
		offered: r.offered + m.offered, lost: r.lost + m.lost}
}

// TestTrafficGenForwarding checks BenchmarkForwarding's rig: a few live
// frames from the generator reach the server's sink, forwarded by the
// kernel and by the steering program (which counts them as forwarded).
func TestTrafficGenForwarding(t *testing.T) {
	const n = 256 // four batches: fits the veth rings even if NAPI lags
	r := newFwdRig(t, fwdFrameLens[0])
	waitFor := func(mode string, base uint64) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for r.sunk()-base < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := r.sunk() - base; got != n {
			t.Fatalf("%s: the sink counted %d of %d frames", mode, got, n)
		}
	}

	base := r.sunk()
	if _, err := r.send(n); err != nil {
		t.Fatal(err)
	}
	waitFor("kernel", base)

	s := r.attachSteering()
	defer s.Close()
	base = r.sunk()
	if _, err := r.send(n); err != nil {
		t.Fatal(err)
	}
	waitFor("xdp", base)
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if got := c[nettest.ApplianceClientIf].Forwarded(); got != n {
		t.Fatalf("steering program forwarded %d frames, want %d: %+v", got, n, c)
	}
}

// fwdRig is the forwarding benchmark's topology: the traffic generator
// for the client namespace, xdp_sink on s0, GRO on ac0.
type fwdRig struct {
	tb      testing.TB
	topo    *nettest.Topology
	sink    sinkObjects
	gen     *ebpf.Program
	frame   []byte
	ifindex int // c0 in the client namespace
}

func newFwdRig(tb testing.TB, frameLen int) *fwdRig {
	tb.Helper()
	r := &fwdRig{tb: tb, topo: nettest.New(tb, nettest.Options{})}
	requireLiveFrames(tb, r.topo)
	if err := loadSinkObjects(&r.sink, nil); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.sink.Close() })
	l := r.attachSink(r.topo.Server, nettest.ServerIf)
	tb.Cleanup(func() { l.Close() })
	// The generator's frames reach ac0 by XDP_TX out of c0, which needs
	// NAPI on ac0: GRO gives it one in kernel mode (the rig's doing, not
	// the appliance's: its own XDP program gives ac0 one anyway).
	r.topo.Appliance.SetGRO(tb, nettest.ApplianceClientIf, true)
	r.loadGenerator(frameLen)
	return r
}

// loadGenerator loads xdp_trafficgen with the headers of the rig's frame
// (c0 to ac0's MAC, 198.18.1.2:40000 to 198.18.2.2:40000, TTL 64).
func (r *fwdRig) loadGenerator(frameLen int) {
	tb := r.tb
	spec, err := loadTrafficgen()
	if err != nil {
		tb.Fatal(err)
	}
	payload := make([]byte, frameLen-42)
	payload[0] = 0x80 // RTP version 2
	r.frame = frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC,
		src: netip.AddrPortFrom(nettest.ClientV4, fwdPort), dst: netip.AddrPortFrom(nettest.ServerV4, fwdPort),
		payload: payload}.bytes()
	if len(r.frame) != frameLen || binary.BigEndian.Uint16(r.frame[12:]) != unix.ETH_P_IP {
		tb.Fatalf("unexpected frame layout (%d bytes)", len(r.frame))
	}
	var tmpl [42]byte
	copy(tmpl[:], r.frame)
	if err := spec.Variables[trafficgenVarTmpl].Set(tmpl); err != nil {
		tb.Fatal(err)
	}
	var objs trafficgenObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		tb.Fatal(err)
	}
	r.gen = objs.XdpTrafficgen
	tb.Cleanup(func() { objs.Close() })
	if err := r.topo.Client.Do(func() error {
		ifc, err := net.InterfaceByName(nettest.ClientIf)
		if err != nil {
			return err
		}
		r.ifindex = ifc.Index
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
}

func (r *fwdRig) attachSink(ns *nettest.NS, dev string) link.Link {
	var l link.Link
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: r.sink.XdpSink, Interface: ifc.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		r.tb.Fatalf("sink on %s: %v", dev, err)
	}
	return l
}

func (r *fwdRig) attachSteering() *Steering {
	var s *Steering
	if err := r.topo.Appliance.Do(func() (err error) {
		s, err = Attach(Config{Ifaces: []string{nettest.ApplianceClientIf, nettest.ApplianceServerIf}, SteerPort: testSteerPort})
		return err
	}); err != nil {
		r.tb.Fatal(err)
	}
	return s
}

// sunk is the sink's count of frames so far; only for the test's
// goroutine.
func (r *fwdRig) sunk() uint64 {
	n, err := r.count()
	if err != nil {
		r.tb.Fatal(err)
	}
	return n
}

func (r *fwdRig) count() (uint64, error) {
	var per []uint64
	if err := r.sink.SinkCount.Lookup(uint32(0), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// runOpts are the live-frame run options for repeat frames.
func (r *fwdRig) runOpts(repeat uint32) *ebpf.RunOptions {
	return &ebpf.RunOptions{
		Data:    r.frame,
		Context: xdpMD{DataEnd: uint32(len(r.frame)), IngressIfindex: uint32(r.ifindex)},
		Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		Repeat:  repeat,
	}
}

// send runs the generator for n frames in the client namespace and
// returns how long the run took.
func (r *fwdRig) send(n uint32) (time.Duration, error) {
	var took time.Duration
	err := r.topo.Client.Do(func() error {
		t0 := time.Now()
		if _, err := r.gen.Run(r.runOpts(n)); err != nil {
			return liveFramesError(err)
		}
		took = time.Since(t0)
		return nil
	})
	return took, err
}

// fwdRate is one measurement.
//
// Each BPF_PROG_TEST_RUN in live-frame mode sets up and tears down a page
// pool, which costs some 30-50 ms of waiting here (not CPU): so a phase is
// one long run, sized by the CPU time of a calibration run (under other
// load it lasts longer than asked), and the wall-clock rate
// is taken from sink counts sampled while frames flow, excluding that
// setup and teardown.
type fwdRate struct {
	// delivered is frames per wall-clock second arriving at the sink.
	delivered float64
	// perCPU is frames delivered per second of CPU time of the generating
	// thread plus the ksoftirqd threads. The thread's time includes the
	// softirqs run in its context (without CONFIG_IRQ_TIME_ACCOUNTING, as
	// here; with it, softirq time would be missing and perCPU too high)
	// and excludes time other processes and the hypervisor took from its
	// CPU.
	perCPU float64
	// offered and lost count the run's frames: generated, and generated
	// but not delivered.
	offered, lost uint64
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// softirqdCPU is the CPU time of all ksoftirqd threads (user + system, at
// clock-tick resolution): softirq work deferred from the generating
// thread runs there.
func softirqdCPU() time.Duration {
	const tick = 10 * time.Millisecond // USER_HZ 100 on Linux
	dirs, _ := os.ReadDir("/proc")
	var total time.Duration
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil || !bytes.Contains(b, []byte("(ksoftirqd/")) {
			continue
		}
		// Fields after the ")" that ends comm: state is field 3, utime 14,
		// stime 15.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseUint(f[11], 10, 64)
		s, _ := strconv.ParseUint(f[12], 10, 64)
		total += time.Duration(u+s) * tick
	}
	return total
}

// measure runs the generator for about d.
func (r *fwdRig) measure(d time.Duration) (fwdRate, error) {
	var m fwdRate
	var cpu time.Duration
	var samples []fwdSample
	err := r.topo.Client.Do(func() error {
		// Calibrate on CPU time, which the fixed cost's wait is not.
		c := threadCPU()
		if _, err := r.gen.Run(r.runOpts(1 << 16)); err != nil {
			return liveFramesError(err)
		}
		per := max((threadCPU()-c)/(1<<16), time.Nanosecond)
		opts := r.runOpts(uint32(min(int64(d/per), 1<<31)))

		n0, err := r.count()
		if err != nil {
			return err
		}
		stop := make(chan struct{})
		done := make(chan []fwdSample)
		go r.sample(stop, done)
		c0, k0 := threadCPU(), softirqdCPU()
		_, err = r.gen.Run(opts)
		cpu = threadCPU() - c0
		close(stop)
		samples = <-done
		if err != nil {
			return liveFramesError(err)
		}
		time.Sleep(5 * time.Millisecond) // softirq stragglers
		n1, err := r.count()
		cpu += softirqdCPU() - k0
		m.offered, m.lost = uint64(opts.Repeat), uint64(opts.Repeat)-min(n1-n0, uint64(opts.Repeat))
		m.perCPU = float64(n1-n0) / cpu.Seconds()
		return err
	})
	if err != nil {
		return fwdRate{}, err
	}
	// Steady state: samples after the first and before the last change.
	var first, last int = -1, -1
	for i := 1; i < len(samples); i++ {
		if samples[i].n != samples[i-1].n {
			if first < 0 {
				first = i
			}
			last = i - 1
		}
	}
	if first < 0 || last <= first {
		return m, fmt.Errorf("run too short to sample (%d samples)", len(samples))
	}
	a, b := samples[first], samples[last]
	m.delivered = float64(b.n-a.n) / b.t.Sub(a.t).Seconds()
	return m, nil
}

// fwdSample is the sink's count at a time.
type fwdSample struct {
	t time.Time
	n uint64
}

// sample reads the sink's count every 10 ms until stop, then sends the
// samples on done.
func (r *fwdRig) sample(stop <-chan struct{}, done chan<- []fwdSample) {
	var out []fwdSample
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if n, err := r.count(); err == nil {
			out = append(out, fwdSample{time.Now(), n})
		}
		select {
		case <-stop:
			done <- out
			return
		case <-tick.C:
		}
	}
}

// liveFramesError explains a failed live-frame run.
func liveFramesError(err error) error {
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (Linux >= 5.18): %w", err)
	}
	return fmt.Errorf("live-frame run: %w", err)
}

// BenchmarkChecksumCost measures what the checksum rule (doc.go, "Redirect
// only where it works") costs the program per forwarded frame: the
// forwarding rig's live frames through xdp_steer on ac0, a native veth,
// with IF_CSUM_VERIFY off (as for a NIC) and on (as Attach sets it for a
// veth), alternating, 2^20 frames each, five times. The time is the
// kernel's own run-time statistics for the program (BPF_ENABLE_STATS,
// enabled through a file descriptor for this benchmark only; it adds the
// same clock reads to both). Reported per frame size: off-ns, on-ns (best
// of five) and cost-ns (on minus off). Run with -benchtime=1x.
func BenchmarkChecksumCost(b *testing.B) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		prereq.Need(b, prereq.Permission("BPF_ENABLE_STATS", err, prereq.CapSysAdmin))
		b.Fatal(err)
	}
	defer stats.Close()
	for _, n := range append(fwdFrameLens, 1514) {
		b.Run(fmt.Sprintf("frame=%d", n), func(b *testing.B) {
			r := newFwdRig(b, n)
			s := r.attachSteering()
			defer s.Close()
			var a *attached
			for i := range s.ifaces {
				if s.ifaces[i].name == nettest.ApplianceClientIf {
					a = &s.ifaces[i]
				}
			}
			best := [2]float64{math.Inf(1), math.Inf(1)}
			for range 5 {
				for i, verify := range []bool{false, true} {
					a.mode = "generic" // setIfaceFlags verifies native veths only
					if verify {
						a.mode = "native"
					}
					if _, err := s.setIfaceFlags(a); err != nil {
						b.Fatal(err)
					}
					s0, err := s.objs.XdpSteer.Stats()
					if err != nil {
						b.Fatal(err)
					}
					if _, err := r.send(1 << 20); err != nil {
						b.Fatal(err)
					}
					s1, err := s.objs.XdpSteer.Stats()
					if err != nil {
						b.Fatal(err)
					}
					best[i] = min(best[i], float64(s1.Runtime-s0.Runtime)/float64(s1.RunCount-s0.RunCount))
				}
			}
			// The frames must have taken the redirect path, summed or not.
			if c, _ := s.Counters(); c[nettest.ApplianceClientIf].Forwarded() < 9<<20 || c[nettest.ApplianceClientIf].RedirectUnsafe() != 0 {
				b.Fatalf("of 10*2^20 frames XDP forwarded %d, handed %d to the kernel as unsafe", c[nettest.ApplianceClientIf].Forwarded(), c[nettest.ApplianceClientIf].RedirectUnsafe())
			}
			b.ReportMetric(best[0], "off-ns")
			b.ReportMetric(best[1], "on-ns")
			b.ReportMetric(best[1]-best[0], "cost-ns")
			b.ReportMetric(0, "ns/op")
		})
	}
}
