package fastpath

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm"
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

// callKinds is the policy and the INVITEs of BenchmarkLoopCallKinds: a
// plain call, a forwarded call (the caller's carrier's shaken PASSporT, a
// Diversion from a forwarding number), a branded call with its Rich Call
// Data in the shaken PASSporT, and one with a separate rcd PASSporT.
func callKinds(tb testing.TB, src netip.AddrPort) (*policy.Table, []string, map[string][]byte) {
	tb.Helper()
	tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{
		{Name: "brand", Attest: "A", Numbers: []string{"+12155550199"}, RCD: &rcd.Config{Nam: "Example Bank", Crn: "Card alert"}},
		{Name: "brand-apart", Attest: "A", Numbers: []string{"+12155550198"}, RCDPPT: "rcd",
			RCD: &rcd.Config{Nam: "Example Bank", Crn: "Card alert"}},
		{Name: "forwarding", Attest: "A", Numbers: []string{"+1202555*"}, Div: true},
		{Name: "retail", Attest: "A", Numbers: []string{"+1215555*"}},
	}}, "C")
	if err != nil {
		tb.Fatal(err)
	}
	pb, _ := passport.NewBuilder("https://cert.other.example/sp.pem")
	id, err := passport.Sign(context.Background(), signertest.CryptoSigner{Key: newKey(tb)}, pb,
		&passport.Claims{Attest: 'A', Orig: []byte("12155550100"), Dest: [][]byte{[]byte("12025550101")}, IAT: benchNow.Unix()})
	if err != nil {
		tb.Fatal(err)
	}
	date := "Date: " + benchDate + "\r\n"
	caller := func(inv []byte, tn string) []byte {
		inv = bytes.ReplaceAll(inv, []byte("tel:+1-215-555-0100"), []byte("tel:+"+tn))
		return bytes.ReplaceAll(inv, []byte("sip:+12155550100@"), []byte("sip:+"+tn+"@"))
	}
	return tbl, []string{"plain", "div", "rcd-in-shaken", "rcd-separate"}, map[string][]byte{
		"plain":         invite(src, "plain", date),
		"div":           invite(src, "div", date+"Diversion: <tel:+12025550101>;reason=unconditional\r\nIdentity: "+id+"\r\n"),
		"rcd-in-shaken": caller(invite(src, "rcd", date), "12155550199"),
		"rcd-separate":  caller(invite(src, "rcd2", date), "12155550198"),
	}
}

// TestCallKinds: each INVITE of BenchmarkLoopCallKinds leaves with the
// PASSporTs its name says, so the benchmark measures what it claims.
func TestCallKinds(t *testing.T) {
	l, next := testLoop(t, syncDispatcher{})
	src := netip.MustParseAddrPort("198.18.1.2:5060")
	tbl, kinds, invs := callKinds(t, src)
	l.s.cfg.Policy.Store(tbl)
	want := map[string]string{"plain": "shaken", "div": "shaken div", "rcd-in-shaken": "shaken+rcd", "rcd-separate": "shaken rcd+rcd"}
	buf := make([]byte, 65536)
	for _, k := range kinds {
		l.routeNow(invs[k], src)
		_ = next.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := next.Read(buf)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		var got []string
		for _, id := range identities(t, buf[:n]) {
			s := string(id.PPT)
			if len(id.Payload.RCD) > 0 {
				s += "+rcd"
			}
			got = append(got, s)
		}
		if strings.Join(got, " ") != want[k] {
			t.Errorf("%s call: PASSporTs %v, want %s", k, got, want[k])
		}
	}
}

// BenchmarkLoopCallKinds compares, in one run, what each kind of call
// (callKinds) costs on the loop. "fixed" signs with a fixed signature
// (the loop's own work); "chain" is the production arrangement without an
// HSM (the warm es256 pool signing on the loop). All under the same div
// and rcd policy.
func BenchmarkLoopCallKinds(b *testing.B) {
	for _, signer := range []string{"fixed", "chain"} {
		d := hsm.Dispatcher(syncDispatcher{})
		if signer == "chain" {
			d = softChain(b)
		}
		l, src := benchLoopWith(b, d)
		tbl, kinds, invs := callKinds(b, src)
		l.s.cfg.Policy.Store(tbl)
		for _, kind := range kinds {
			b.Run(signer+"/"+kind, func(b *testing.B) {
				inv := invs[kind]
				b.ReportAllocs()
				b.SetBytes(int64(len(inv)))
				for b.Loop() {
					l.routeNow(inv, src)
				}
			})
		}
	}
}
