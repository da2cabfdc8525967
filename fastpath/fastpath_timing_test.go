package fastpath

import (
	"context"
	"crypto/ecdsa"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/hsm"
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
	key := newKey(tb)
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
	sock := listenUDP(tb)
	next := listenUDP(tb)
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := next.Read(buf); err != nil { // Read allocates nothing: it must not count against the tests below
				return
			}
		}
	}()
	b, _ := passport.NewBuilder(testX5U)
	tbl, _ := policy.Build(policy.Config{Rules: []policy.RuleConfig{{Name: "retail", Attest: "A", Numbers: []string{"+1215555*"}}}}, "C")
	num, _ := e164.New("US")
	s, err := New(Config{
		Listen: sock.LocalAddr().(*net.UDPAddr).AddrPort(), NextHop: next.LocalAddr().(*net.UDPAddr).AddrPort(),
		Builder: b, Signer: d, Policy: policy.NewHolder(tbl), Numbers: num,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Few jobs, so that every job is reused many times in a run: an
		// allocation on reuse cannot hide behind a large pool.
		MaxInFlight: 16,
	})
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := sock.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var fd int
	_ = raw.Control(func(f uintptr) { fd = int(f) })
	l := s.loopFor(fd)
	tb.Cleanup(func() { close(s.stopSenders); s.wg.Wait() })
	return l, netip.MustParseAddrPort("198.18.1.2:5060")
}

var optionsMsg = []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bKo1\r\n" +
	"From: <sip:ping@198.18.1.2>;tag=1\r\nTo: <sip:198.18.2.2>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")

func TestAllocsPerPacket(t *testing.T) {
	l, src := benchLoop(t, nil)
	inv := invite(src, "alloc", "Date: Mon, 23 Nov 2026 16:33:39 GMT\r\n")
	// A source that differs from the Via's sent-by adds received= too.
	other := netip.MustParseAddrPort("198.18.9.9:5070")
	for name, c := range map[string]struct {
		pkt []byte
		src netip.AddrPort
	}{"invite-signed": {inv, src}, "invite-received-rport": {inv, other}, "options-forwarded": {optionsMsg, src}} {
		pkt, src := c.pkt, c.src
		for range 100 { // warm up: the latency histogram allocates its buckets once
			l.handle(pkt, src)
		}
		if n := testing.AllocsPerRun(2000, func() { l.handle(pkt, src) }); n != 0 {
			t.Errorf("%s: %.2f allocations per packet, want 0", name, n)
		}
	}
	// The same through the real chain with a warm software key, signed on
	// the loop.
	lc, srcc := benchLoopWith(t, softChain(t))
	for range 100 {
		lc.handle(inv, srcc)
	}
	if n := testing.AllocsPerRun(500, func() { lc.handle(inv, srcc) }); n != 0 {
		t.Errorf("signed on the loop through hsm.Chain: %.2f allocations per packet, want 0", n)
	}
	// The fixed signature is not valid, but every packet went through the
	// whole signing path: check that calls were really stamped.
	if mSignedA.Get() == 0 {
		t.Fatal("no call went through the signing path")
	}
}

func BenchmarkLoopInviteStamp(b *testing.B) {
	l, src := benchLoop(b, nil)
	inv := invite(src, "bench", "Date: Mon, 23 Nov 2026 16:33:39 GMT\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(inv)))
	for b.Loop() {
		l.handle(inv, src)
	}
}

func BenchmarkLoopOptionsForward(b *testing.B) {
	l, src := benchLoop(b, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(optionsMsg)))
	for b.Loop() {
		l.handle(optionsMsg, src)
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
		l.handle(inv, src)
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
		l.handle(inv, src)
	}
}

// BenchmarkLoopCryptoECDSA is BenchmarkLoopSoftwareSigner with the standard
// library's ECDSA (hedged nonce, inversion and k·G per signature) in place
// of es256: the same loop, the same syscalls, only the signer differs.
func BenchmarkLoopCryptoECDSA(b *testing.B) {
	l, src := benchLoop(b, stdSigner{newKey(b)})
	inv := invite(src, "bench", "")
	b.ReportAllocs()
	for b.Loop() {
		l.handle(inv, src)
	}
}

// stdSigner signs with crypto/ecdsa (for the comparison benchmark only).
type stdSigner struct{ k *ecdsa.PrivateKey }

func (s stdSigner) Name() string             { return "crypto/ecdsa" }
func (s stdSigner) Public() *ecdsa.PublicKey { return &s.k.PublicKey }
func (s stdSigner) SignDigest(ctx context.Context, d *[32]byte, sig *[64]byte) error {
	return softSigner{s.k}.SignDigest(ctx, d, sig)
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

// A flood of malformed datagrams costs no allocation and takes no lock once
// the first one has been logged.
func TestAllocsMalformed(t *testing.T) {
	l, src := benchLoop(t, nil)
	bad := []byte("INVITE sip:x@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bKx\r\nCSeq: notanumber\r\n\r\n")
	l.handle(bad, src) // the one line a minute
	if n := testing.AllocsPerRun(1000, func() { l.handle(bad, src) }); n != 0 {
		t.Fatalf("%.2f allocations per malformed datagram", n)
	}
}
