package fastpath

import (
	"bytes"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/sip"
)

func seeds(f *testing.F) {
	src := netip.MustParseAddrPort("198.18.1.2:5060")
	f.Add(invite(src, "f1", ""))
	f.Add(invite(src, "f2", "Identity: a.b.c;info=<https://x/y>;alg=ES256;ppt=shaken\r\n"))
	f.Add(optionsMsg)
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsl0123456789abcdef\r\nVia: SIP/2.0/UDP 198.18.1.2;rport=5060;received=198.18.1.2;branch=z9hG4bK1\r\n" +
		"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:x SIP/2.0\r\nv: SIP/2.0/UDP [2001:2::1]:5060;branch=z9hG4bK2;rport\r\nf: <tel:+441632960123>;tag=1\r\nt: <tel:+12155550123>\r\ni: y\r\nCSeq: 7 INVITE\r\nMax-Forwards: 0\r\nl: 0\r\n\r\n"))
}

// FuzzHandle feeds arbitrary datagrams to a loop: nothing may panic (the
// loop's recover would hide it, so the panic counter is checked).
func FuzzHandle(f *testing.F) {
	seeds(f)
	l, src := benchLoop(f, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		before := mPanics.Get()
		l.routeNow(b, src)
		if mPanics.Get() != before {
			t.Fatalf("the loop panicked on %q", b)
		}
	})
}

// FuzzStampRequest: a request that parses still parses once stamped, with
// our Via on top, the Identity added, and its dialog untouched.
func FuzzStampRequest(f *testing.F) {
	seeds(f)
	l, src := benchLoop(f, nil)
	hdr := []byte("Identity: eyJ.eyJ.c2ln;info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken\r\n")
	f.Fuzz(func(t *testing.T, b []byte) {
		var in, out sip.Message
		if in.Parse(b) != nil || !in.IsRequest || in.MaxForwards == 0 {
			return
		}
		stamped := l.s.stampRequest(nil, b, &in, src, hdr, newScratch())
		if err := out.Parse(stamped); err != nil {
			t.Fatalf("stamped request does not parse: %v\nin:  %q\nout: %q", err, b, stamped)
		}
		if out.ViaCount != in.ViaCount+1 || !bytes.HasPrefix(out.Via.Branch.In(stamped), []byte("z9hG4bKsl")) {
			t.Fatalf("Via not added on top: %q", stamped)
		}
		if out.TotalIdentity != in.TotalIdentity+1 {
			t.Fatalf("Identity not added: %q", stamped)
		}
		if !bytes.Equal(out.CallID.In(stamped), in.CallID.In(b)) || out.CSeq != in.CSeq ||
			!bytes.Equal(out.Body.In(stamped), in.Body.In(b)) {
			t.Fatalf("dialog or body changed: %q", stamped)
		}
	})
}

