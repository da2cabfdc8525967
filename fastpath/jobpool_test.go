package fastpath

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
)

// A loop starts with initialJobs jobs, not MaxInFlight (bench/interop saw
// 4096 jobs made on a loop's first datagram hold it 70-250 ms): it makes
// more only when the free list is empty, up to MaxInFlight and never
// beyond, and a job given back is reused rather than a new one made.
func TestJobPoolGrowsOnDemand(t *testing.T) {
	const maxInFlight = 100
	sock, next := listenUDP(t), listenUDP(t)
	b, _ := passport.NewBuilder(testX5U)
	tbl, _ := policy.Build(policy.Config{}, "C")
	num, _ := e164.New("US")
	s, err := New(Config{
		Listen: sock.LocalAddr().(*net.UDPAddr).AddrPort(), NextHop: next.LocalAddr().(*net.UDPAddr).AddrPort(),
		Builder: b, Signer: fixedSig{}, Policy: policy.NewHolder(tbl), Numbers: num,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxInFlight: maxInFlight,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := s.loopFor(udpFD(t, sock), nil)
	t.Cleanup(func() { close(s.stopSenders); s.wg.Wait() })
	if got := l.made.Load(); got != initialJobs || len(l.free) != initialJobs {
		t.Fatalf("a new loop made %d jobs (%d free), want %d", got, len(l.free), initialJobs)
	}
	var out []*job
	for range maxInFlight {
		j := l.getJob()
		if j == nil {
			t.Fatalf("no job after %d of MaxInFlight %d", len(out), maxInFlight)
		}
		out = append(out, j)
	}
	if j := l.getJob(); j != nil || l.made.Load() != maxInFlight {
		t.Fatalf("beyond MaxInFlight: job %v, %d made", j != nil, l.made.Load())
	}
	l.free <- out[0]
	if j := l.getJob(); j != out[0] || l.made.Load() != maxInFlight {
		t.Fatalf("a job given back was not reused (%d made)", l.made.Load())
	}
	for _, j := range out {
		l.free <- j
	}
}
