package fastpath

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
)

// syncDispatcher completes every request at once with a fixed signature, so
// that a benchmark measures the fast path alone (parse, claims, policy,
// PASSporT, stamp, sendmmsg), not the signer. Signers have their own
// benchmarks (hsm, es256); BenchmarkLoopSoftwareSigner includes one.
type syncDispatcher struct{ s hsm.Signer }

func (d syncDispatcher) Submit(r *hsm.Request) error {
	if d.s != nil {
		r.Err = d.s.SignDigest(context.Background(), &r.Digest, &r.Sig)
	}
	r.Done(r)
	return nil
}

// benchDate is the Date of the INVITEs the allocation tests and benchmarks
// send; benchNow, 5 s later, is their loops' clock for dates (cfg.Now), so
// such a Date is always fresh and becomes the iat.
const benchDate = "Mon, 23 Nov 2026 16:33:39 GMT"

var benchNow = time.Date(2026, 11, 23, 16, 33, 44, 0, time.UTC)

// benchLoop builds a Server and one loop around a real UDP socket on
// loopback, without gnet, so handle can be driven directly. A goroutine
// drains the next hop.
func benchLoop(tb testing.TB, signer hsm.Signer) (*loop, netip.AddrPort) {
	return benchLoopWith(tb, syncDispatcher{s: signer})
}

// softChain is the production arrangement without an HSM: an hsm.Chain
// whose only link is the software key, which the loop signs with at once
// while its nonce pool is warm.
func softChain(tb testing.TB) hsm.Dispatcher {
	return softChainKey(tb, newKey(tb))
}

func softChainKey(tb testing.TB, key *ecdsa.PrivateKey) hsm.Dispatcher {
	soft, err := hsm.NewSoftware("soft", key)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { soft.Close() })
	chain, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{Signer: soft}}}, selfSigned(tb, key))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { chain.Close() })
	return chain
}

func benchLoopWith(tb testing.TB, d hsm.Dispatcher) (*loop, netip.AddrPort) {
	tb.Helper()
	l, next := testLoop(tb, d)
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := next.Read(buf); err != nil { // Read allocates nothing: it must not count against the tests below
				return
			}
		}
	}()
	return l, netip.MustParseAddrPort("198.18.1.2:5060")
}

// testLoop is benchLoopWith's loop with its next hop left to the caller,
// who must drain it.
func testLoop(tb testing.TB, d hsm.Dispatcher) (*loop, *net.UDPConn) {
	tb.Helper()
	sock := listenUDP(tb)
	next := listenUDP(tb)
	b, _ := passport.NewBuilder(testX5U)
	tbl, _ := policy.Build(policy.Config{Rules: []policy.RuleConfig{{Name: "retail", Attest: "A", Numbers: []string{"+1215555*"}}}}, "C")
	num, _ := e164.New("US")
	s, err := New(Config{
		Listen: sock.LocalAddr().(*net.UDPAddr).AddrPort(), NextHop: next.LocalAddr().(*net.UDPAddr).AddrPort(),
		Builder: b, Signer: d, Policy: policy.NewHolder(tbl), Numbers: num,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// The Date clock: benchDate is fresh whenever the tests run.
		Now: func() time.Time { return benchNow },
		// Few jobs, so that every job is reused many times in a run: an
		// allocation on reuse cannot hide behind a large pool.
		MaxInFlight: 16,
	})
	if err != nil {
		tb.Fatal(err)
	}
	l := s.loopFor(udpFD(tb, sock), nil)
	tb.Cleanup(func() { close(s.stopSenders); s.wg.Wait() })
	return l, next
}

// routeNow routes one datagram from src and sends what it produced at
// once; pkt is only valid during the call. (The event loop goes through
// drainSocket, which sends what a round of datagrams produced together.)
func (l *loop) routeNow(pkt []byte, src netip.AddrPort) {
	l.routeDatagram(pkt, src)
	l.flush()
}

func udpFD(tb testing.TB, c *net.UDPConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var fd int
	_ = raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// burster sends a burst of datagrams to a loop's socket in one sendmmsg,
// as a generator or an SBC does, without allocating.
type burster struct {
	tx  *batch
	dst netip.AddrPort
}

func newBurster(tb testing.TB, l *loop) *burster {
	c := listenUDP(tb)
	return &burster{tx: newBatch(udpFD(tb, c), false), dst: l.s.cfg.Listen}
}

func (b *burster) send(pkts ...[]byte) {
	for _, p := range pkts {
		b.tx.add(p, b.dst)
	}
	b.tx.flush()
}

var optionsMsg = []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bKo1\r\n" +
	"From: <sip:ping@198.18.1.2>;tag=1\r\nTo: <sip:198.18.2.2>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")

