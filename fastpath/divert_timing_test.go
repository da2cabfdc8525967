package fastpath

import (
	"bytes"
	"context"
	"testing"

	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/rcd"
)

// divRCDPolicy is the benchmarks' policy with the features of
// docs/STANDARDS.md "div" and "rcd" configured: retail numbers A, a div
// rule for the forwarding numbers, a brand (in the shaken PASSporT) for
// one number.
func divRCDPolicy(tb testing.TB) *policy.Table {
	tb.Helper()
	tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{
		{Name: "brand", Attest: "A", Numbers: []string{"+12155550199"}, RCD: &rcd.Config{Nam: "Example Bank", Crn: "Card alert"}},
		{Name: "forwarding", Attest: "A", Numbers: []string{"+1202555*"}, Div: true},
		{Name: "retail", Attest: "A", Numbers: []string{"+1215555*"}},
	}}, "C")
	if err != nil {
		tb.Fatal(err)
	}
	return tbl
}

// TestPlainPathAllocsWithDivRCDPolicy: with div and rcd rules in the
// policy, a plain call (not forwarded, no brand) still allocates nothing.
func TestPlainPathAllocsWithDivRCDPolicy(t *testing.T) {
	l, src := benchLoop(t, nil)
	l.s.cfg.Policy.Store(divRCDPolicy(t))
	inv := invite(src, "plain", "Date: "+benchDate+"\r\n")
	if n := testing.AllocsPerRun(2000, func() { l.routeNow(inv, src) }); n != 0 {
		t.Fatalf("plain call under a div and rcd policy: %v allocations", n)
	}
	// A branded call (claims prepared when the policy loaded) neither.
	br := bytes.ReplaceAll(invite(src, "brand", "Date: "+benchDate+"\r\n"), []byte("tel:+1-215-555-0100"), []byte("tel:+1-215-555-0199"))
	if n := testing.AllocsPerRun(2000, func() { l.routeNow(br, src) }); n != 0 {
		t.Fatalf("branded call: %v allocations", n)
	}
}

// BenchmarkLoopInviteStampDivRCDPolicy is BenchmarkLoopInviteStamp with
// div and rcd rules in the policy: the plain call's cost with the
// features configured.
func BenchmarkLoopInviteStampDivRCDPolicy(b *testing.B) {
	l, src := benchLoop(b, nil)
	l.s.cfg.Policy.Store(divRCDPolicy(b))
	inv := invite(src, "bench", "Date: "+benchDate+"\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(inv)))
	for b.Loop() {
		l.routeNow(inv, src)
	}
}

// BenchmarkLoopForwardedDiv is a forwarded call (Diversion, the caller's
// carrier's shaken PASSporT): parsing its Identity, one div PASSporT
// signed and stamped. It allocates (the received PASSporT is parsed):
// forwarded calls are not the plain path.
func BenchmarkLoopForwardedDiv(b *testing.B) {
	l, src := benchLoop(b, nil)
	l.s.cfg.Policy.Store(divRCDPolicy(b))
	pb, _ := passport.NewBuilder("https://cert.other.example/sp.pem")
	id, err := passport.Sign(context.Background(), signertest.CryptoSigner{Key: newKey(b)}, pb,
		&passport.Claims{Attest: 'A', Orig: []byte("12155550100"), Dest: [][]byte{[]byte("12025550101")}, IAT: benchNow.Unix()})
	if err != nil {
		b.Fatal(err)
	}
	inv := invite(src, "fwd", "Date: "+benchDate+"\r\nDiversion: <tel:+12025550101>;reason=unconditional\r\nIdentity: "+id+"\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(inv)))
	for b.Loop() {
		l.routeNow(inv, src)
	}
}
