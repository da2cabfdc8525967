package fastpath

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/tnauth"
	"github.com/shakenline/shakenline/verify"
)

// realVerifier adapts verify.Verifier (as cmd/appliance does) for tests.
type realVerifier struct{ v *verify.Verifier }

func (r realVerifier) Verify(ctx context.Context, ids [][]byte, orig, dest []byte, now time.Time) VerifyResult {
	in := verify.Input{OrigTN: string(orig), Time: now}
	if len(dest) > 0 {
		in.DestTNs = []string{string(dest)}
	}
	for _, id := range ids {
		in.Identity = append(in.Identity, string(id))
	}
	res := r.v.Verify(ctx, in)
	out := VerifyResult{Verstat: res.Verstat, Code: res.Code, Reason: res.Reason}
	if d := res.RCD; d != nil {
		out.Name, out.Icon, out.JCard, out.CRN = d.Name, d.Icon, d.JCard, d.CRN
	}
	return out
}

const peerX5U = "https://peer.example.net/sp.pem"

// peerIdentity signs a PASSporT as another carrier would, with a lab CA.
func peerIdentity(t *testing.T) (func(orig, dest string) string, *x509.CertPool, *verify.Verifier) {
	t.Helper()
	root, err := labpki.NewCA("peer-root", nil)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := labpki.NewCA("peer-intermediate", root)
	if err != nil {
		t.Fatal(err)
	}
	leaf, key, err := inter.IssueSP("5678", tnauth.List{SPCs: []string{"5678"}}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	v, err := verify.New(verify.Config{Trust: map[string]*x509.CertPool{"peer": pool},
		Static: map[string][]*x509.Certificate{peerX5U: {leaf, inter.Cert}}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := passport.NewBuilder(peerX5U)
	sign := func(orig, dest string) string {
		c := passport.Claims{Attest: 'A', Orig: []byte(orig), Dest: [][]byte{[]byte(dest)}, IAT: time.Now().Unix()}
		_, _ = rand.Read(c.OrigID[:])
		id, err := passport.Sign(context.Background(), signertest.CryptoSigner{Key: key}, b, &c)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	return sign, pool, v
}

func TestTerminatingVerify(t *testing.T) {
	sign, _, v := peerIdentity(t)
	var holder *policy.Holder
	te := start(t, Proxy, func(c *Config, _ *testEnv) {
		c.Verifier = realVerifier{v}
		tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{{Name: "peer", Action: "verify", Sources: []string{"127.0.0.0/8"}}}}, "C")
		if err != nil {
			t.Fatal(err)
		}
		c.Policy.Store(tbl)
		holder = c.Policy
	})
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	good := sign("12155550100", "12155550123")

	cases := []struct {
		name, identity, verstat string
	}{
		{"valid", good, VerstatPassed},
		{"tampered", strings.Replace(good, ".", ".e", 1), VerstatFailed},
		{"orig mismatch", sign("12155559999", "12155550123"), VerstatFailed},
		{"none", "", VerstatNone},
		{"caller's own verstat replaced", strings.Replace(good, ".", ".e", 1), VerstatFailed},
	}
	for i, c := range cases {
		extra := ""
		if c.identity != "" {
			extra = "Identity: " + c.identity + "\r\n"
		}
		inv := invite(ca, "v"+string(rune('a'+i)), extra)
		if strings.HasPrefix(c.name, "caller's") {
			inv = bytes.Replace(inv, []byte("<tel:+1-215-555-0100>"), []byte("<tel:+1-215-555-0100;verstat=TN-Validation-Passed>"), 1)
		}
		te.send(t, inv)
		got, _ := recv(t, te.next)
		pai := header(got, "P-Asserted-Identity")
		if len(pai) != 1 || pai[0] != "<tel:+1-215-555-0100;verstat="+c.verstat+">" {
			t.Errorf("%s: PAI = %q, want verstat %s", c.name, pai, c.verstat)
		}
		if len(header(got, "Via")) != 2 {
			t.Errorf("%s: not proxied", c.name)
		}
	}

	// verify-reject answers a failed verification with the RFC 8224 code
	// and an RFC 9410 Reason, and forwards a valid call.
	tbl, _ := policy.Build(policy.Config{Rules: []policy.RuleConfig{{Name: "peer", Action: "verify-reject", Sources: []string{"127.0.0.0/8"}}}}, "C")
	holder.Store(tbl)
	te.send(t, invite(ca, "rej", "Identity: "+strings.Replace(good, ".", ".e", 1)+"\r\n"))
	resp, _ := recv(t, te.client)
	if !bytes.HasPrefix(resp, []byte("SIP/2.0 438 Invalid Identity Header\r\n")) || len(header(resp, "Reason")) != 1 ||
		!strings.HasPrefix(header(resp, "Reason")[0], "STIR;cause=438;text=") {
		t.Fatalf("reject: %s", resp)
	}
	noRecv(t, te.next, 200*time.Millisecond)
	te.send(t, invite(ca, "ok", "Identity: "+sign("12155550100", "12155550123")+"\r\n"))
	got, _ := recv(t, te.next)
	if pai := header(got, "P-Asserted-Identity"); len(pai) != 1 || !strings.Contains(pai[0], "verstat="+VerstatPassed) {
		t.Fatalf("valid call under verify-reject: %q", pai)
	}
}

// TestVerstatAnnotation checks where verstat lands for each form of the
// identity header: in angle brackets it joins the URI; a bare addr-spec
// gains brackets so verstat is a URI parameter and the tag stays a header
// parameter (RFC 3261 section 20.10); a caller's own verstat is replaced.
func TestVerstatAnnotation(t *testing.T) {
	cases := []struct{ name, hdrs, want string }{
		{"PAI bracketed tel", "From: <sip:anon@198.18.1.2>;tag=1\r\nP-Asserted-Identity: <tel:+12155550100>\r\n",
			"P-Asserted-Identity: <tel:+12155550100;verstat=X>\r\n"},
		{"From bare tel with tag", "From: tel:+12155550100;tag=1\r\n",
			"From: <tel:+12155550100;verstat=X>;tag=1\r\n"},
		{"From bare sip with tag", "From: sip:+12155550100@198.18.1.2;tag=1\r\n",
			"From: <sip:+12155550100;verstat=X@198.18.1.2>;tag=1\r\n"},
		{"From bracketed with LWS", "From: \"A\" < tel:+12155550100 >;tag=1\r\n",
			"From: \"A\" < tel:+12155550100;verstat=X >;tag=1\r\n"},
		{"own verstat replaced", "From: <tel:+12155550100;verstat=TN-Validation-Passed>;tag=1\r\n",
			"From: <tel:+12155550100;verstat=X>;tag=1\r\n"},
		{"no number", "From: <sip:alice@198.18.1.2>;tag=1\r\n", "From: <sip:alice@198.18.1.2>;tag=1\r\n"},
		// A caller's verstat after a bare addr-spec (a header parameter by
		// RFC 3261, read as the number's by lenient parsers) must not
		// survive beside ours.
		{"bracketed tel with own verstat header parameter", "From: \"A\" <tel:+12155550100>;Verstat=TN-Validation-Passed;tag=1\r\n",
			"From: \"A\" <tel:+12155550100;verstat=X>;tag=1\r\n"},
		{"bare tel with own verstat", "From: tel:+12155550100;verstat=TN-Validation-Passed;tag=1\r\n",
			"From: <tel:+12155550100;verstat=X>;tag=1\r\n"},
		{"bare tel with own verstat last", "From: tel:+12155550100;tag=1;VERSTAT=TN-Validation-Passed\r\n",
			"From: <tel:+12155550100;verstat=X>;tag=1\r\nTo:"},
		// Every verstat the caller wrote goes, not only the first: in the
		// URI (user part and URI parameters), among the header parameters,
		// with white space around ';' and '=' (RFC 3261 SEMI, EQUAL), with
		// a quoted value or none.
		{"two verstats in a tel URI", "From: <tel:+12155550100;verstat=TN-Validation-Passed;npdi;VerStat=TN-Validation-Passed>;tag=1\r\n",
			"From: <tel:+12155550100;verstat=X;npdi>;tag=1\r\n"},
		{"verstats in a sip URI's user part and parameters", "From: <sip:+12155550100;verstat=a;verstat=b@198.18.1.2;verstat=c;user=phone>;tag=1\r\n",
			"From: <sip:+12155550100;verstat=X@198.18.1.2;user=phone>;tag=1\r\n"},
		{"two verstat header parameters", "From: tel:+12155550100;verstat=TN-Validation-Passed;tag=1;verstat=TN-Validation-Passed\r\n",
			"From: <tel:+12155550100;verstat=X>;tag=1\r\n"},
		{"verstat header parameters with white space, quotes, no value", "From: <tel:+12155550100> ; verstat = TN-Validation-Passed ;tag=1;verstat=\"TN-Validation-Passed;x\";VERSTAT\r\n",
			"From: <tel:+12155550100;verstat=X> ;tag=1\r\n"},
		{"other parameters that start with verstat stay", "From: <tel:+12155550100;verstatx=1>;verstatus=2;tag=1\r\n",
			"From: <tel:+12155550100;verstat=X;verstatx=1>;verstatus=2;tag=1\r\n"},
		{"From loses its verstat when PAI is annotated", "From: <sip:+12155550100;verstat=TN-Validation-Passed@198.18.1.2;user=phone>;Verstat=TN-Validation-Passed;tag=1\r\nP-Asserted-Identity: <tel:+12155550100>\r\n",
			"From: <sip:+12155550100@198.18.1.2;user=phone>;tag=1\r\nP-Asserted-Identity: <tel:+12155550100;verstat=X>\r\n"},
		{"the second PAI loses its verstat", "From: <sip:anon@198.18.1.2>;tag=1\r\nP-Asserted-Identity: <tel:+12155550100>, <sip:+12155550100;verstat=TN-Validation-Passed@198.18.1.2;user=phone>;verstat=x\r\n",
			"P-Asserted-Identity: <tel:+12155550100;verstat=X>, <sip:+12155550100@198.18.1.2;user=phone>\r\n"},
		{"bare PAI with own verstat, then another value", "From: <sip:anon@198.18.1.2>;tag=1\r\nP-Asserted-Identity: tel:+12155550100;verstat=TN-Validation-Passed, <sip:+12155550100@198.18.1.2;user=phone>\r\n",
			"P-Asserted-Identity: <tel:+12155550100;verstat=X>, <sip:+12155550100@198.18.1.2;user=phone>\r\n"},
	}
	for _, c := range cases {
		msg := []byte("INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\r\n" +
			c.hdrs + "To: <sip:+12155550123@198.18.2.2>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
		var m sipMessage
		if err := m.Parse(msg); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		ann, _ := verstatAnnotation(nil, msg, &m, []byte(";verstat=X"), "")
		var ed edits
		ann.addTo(&ed)
		got := ed.apply(nil, msg)
		if !bytes.Contains(got, []byte(c.want)) {
			t.Errorf("%s: want %q in\n%s", c.name, c.want, got)
		}
		var m2 sipMessage
		if err := m2.Parse(got); err != nil {
			t.Errorf("%s: annotated INVITE does not parse: %v", c.name, err)
		}
	}
}

// gatedVerifier holds every verification until gate is closed, so that a
// test can fill the verifiers' queue; the verdicts are the real verifier's.
type gatedVerifier struct {
	realVerifier
	gate chan struct{}
}

func (g gatedVerifier) Verify(ctx context.Context, ids [][]byte, orig, dest []byte, now time.Time) VerifyResult {
	<-g.gate
	return g.realVerifier.Verify(ctx, ids, orig, dest, now)
}

// callerVerstat puts the caller's own verstat=TN-Validation-Passed on the
// PAI and From numbers of inv.
func callerVerstat(inv []byte) []byte {
	inv = bytes.Replace(inv, []byte("<tel:+1-215-555-0100>"), []byte("<tel:+1-215-555-0100;verstat=TN-Validation-Passed>"), 1)
	return bytes.Replace(inv, []byte("<sip:+12155550100@198.18.1.2>"), []byte("<sip:+12155550100;verstat=TN-Validation-Passed@198.18.1.2>"), 1)
}

// TestUnverifiedCallsCarryNoTNValidation: a call the policy gives to
// verification that cannot be verified (no verifier configured, or the
// verifiers' queue full) is forwarded at once, annotated No-TN-Validation,
// under verify-reject too; the caller's own verstat does not survive on
// PAI or From.
func TestUnverifiedCallsCarryNoTNValidation(t *testing.T) {
	rules := policy.Config{Rules: []policy.RuleConfig{{Name: "peer", Action: "verify-reject", Sources: []string{"127.0.0.0/8"}}}}
	check := func(t *testing.T, got []byte, want string) {
		t.Helper()
		pai, from := header(got, "P-Asserted-Identity"), header(got, "From")
		if len(pai) != 1 || pai[0] != "<tel:+1-215-555-0100;verstat="+want+">" {
			t.Errorf("PAI = %q, want verstat %s only", pai, want)
		}
		if len(from) != 1 || strings.Contains(strings.ToLower(from[0]), "verstat") {
			t.Errorf("From = %q, want no verstat", from)
		}
	}

	t.Run("no verifier", func(t *testing.T) {
		te := start(t, Proxy, func(c *Config, _ *testEnv) {
			tbl, err := policy.Build(rules, "C")
			if err != nil {
				t.Fatal(err)
			}
			c.Policy.Store(tbl)
		})
		ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
		skipped := mVerifyUnavailable.Get()
		te.send(t, callerVerstat(invite(ca, "nov", "")))
		got, _ := recv(t, te.next)
		check(t, got, VerstatNone)
		if len(header(got, "Via")) != 2 {
			t.Errorf("not proxied:\n%s", got)
		}
		if n := mVerifyUnavailable.Get() - skipped; n != 1 {
			t.Errorf("verifications skipped (no-verifier) went up by %d, want 1", n)
		}
	})

	t.Run("queue full", func(t *testing.T) {
		sign, _, v := peerIdentity(t)
		gate := make(chan struct{})
		te := start(t, Proxy, func(c *Config, _ *testEnv) {
			c.Verifier = gatedVerifier{realVerifier{v}, gate}
			c.VerifyWorkers, c.MaxInFlight = 1, 2
			tbl, err := policy.Build(rules, "C")
			if err != nil {
				t.Fatal(err)
			}
			c.Policy.Store(tbl)
		})
		released := false
		defer func() {
			if !released {
				close(gate)
			}
		}()
		ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
		// A signature that does not verify: verified calls come out
		// TN-Validation-Failed (under verify-reject, answered 438),
		// unverified ones No-TN-Validation; none TN-Validation-Passed.
		bad := "Identity: " + strings.Replace(sign("12155550100", "12155550123"), ".", ".e", 1) + "\r\n"
		overload := mVerifyOverload.Get()
		const calls = 5
		for i := range calls {
			te.send(t, callerVerstat(invite(ca, "q"+string(rune('a'+i)), bad)))
		}
		// One call waits in the worker, at most MaxInFlight more in the
		// loop's jobs and the queue: the others are forwarded now.
		unverified := 0
		for {
			_ = te.next.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			buf := make([]byte, 65536)
			n, _, err := te.next.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			check(t, buf[:n], VerstatNone)
			unverified++
		}
		if unverified < calls-3 || unverified == calls {
			t.Fatalf("%d of %d calls forwarded unverified while the verifier was held, want %d to %d", unverified, calls, calls-3, calls-1)
		}
		if n := mVerifyOverload.Get() - overload; n != uint64(unverified) {
			t.Errorf("verifications skipped (overload) went up by %d, want %d", n, unverified)
		}
		close(gate)
		released = true
		// The held calls are verified now and rejected (438).
		for range calls - unverified {
			resp, _ := recv(t, te.client)
			if !bytes.HasPrefix(resp, []byte("SIP/2.0 438 ")) {
				t.Fatalf("held call: %s", resp)
			}
		}
	})
}