func TestAllocsPerPacket(t *testing.T) {
	l, src := benchLoop(t, nil)
	inv := invite(src, "alloc", "Date: "+benchDate+"\r\n")
	// A source that differs from the Via's sent-by adds received= too.
	other := netip.MustParseAddrPort("198.18.9.9:5070")
	// RFC 8224 sections 4.1 and 6.1: a Date added, a stale one forwarded
	// unsigned (and logged once), or replaced.
	noDate := invite(src, "alloc-nodate", "")
	stale := invite(src, "alloc-stale", "Date: Sat, 01 Jan 2000 00:00:00 GMT\r\n")
	lr, srcr := benchLoop(t, nil)
	lr.s.cfg.StaleDate = claims.StaleReplace
	for name, c := range map[string]struct {
		l   *loop
		pkt []byte
		src netip.AddrPort
	}{"invite-signed": {l, inv, src}, "invite-received-rport": {l, inv, other}, "options-forwarded": {l, optionsMsg, src},
		"invite-date-added": {l, noDate, src}, "invite-stale-date-unsigned": {l, stale, src}, "invite-stale-date-replaced": {lr, stale, srcr}} {
		l, pkt, src := c.l, c.pkt, c.src
		for range 100 { // warm up: the latency histogram allocates its buckets once
			l.routeNow(pkt, src)
		}
		// AllocsPerRun runs on one P, where the sender may not run at all:
		// the counts below need the loop's jobs back first.
		waitJobs(t, l)
		added, replaced, unsigned, signed := mDateAdded.Get(), mDateReplaced.Get(), mUnsignedStale.Get(), mSignedA.Get()
		if n := testing.AllocsPerRun(2000, func() { l.routeNow(pkt, src) }); n != 0 {
			t.Errorf("%s: %.2f allocations per packet, want 0", name, n)
		}
		// Each case did what its name says (2001 runs: AllocsPerRun warms
		// up once; with only 16 jobs in this loop's pool some signed calls
		// are bypassed as overload, and leave with their Date as it came).
		for _, w := range []struct {
			when     string
			got      uint64
			min, max uint64
		}{
			{"invite-date-added", mDateAdded.Get() - added, 16, 2001},
			{"invite-stale-date-replaced", mDateReplaced.Get() - replaced, 16, 2001},
			{"invite-stale-date-unsigned", mUnsignedStale.Get() - unsigned, 2001, 2001},
			{"invite-stale-date-unsigned", mSignedA.Get() - signed, 0, 0},
		} {
			if w.when == name && (w.got < w.min || w.got > w.max) {
				t.Errorf("%s: counter rose by %d, want %d to %d", name, w.got, w.min, w.max)
			}
		}
	}
	// The same through the real chain with a warm software key, signed on
	// the loop.
	lc, srcc := benchLoopWith(t, softChain(t))
	for range 100 {
		lc.routeNow(inv, srcc)
	}
	if n := testing.AllocsPerRun(500, func() { lc.routeNow(inv, srcc) }); n != 0 {
		t.Errorf("signed on the loop through hsm.Chain: %.2f allocations per packet, want 0", n)
	}
	// The fixed signature is not valid, but every packet went through the
	// whole signing path: check that calls were really stamped.
	if mSignedA.Get() == 0 {
		t.Fatal("no call went through the signing path")
	}

	// The event loop's own path: a burst read with recvmmsg, handled, and
	// sent with shared sendmmsg calls, signed on the loop: with a fixed
	// signature for many bursts, and through the real chain for as many as
	// a warm nonce pool covers (when it runs dry the call goes to the
	// asynchronous signers, whose goroutines and buffers are not the loop's).
	for _, c := range []struct {
		name  string
		chain bool
		runs  int
	}{{"fixed signature", false, 200}, {"hsm.Chain", true, 20}} {
		var d hsm.Dispatcher = fixedSig{}
		if c.chain {
			d = softChain(t)
			waitWarm(t, d)
			time.Sleep(100 * time.Millisecond) // let the pool fill
		}
		lb, _ := benchLoopWith(t, d)
		burst := burstOf(lb, rxBatch)
		bs := newBurster(t, lb)
		for range 5 {
			bs.send(burst...)
			lb.drainSocket(nil, netip.AddrPort{})
		}
		read, invites, resps := mRecvDatagrams.Get(), mInvitesBy[UDP].Get(), mResponses.Get()
		if n := testing.AllocsPerRun(c.runs, func() { bs.send(burst...); lb.drainSocket(nil, netip.AddrPort{}) }); n != 0 {
			t.Errorf("%s: burst of %d datagrams through recvmmsg: %.2f allocations per burst, want 0", c.name, len(burst), n)
		}
		// AllocsPerRun runs the function once more to warm up.
		want := uint64(c.runs+1) * uint64(len(burst))
		if got := mRecvDatagrams.Get() - read; got != want {
			t.Errorf("%s: recvmmsg read %d datagrams, want %d", c.name, got, want)
		}
		if got := mInvitesBy[UDP].Get() - invites; got != want/2 {
			t.Errorf("%s: %d INVITEs handled in the bursts, want %d", c.name, got, want/2)
		}
		if got := mResponses.Get() - resps; got != want/2 {
			t.Errorf("%s: %d responses routed back in the bursts, want %d", c.name, got, want/2)
		}
	}
}

