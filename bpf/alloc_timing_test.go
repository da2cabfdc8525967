package bpf

import (
	"net"
	"net/netip"
	"testing"

	"github.com/shakenline/shakenline/internal/prereq"
)

var sinkPayload []byte

func BenchmarkDecodeMeta(b *testing.B) {
	pkt := AppendMeta(nil, Flow{Src: cliV6, Dst: srvV6, Ifindex: 3}, 1, invite(800))
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		p, _, ok := DecodeMeta(pkt)
		if !ok {
			b.Fatal("decode")
		}
		sinkPayload = p
	}
}

func TestDecodeMetaAllocs(t *testing.T) {
	pkt := AppendMeta(nil, Flow{Src: cliV4, Dst: srvV4}, 1, invite(300))
	if n := testing.AllocsPerRun(1000, func() { sinkPayload, _, _ = DecodeMeta(pkt) }); n != 0 {
		t.Fatalf("DecodeMeta allocates %v times", n)
	}
}

// requireRoot: the Reinjector's transparent sockets need root's
// CAP_NET_ADMIN (IP_TRANSPARENT).
func requireRoot(t testing.TB) {
	t.Helper()
	prereq.Root(t)
	prereq.Caps(t, prereq.CapNetAdmin)
}

// reinjectLoopback sends from a transparent socket bound to 127.0.0.1:src to
// a UDP socket on loopback.
func reinjectLoopback(t testing.TB) (*Reinjector, Flow, *net.UDPConn) {
	requireRoot(t)
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	rx.SetReadBuffer(8 << 20)
	r := NewReinjector(0)
	t.Cleanup(func() { r.Close() })
	f := Flow{Src: netip.MustParseAddrPort("127.0.0.1:45061"), Dst: rx.LocalAddr().(*net.UDPAddr).AddrPort()}
	return r, f, rx
}

func TestReinjectorSendAllocs(t *testing.T) {
	r, f, rx := reinjectLoopback(t)
	msg := invite(400)
	if err := r.Send(f, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, from, err := rx.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != string(msg) || from.Port() != f.Src.Port() {
		t.Fatalf("reinjected datagram: %v from %v", err, from)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := r.Send(f, msg); err != nil && err != ErrWouldBlock {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Send allocates %v times", n)
	}
}

func BenchmarkReinjectorSend(b *testing.B) {
	r, f, rx := reinjectLoopback(b)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	msg := invite(800)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := r.Send(f, msg); err != nil && err != ErrWouldBlock {
			b.Fatal(err)
		}
	}
}

func TestHeartbeatAllocs(t *testing.T) {
	e := newProgEnv(t)
	if n := testing.AllocsPerRun(100, func() {
		if err := e.s.Heartbeat(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Heartbeat allocates %v times", n)
	}
	pkt := AppendMeta(nil, Flow{Src: cliV4, Dst: srvV4}, e.s.Cookie(), invite(300))
	if n := testing.AllocsPerRun(1000, func() { sinkPayload, _, _ = e.s.DecodeMeta(pkt) }); n != 0 {
		t.Fatalf("(*Steering).DecodeMeta allocates %v times", n)
	}
}
