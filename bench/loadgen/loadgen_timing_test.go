package loadgen

import (
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// testInvite returns a patched INVITE as the sink would receive it.
func testInvite(seq uint64, run uint32) []byte {
	tm := buildInvite(netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("127.0.0.1:5060"), run)
	msg := append([]byte{}, tm.b...)
	var dc dateCache
	tm.patch(msg, &callFields{seq: seq, ts: uint64(wallNS()), from: []byte("12125550100"), to: []byte("13055550199"), date: dc.get(time.Now())})
	return msg
}

// fillRecv puts msg into every slot of a receive batch as if recvmmsg had.
func fillRecv(rb *recvBatch, msg []byte) int {
	for i := range rb.bufs {
		rb.hdrs[i].Len = uint32(copy(rb.bufs[i], msg))
	}
	return len(rb.bufs)
}

func newTestSinkReader(provisional bool) *sinkReader {
	s := &Sink{cfg: SinkConfig{Batch: 32, Provisional: provisional}, addr: netip.MustParseAddrPort("127.0.0.1:5070")}
	return &sinkReader{
		s:       s,
		rb:      newRecvBatch(nil, 32, maxMessage),
		sb:      newSendBatch(nil, 96, maxMessage+1024),
		contact: []byte("Contact: <sip:sink@127.0.0.1:5070>\r\n"),
	}
}

// stampAll gives every message of rb (made with enableStamps) a kernel
// receive timestamp at, as recvmmsg would with SO_TIMESTAMPNS on.
func stampAll(rb *recvBatch, at int64) {
	for i := range rb.hdrs {
		b := rb.oob[i*stampSpace:]
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
		h.SetLen(unix.CmsgLen(16))
		*(*unix.Timespec)(unsafe.Pointer(&b[unix.SizeofCmsghdr])) = unix.NsecToTimespec(at)
		rb.hdrs[i].Hdr.SetControllen(unix.CmsgSpace(16))
	}
}

func TestSinkProcessAllocs(t *testing.T) {
	r := newTestSinkReader(true)
	if err := r.rb.enableStamps(); err != nil {
		t.Fatal(err)
	}
	led := newLedger(7, 0, 1<<20)
	r.s.led.Store(led)
	n := fillRecv(r.rb, testInvite(5, 7))
	stampAll(r.rb, wallNS())
	allocs := testing.AllocsPerRun(100, func() {
		if out := r.process(n, wallNS()); out != 3*n {
			t.Fatalf("queued %d answers, want %d", out, 3*n)
		}
	})
	if allocs != 0 {
		t.Fatalf("sink process allocates %v per batch", allocs)
	}
	if led.received.Load() != 1 || led.duplicates.Load() == 0 || led.kernelStamped.Load() != 1 {
		t.Fatalf("received %d duplicates %d kernel-stamped %d", led.received.Load(), led.duplicates.Load(), led.kernelStamped.Load())
	}
}

// answer200 makes the 200 OK the sink sends for msg.
func answer200(t testing.TB, msg []byte) []byte {
	r := newTestSinkReader(false)
	n := fillRecv(r.rb, msg)
	if out := r.process(n, wallNS()); out == 0 {
		t.Fatal("no answer")
	}
	return append([]byte{}, r.sb.bufs[0][:r.sb.iovs[0].Len]...)
}

func newTestGenerator(t testing.TB) (*Generator, *Sink) {
	sink, err := NewSink(SinkConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGenerator(Config{Target: sink.Addr(), Sink: sink, Sockets: 1, FullCall: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(); _ = sink.Close() })
	return g, sink
}

// minAllocs is the least of tries AllocsPerRun measurements.
func minAllocs(tries, runs int, f func()) float64 {
	best := testing.AllocsPerRun(runs, f)
	for i := 1; i < tries && best > 0; i++ {
		best = min(best, testing.AllocsPerRun(runs, f))
	}
	return best
}

func TestGeneratorResponsesAllocs(t *testing.T) {
	g, _ := newTestGenerator(t)
	led := newLedger(g.run, 0, 1<<10)
	g.cur.Store(led)
	s := g.socks[0]
	ok := answer200(t, testInvite(3, g.run))
	n := fillRecv(s.rb, ok)
	// AllocsPerRun counts the whole process, and the generator and sink have
	// goroutines of their own: an allocation of handleResponses shows in
	// every measurement, a stray one of theirs in one at most, so the least
	// of three is what handleResponses costs.
	allocs := minAllocs(3, 100, func() {
		if out := g.handleResponses(s, n); out != 2*n {
			t.Fatalf("queued %d ACK/BYE, want %d", out, 2*n)
		}
	})
	if allocs != 0 {
		t.Fatalf("response handling allocates %v per batch", allocs)
	}
	var m sipMsg
	if err := m.scan(s.resp.bufs[1][:s.resp.iovs[1].Len]); err != nil || string(m.method) != "BYE" || string(m.cseqMethod) != "BYE" {
		t.Fatalf("BYE does not scan: %v %q", err, s.resp.bufs[1][:s.resp.iovs[1].Len])
	}
}

func TestSendBatchAllocs(t *testing.T) {
	g, sink := newTestGenerator(t)
	led := newLedger(g.run, 0, 1<<20)
	g.cur.Store(led)
	sink.led.Store(led)
	var dc dateCache
	s := g.socks[0]
	allocs := minAllocs(3, 50, func() { // the live sink's goroutines share the counter
		if _, err := g.sendBatch(s, led, g.cfg.Batch, time.Now(), &dc); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("sendBatch allocates %v per batch", allocs)
	}
}

func BenchmarkSendBatch(b *testing.B) {
	b.Run("tx-stamps", func(b *testing.B) { benchSendBatch(b, false) })
	b.Run("user-time", func(b *testing.B) { benchSendBatch(b, true) })
}

func benchSendBatch(b *testing.B, userTime bool) {
	sink, err := NewSink(SinkConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		b.Fatal(err)
	}
	g, err := NewGenerator(Config{Target: sink.Addr(), Sink: sink, Sockets: 1, UserSendTime: userTime})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = g.Close(); _ = sink.Close() })
	led := newLedger(g.run, 0, 1<<16)
	g.cur.Store(led)
	sink.led.Store(led)
	var dc dateCache
	s := g.socks[0]
	b.ReportAllocs()
	b.SetBytes(int64(len(s.tmpl.b) * g.cfg.Batch))
	for b.Loop() {
		if led.next.Load()+uint64(g.cfg.Batch) > uint64(len(led.slots)) {
			led.next.Store(0) // reuse the ledger; the sink counts duplicates
		}
		if n, err := g.sendBatch(s, led, g.cfg.Batch, time.Now(), &dc); err != nil || n != g.cfg.Batch {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*g.cfg.Batch), "ns/invite")
}

func BenchmarkSinkProcess(b *testing.B) {
	r := newTestSinkReader(false)
	r.s.led.Store(newLedger(7, 0, 1<<10))
	msg := testInvite(5, 7)
	n := fillRecv(r.rb, msg)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg) * n))
	for b.Loop() {
		r.process(n, wallNS())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/invite")
}

func BenchmarkScan(b *testing.B) {
	msg := testInvite(5, 7)
	var m sipMsg
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := m.scan(msg); err != nil {
			b.Fatal(err)
		}
	}
}