// waitJobs waits until the loop's sender has returned every job to the
// free list.
func waitJobs(t *testing.T, l *loop) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(l.free) < int(l.made.Load()); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs back after 5s", len(l.free), l.made.Load())
		}
	}
}

// burstOf is a burst of n datagrams as a proxy sees them: initial INVITEs
// (signed) alternating with responses to earlier ones (ours, routed back
// by the Via under ours, here to the next hop's address so that the
// benchmark's drain reads them).
func burstOf(l *loop, n int) [][]byte {
	next := l.s.cfg.NextHop
	resp := []byte("SIP/2.0 200 OK\r\n" + string(l.s.viaPrefix[UDP]) + "z9hG4bKsl0123456789abcdef\r\n" +
		"Via: SIP/2.0/UDP " + next.String() + ";branch=z9hG4bK-b;rport=" + fmt.Sprint(next.Port()) + "\r\n" +
		"From: <sip:+12155550100@198.18.1.2>;tag=abc\r\nTo: <sip:+12155550123@198.18.2.2>;tag=srv\r\n" +
		"Call-ID: b@198.18.1.2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	out := make([][]byte, n)
	for i := range out {
		if i%2 == 0 {
			out[i] = invite(netip.MustParseAddrPort("198.18.1.2:5060"), fmt.Sprintf("burst%d", i), "")
		} else {
			out[i] = resp
		}
	}
	return out
}

// BenchmarkLoopBurst is the event loop's path for bursts of rxBatch
// datagrams (half initial INVITEs signed on the loop through hsm.Chain
// with a warm software key, half 200 OKs routed back): one sendmmsg from a
// client, recvmmsg, parse, sign, stamp, shared sendmmsg. ns/op is per
// datagram, and includes waiting for the nonce pool when the loop signs
// faster than its refill; allocs/op must be 0.
func BenchmarkLoopBurst(b *testing.B) {
	benchBurst(b, softChain(b), true)
}

// BenchmarkLoopBurstFixedSig and BenchmarkLoopSingleFixedSig compare the
// same datagrams through the loop's receive path in bursts (recvmmsg, one
// sendmmsg per burst) and one at a time (handle: one sendmmsg each, as
// before receive batching; the client's send and the read are the same),
// with a fixed signature "signed on the loop", so that the difference is
// the per-datagram syscalls, not the signer.
func BenchmarkLoopBurstFixedSig(b *testing.B)  { benchBurst(b, fixedSig{}, true) }
func BenchmarkLoopSingleFixedSig(b *testing.B) { benchBurst(b, fixedSig{}, false) }

func benchBurst(b *testing.B, d hsm.Dispatcher, batched bool) {
	l, _ := benchLoopWith(b, d)
	burst := burstOf(l, rxBatch)
	bs := newBurster(b, l)
	l.rx.ts = unix.Timespec{} // no linger: measure the work, not the wait
	var buf [65536]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(burst) {
		bs.send(burst...)
		if batched {
			l.drainSocket(nil, netip.AddrPort{})
			continue
		}
		for range burst {
			n, err := unix.Read(l.fd, buf[:]) // as gnet's recvfrom, without its sockaddr allocation
			if err != nil {
				b.Fatal(err)
			}
			l.routeNow(buf[:n], netip.MustParseAddrPort("198.18.1.2:5060"))
		}
	}
}

// fixedSig signs at once with a fixed (invalid) signature, as hsm.Chain
// does with a warm software pool, so that a benchmark measures the loop
// without the signer.
type fixedSig struct{}

func (fixedSig) Submit(r *hsm.Request) error        { r.Done(r); return nil }
func (fixedSig) TrySign(r *hsm.Request, _ int) bool { r.SignedBy = "fixed"; return true }

func BenchmarkLoopInviteStamp(b *testing.B) {
	l, src := benchLoop(b, nil)
	inv := invite(src, "bench", "Date: "+benchDate+"\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(inv)))
	for b.Loop() {
		l.routeNow(inv, src)
	}
}

func BenchmarkLoopOptionsForward(b *testing.B) {
	l, src := benchLoop(b, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(optionsMsg)))
	for b.Loop() {
		l.routeNow(optionsMsg, src)
	}
}

func BenchmarkLoopSoftwareSigner(b *testing.B) {
	soft, err := hsm.NewSoftware("soft", newKey(b))
	if err != nil {
		b.Fatal(err)
	}
	l, src := benchLoop(b, soft)
	inv := invite(src, "bench", "")
	b.ReportAllocs()
	for b.Loop() {
		l.routeNow(inv, src)
	}
}

// BenchmarkLoopChainSoftware is a whole signed call as the appliance runs
// it without an HSM: parse, claims, policy, PASSporT, a signature from the
// warm es256 pool on the loop, stamp, sendmmsg.
func BenchmarkLoopChainSoftware(b *testing.B) {
	l, src := benchLoopWith(b, softChain(b))
	inv := invite(src, "bench", "")
	b.ReportAllocs()
	for b.Loop() {
		l.routeNow(inv, src)
	}
}

// BenchmarkLoopCryptoECDSA is BenchmarkLoopSoftwareSigner with the standard
// library's ECDSA (hedged nonce, inversion and k·G per signature) in place
// of es256: the same loop, the same syscalls, only the signer differs.
func BenchmarkLoopCryptoECDSA(b *testing.B) {
	l, src := benchLoop(b, signertest.CryptoSigner{Key: newKey(b)})
	inv := invite(src, "bench", "")
	b.ReportAllocs()
	for b.Loop() {
		l.routeNow(inv, src)
	}
}

func BenchmarkStampRequest(b *testing.B) {
	l, src := benchLoop(b, nil)
	inv := invite(src, "stamp", "")
	if err := l.msg.Parse(inv); err != nil {
		b.Fatal(err)
	}
	hdr := []byte("Identity: eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2lnbmF0dXJl;info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(inv)))
	for b.Loop() {
		l.out = l.s.stampRequest(l.out[:0], inv, &l.msg, src, hdr, l.sc)
	}
}

// BenchmarkStampRequestDateAdded is BenchmarkStampRequest for an INVITE
// without Date: the Date rule, the IMF-fixdate and its insertion with the
// Identity header (RFC 8224 section 6.1). Compare the two in one run.
func BenchmarkStampRequestDateAdded(b *testing.B) {
	l, src := benchLoop(b, nil)
	inv := invite(src, "stamp", "")
	if err := l.msg.Parse(inv); err != nil {
		b.Fatal(err)
	}
	hdr := []byte("Identity: eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2lnbmF0dXJl;info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken\r\n")
	j := newJob(l)
	b.ReportAllocs()
	b.SetBytes(int64(len(inv)))
	for b.Loop() {
		iat, act := claims.DateRule(inv, &l.msg, benchNow, time.Minute, claims.StaleRefuse)
		j.setDate(&l.msg, iat, act)
		l.out = l.s.stampRequestEdit(l.out[:0], inv, &l.msg, src, hdr, l.sc, nil, &j.date)
	}
}

// A flood of malformed datagrams costs no allocation and takes no lock once
// the first one has been logged.
func TestAllocsMalformed(t *testing.T) {
	l, src := benchLoop(t, nil)
	bad := []byte("INVITE sip:x@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bKx\r\nCSeq: notanumber\r\n\r\n")
	l.routeNow(bad, src) // the one line a minute
	if n := testing.AllocsPerRun(1000, func() { l.routeNow(bad, src) }); n != 0 {
		t.Fatalf("%.2f allocations per malformed datagram", n)
	}
}
