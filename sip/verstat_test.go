package sip

import (
	"bytes"
	"strings"
	"testing"
)

func TestVerstatPointSIPURI(t *testing.T) {
	msg := []byte("INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\r\n" +
		"From: <sip:+12155550100@198.18.1.2;user=phone>;tag=1\r\nTo: <sip:+12155550123@198.18.2.2>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	var m Message
	if err := m.Parse(msg); err != nil {
		t.Fatal(err)
	}
	_, at, _ := VerstatPoint(msg, &m)
	got := string(msg[:at]) + ";verstat=X" + string(msg[at:])
	if !strings.Contains(got, "<sip:+12155550100;verstat=X@198.18.1.2;user=phone>") {
		t.Fatalf("verstat placed wrong:\n%s", got)
	}
}

// TestVerstatPoint: the first P-Asserted-Identity that is a number, else
// From; in a tel URI before its parameters, in a sip URI at the end of the
// user part; whether the URI is already in angle brackets.
func TestVerstatPoint(t *testing.T) {
	for _, c := range []struct {
		name, hdrs, want string // want: the URI with "|" where verstat goes; "" for none
		bracketed        bool
	}{
		{"PAI tel", "From: <sip:anon@198.18.1.2>;tag=1\r\nP-Asserted-Identity: <tel:+12155550100;npdi>\r\n", "tel:+12155550100|;npdi", true},
		{"second PAI", "From: <sip:anon@198.18.1.2>;tag=1\r\nP-Asserted-Identity: <sip:alice@198.18.1.2>, tel:+12155550100\r\n", "tel:+12155550100|", false},
		{"From sip", "From: sip:+12155550100@198.18.1.2;tag=1\r\n", "sip:+12155550100|@198.18.1.2", false},
		{"From in brackets with LWS", "From: \"A\" < tel:+12155550100 >;tag=1\r\n", "tel:+12155550100|", true},
		{"no number", "From: <sip:alice@198.18.1.2>;tag=1\r\n", "", true},
	} {
		msg := []byte("INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\r\n" +
			c.hdrs + "To: <sip:+12155550123@198.18.2.2>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
		var m Message
		if err := m.Parse(msg); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		na, at, br := VerstatPoint(msg, &m)
		got := ""
		if at >= 0 {
			got = string(msg[na.URI.Start:at]) + "|" + string(msg[at:na.URI.End])
		}
		if got != c.want || br != c.bracketed {
			t.Errorf("%s: %q bracketed %v, want %q %v", c.name, got, br, c.want, c.bracketed)
		}
	}
}

// TestNextVerstat: the grammar of a verstat parameter in a URI and among
// header parameters (RFC 3261 SEMI, EQUAL, generic-param).
func TestNextVerstat(t *testing.T) {
	for _, c := range []struct {
		in     string
		header bool
		want   string // the span found; "" for none
	}{
		{"tel:+12155550100;verstat=TN-Validation-Passed;npdi", false, ";verstat=TN-Validation-Passed"},
		{"sip:+12155550100;verstat=a@198.18.1.2", false, ";verstat=a"},
		{"tel:+12155550100;VerStat=x>", false, ";VerStat=x"},
		{"tel:+12155550100 ; verstat = x ;npdi", false, "; verstat = x "},
		{"tel:+12155550100;verstat;npdi", false, ";verstat"},
		{"tel:+12155550100;verstat@x", false, ";verstat"},
		{"tel:+12155550100;verstatx=1;verstatus", false, ""},
		{"tel:+12155550100", false, ""},
		{";tag=1;verstat=\"a;b\";x=1", true, ";verstat=\"a;b\""},
		{";tag=1;verstat=\"a\\\"b\" ;x", true, ";verstat=\"a\\\"b\" "},
		{";verstat=TN-Validation-Passed, <tel:+1>", true, ";verstat=TN-Validation-Passed"},
		{";verstat,x", true, ";verstat"},
		{"sip:0100;verstat,0@x", false, ";verstat,0"}, // malformed: its junk goes with it, the number stays whole
		{";verstat=a@b;c", true, ";verstat=a@b"},      // '@' ends nothing among header parameters
		{";verstat=a@b;c", false, ";verstat=a"},
		{";verstat=\"unterminated", true, ";verstat=\"unterminated"},
		{";\r\n verstat=x", true, ";\r\n verstat=x"},
	} {
		b := []byte(c.in)
		s, e := NextVerstat(b, 0, len(b), c.header)
		if got := string(b[s:e]); got != c.want {
			t.Errorf("NextVerstat(%q, header %v) = %q, want %q", c.in, c.header, got, c.want)
		}
	}
}

func TestAppendWithoutVerstat(t *testing.T) {
	for _, c := range []struct {
		in     string
		header bool
		want   string
	}{
		{"tel:+12155550100;verstat=a;npdi;VERSTAT=b", false, "tel:+12155550100;npdi"},
		{"sip:+12155550100;verstat=a;verstat=b@198.18.1.2;verstat=c;user=phone", false, "sip:+12155550100@198.18.1.2;user=phone"},
		{" ; verstat = x ;tag=1;verstat=\"y;z\";VERSTAT", true, " ;tag=1"},
		{";verstatus=2;tag=1", true, ";verstatus=2;tag=1"},
	} {
		b := []byte("<<" + c.in + ">>")
		got := AppendWithoutVerstat([]byte("x"), b, 2, len(b)-2, c.header)
		if string(got) != "x"+c.want {
			t.Errorf("AppendWithoutVerstat(%q, header %v) = %q, want %q", c.in, c.header, got[1:], c.want)
		}
	}
}

// FuzzVerstat: NextVerstat finds a span inside the range that starts with
// ';' and names verstat; AppendWithoutVerstat keeps everything outside the
// spans it finds, in order, and changes nothing when there is none.
func FuzzVerstat(f *testing.F) {
	for _, s := range []string{"tel:+12155550100;verstat=a;npdi", ";tag=1;verstat=\"a;b\";x", "; VERSTAT = x ,", ";verstat=\"a\\", ";verstat"} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, header bool) {
		s, e := NextVerstat(b, 0, len(b), header)
		if s == e {
			if got := AppendWithoutVerstat(nil, b, 0, len(b), header); !bytes.Equal(got, b) {
				t.Fatalf("no verstat in %q, yet %q", b, got)
			}
			return
		}
		if s < 0 || e > len(b) || s > e || b[s] != ';' || !bytes.Contains(bytes.ToLower(b[s:e]), []byte("verstat")) {
			t.Fatalf("span [%d,%d) of %q", s, e, b)
		}
		got := AppendWithoutVerstat(nil, b, 0, len(b), header)
		if len(got) >= len(b) || !bytes.HasPrefix(got, b[:s]) {
			t.Fatalf("%q without verstat: %q", b, got)
		}
		// What is kept is a subsequence of the input.
		i := 0
		for _, c := range got {
			for i < len(b) && b[i] != c {
				i++
			}
			if i == len(b) {
				t.Fatalf("%q without verstat: %q is not a part of it", b, got)
			}
			i++
		}
	})
}
