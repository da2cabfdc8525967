package fastpath

import (
	"bytes"
	"net/netip"
	"testing"

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
		l.handle(b, src)
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
		ann := verstatAnnotation(b, &in, param)
		if u, at, _ := verstatPoint(b, &in); at >= 0 && bytes.ContainsAny(u.In(b), "<>") {
			// A URI with an angle bracket inside (the parser takes "sip:a@>"
			// as an addr-spec) cannot be annotated so that it still
			// parses: only the absence of a panic is checked.
			return
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
		u, at, _ := verstatPoint(got, &out)
		if at < 0 {
			t.Fatalf("annotated identity lost its number:\nin:  %q\nout: %q", b, got)
		}
		if old := existingVerstat(got, u); !bytes.EqualFold(old.In(got), param) {
			t.Fatalf("identity URI %q carries %q, want %q:\nin:  %q\nout: %q", u.In(got), old.In(got), param, b, got)
		}
		// One verstat header parameter is removed; a second one in the
		// same header value is left (the annotation's edits are bounded).
		if hv := headerVerstat(got, u); hv.Len() > 0 && countVerstat(b) < 2 {
			t.Fatalf("a verstat header parameter %q is left:\nin:  %q\nout: %q", hv.In(got), b, got)
		}
	})
}

// countVerstat counts ";verstat=" in b, in any case.
func countVerstat(b []byte) int {
	return bytes.Count(bytes.ToLower(b), []byte(";verstat="))
}