// FuzzVerstatAnnotation: the verstat annotation of a request that parses
// still parses, and its identity URI then carries our verstat only.
func FuzzVerstatAnnotation(f *testing.F) {
	seeds(f)
	for _, h := range []string{
		"From: tel:+12155550100;verstat=TN-Validation-Passed;tag=1\r\n",
		"From: <sip:anon@198.18.1.2>;tag=1\r\nP-Asserted-Identity: tel:+12155550100;verstat=x, <sip:+12155550100@198.18.1.2;user=phone>\r\n",
		"From: \"A\" < tel:+12155550100;verstat=No-TN-Validation >;tag=1\r\n",
		"From: <tel:+12155550100;verstat=a;VERSTAT=b>;verstat=c ; Verstat = \"d;e\";tag=1;verstat\r\n",
		"From: <sip:+12155550100;verstat=a@198.18.1.2;user=phone>;verstat=b;tag=1\r\nP-Asserted-Identity: <tel:+12155550100;verstat=c>, <sip:+12155550100;verstat=d@198.18.1.2;user=phone>\r\n",
	} {
		f.Add([]byte("INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\r\n" +
			h + "To: <sip:+12155550123@198.18.2.2>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	}
	param := []byte(";verstat=TN-Validation-Failed")
	f.Fuzz(func(t *testing.T, b []byte) {
		var in, out sip.Message
		if in.Parse(b) != nil || !in.IsRequest {
			return
		}
		ann, _ := verstatAnnotation(nil, b, &in, param, "")
		if na, at, _ := sip.VerstatPoint(b, &in); at >= 0 && bytes.ContainsAny(na.URI.In(b), "<>") {
			// A URI with an angle bracket inside (the parser takes "sip:a@>"
			// as an addr-spec) cannot be annotated so that it still
			// parses: only the absence of a panic is checked.
			_, _ = verstatAnnotation(nil, b, &in, param, `Verified "Name"`)
			return
		}
		// With a verified name (Rich Call Data) the annotated request
		// parses too, and the identity shows the name.
		if named, _ := verstatAnnotation(nil, b, &in, param, `Verified "Name" \ x`); named.n > 0 {
			var ed edits
			named.addTo(&ed)
			got := ed.apply(nil, b)
			var o sip.Message
			if err := o.Parse(got); err != nil {
				t.Fatalf("annotated request with a name does not parse: %v\nin:  %q\nout: %q", err, b, got)
			}
			if na, at, _ := sip.VerstatPoint(got, &o); at < 0 || !bytes.HasPrefix(na.Value.In(got), []byte(`"Verified \"Name\" \\ x" <`)) {
				t.Fatalf("identity %q does not show the name:\nin:  %q\nout: %q", na.Value.In(got), b, got)
			}
		}
		var ed edits
		ann.addTo(&ed)
		got := ed.apply(nil, b)
		if err := out.Parse(got); err != nil {
			t.Fatalf("annotated request does not parse: %v\nin:  %q\nout: %q", err, b, got)
		}
		if ann.n == 0 {
			return
		}
		na, at, _ := sip.VerstatPoint(got, &out)
		if at < 0 {
			t.Fatalf("annotated identity lost its number:\nin:  %q\nout: %q", b, got)
		}
		// The identity, from its URI to the end of its header value,
		// carries exactly one verstat parameter, ours, in the URI.
		id := got[na.URI.Start:max(na.Value.End, na.URI.End)]
		if n := countVerstatParams(got, na); n != 1 {
			t.Fatalf("identity %q carries %d verstat parameters, want 1:\nin:  %q\nout: %q", id, n, b, got)
		}
		if !bytes.Contains(bytes.ToLower(na.URI.In(got)), bytes.ToLower(param)) {
			t.Fatalf("identity URI %q does not carry %q:\nin:  %q\nout: %q", na.URI.In(got), param, b, got)
		}
		// The other identities the request names carry none.
		others := append([]sip.NameAddr{out.From}, out.PAI[:out.NumPAI]...)
		for _, o := range others {
			if o.URI.Start == na.URI.Start || o.URI.Empty() {
				continue
			}
			if id := got[o.URI.Start:max(o.Value.End, o.URI.End)]; countVerstatParams(got, o) != 0 {
				t.Fatalf("identity %q still carries a verstat:\nin:  %q\nout: %q", id, b, got)
			}
		}
	})
}

// verstatParam is a verstat parameter as a lenient reader might take it:
// after a ';' and optional white space, in any case, followed by '=' or the
// end of the parameter.
var verstatParam = regexp.MustCompile(`(?i);[ \t\r\n]*verstat[ \t\r\n]*(=|;|,|>|$)`)

// countVerstatParams counts the verstat parameters of the identity na in
// msg: in its URI, and among its header parameters outside quoted strings
// (a quoted parameter value may contain the text).
func countVerstatParams(msg []byte, na sip.NameAddr) int {
	var plain []byte
	b := msg[na.URI.End:max(na.Value.End, na.URI.End)]
	quoted := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
			plain = append(plain, ' ')
		case !quoted:
			plain = append(plain, c)
		}
	}
	return len(verstatParam.FindAllIndex(na.URI.In(msg), -1)) + len(verstatParam.FindAllIndex(plain, -1))
}

// FuzzStampDate: a request that parses, signed under the Date rules
// (stale_date: replace, so every Date is kept, added or replaced), still
// parses once stamped in proxy mode; its (first) Date is the iat's when
// added or replaced and the one it had when kept, the Identity is added
// and the dialog and body are untouched.
func FuzzStampDate(f *testing.F) {
	seeds(f)
	src := netip.MustParseAddrPort("198.18.1.2:5060")
	for _, d := range []string{"Date: " + benchDate + "\r\n", "Date:\r\n", "Date: yesterday\r\n", "Date: Sat, 01 Jan 2000 00:00:00 GMT\r\nDate: x\r\n",
		"Date: Mon, 23 Nov 2026\r\n 16:33:40 GMT\r\n"} {
		f.Add(invite(src, "d", d))
	}
	l, _ := benchLoop(f, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		var in, out sip.Message
		if in.Parse(b) != nil || !in.IsRequest || in.MaxForwards == 0 {
			return
		}
		iat, act := claims.DateRule(b, &in, benchNow, time.Minute, claims.StaleReplace)
		j := newJob(l)
		j.setDate(&in, iat, act)
		j.input = append(j.input[:0], "e30.e30"...)
		j.npp, j.pp[0] = 1, pport{b: j.l.s.cfg.Builder, end: len(j.input)}
		stamped := j.stamp(nil, b, &in, &hsm.Request{})
		if err := out.Parse(stamped); err != nil {
			t.Fatalf("stamped request does not parse: %v\nin:  %q\nout: %q", err, b, stamped)
		}
		want := in.Date.In(b)
		if act != claims.DateKeep {
			want = sip.AppendDate(nil, iat)
		}
		if !out.HasDate || !bytes.Equal(out.Date.In(stamped), want) {
			t.Fatalf("Date %q after %d, want %q\nin:  %q\nout: %q", out.Date.In(stamped), act, want, b, stamped)
		}
		if d, ok := sip.ParseDate(out.Date.In(stamped)); !ok || d != iat {
			t.Fatalf("Date %q is not the iat %d\nout: %q", out.Date.In(stamped), iat, stamped)
		}
		if out.TotalIdentity != in.TotalIdentity+1 || !bytes.Equal(out.CallID.In(stamped), in.CallID.In(b)) ||
			out.CSeq != in.CSeq || !bytes.Equal(out.Body.In(stamped), in.Body.In(b)) {
			t.Fatalf("Identity not added, or dialog or body changed:\nin:  %q\nout: %q", b, stamped)
		}
	})
}
