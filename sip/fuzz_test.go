package sip

import (
	"bytes"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	f.Add(inviteSIPp)
	f.Add(inviteCarrier)
	f.Add(msg("INVITE tel:+4930123456 SIP/2.0\nv: SIP / 2.0 / TCP [2001:2::1]:5060 ;rport;branch=z9hG4bKabc, SIP/2.0/UDP x\n" +
		"f: \"Doe, John\" <sip:+4930123456@example.de>\n  ;tag=abc\nt: sip:+4940654321@example.de;user=phone\ni: c\nCSeq: 7\n INVITE\n" +
		"y: a.b.c;info=<https://x/a,b>;ppt=\"shaken\"\nP-Asserted-Identity: <sip:+1@x>, <tel:+1>\nl: 0\n\n"))
	f.Add(msg("SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP 198.18.0.1;rport=5060;received=198.18.0.1\nContent-Length: 3\n\nabc"))
	f.Add([]byte("OPTIONS sip:x SIP/2.0\nVia: SIP/2.0/UDP x\nFrom: <sip:a@x>\nTo: <sip:b@x>\nCall-ID: k\nCSeq: 1 OPTIONS\n\nrest"))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte("INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		err := m.Parse(b)
		checkSpans(t, &m, b)
		if err != nil {
			return
		}
		if m.Body.Start < m.HeadersEnd || m.Body.End > int32(len(b)) {
			t.Fatalf("body %+v before HeadersEnd %d", m.Body, m.HeadersEnd)
		}
		if m.IsRequest && (m.ViaCount == 0 || m.From.URI.Empty() || m.To.URI.Empty() || m.CallID.Empty() || m.Via.Host.Empty()) {
			t.Fatalf("request accepted without mandatory fields: %+v", m)
		}
		if m.Via.Line.Len() > 0 && !bytes.Contains(m.Via.Line.In(b), m.Via.Value.In(b)) {
			t.Fatalf("Via.Value outside Via.Line")
		}
		// Offsets are valid in a byte-identical copy and parsing is
		// deterministic.
		c := append([]byte(nil), b...)
		var m2 Message
		if err := m2.Parse(c); err != nil || m2 != m {
			t.Fatalf("reparse differs: %v", err)
		}
	})
}

func FuzzTelephoneNumber(f *testing.F) {
	for _, s := range []string{"tel:+12155550123", "tel:2155550123;phone-context=+1", "tel:5550123;phone-context=example.com",
		"sip:+1-215-555-0123@carrier.example;user=phone", "sip:2155550123;phone-context=+1@x", "sip:anonymous@anonymous.invalid",
		"tel:*67", "sips:(215)555.0123@x?h=v"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, uri []byte) {
		dst := []byte("pre")
		num, global, ok := TelephoneNumber(uri, dst)
		if string(num[:3]) != "pre" {
			t.Fatalf("dst prefix clobbered: %q", num)
		}
		if !ok {
			if len(num) != 3 || global {
				t.Fatalf("failure returned %q global=%v", num, global)
			}
			return
		}
		if len(num) == 3 {
			t.Fatal("ok with no digits")
		}
		for _, c := range num[3:] {
			if !isDigit(c) {
				t.Fatalf("non-digit in %q", num)
			}
		}
		if len(num)-3 > len(uri) {
			t.Fatalf("more digits than input: %q from %q", num, uri)
		}
	})
}

// sipDateLayout is RFC 3261 section 20.17 in time package notation.
const sipDateLayout = "Mon, 02 Jan 2006 15:04:05 GMT"

func FuzzDateParse(f *testing.F) {
	for _, s := range []string{"Mon, 23 Nov 2026 16:33:39 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", "Tue, 29 Feb 2028 23:59:60 GMT",
		"sat, 1 jan 2000 00:00:00 gmt", "Mon, 23 Nov 2026 16:33:39 UTC", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		u, ok := ParseDate(v)
		if !ok {
			return
		}
		// Round trip through the standard library's formatter.
		s := time.Unix(u, 0).UTC().Format(sipDateLayout)
		u2, ok2 := ParseDate([]byte(s))
		if !ok2 || u2 != u {
			t.Fatalf("ParseDate(%q) = %d, but %q -> %d %v", v, u, s, u2, ok2)
		}
		if tm, err := time.Parse(sipDateLayout, s); err != nil || tm.Unix() != u {
			t.Fatalf("time.Parse(%q) = %v %v, want %d", s, tm, err, u)
		}
	})
}
