package sip

import (
	"testing"
	"time"
)

func TestTelephoneNumber(t *testing.T) {
	cases := []struct {
		uri    string
		num    string
		global bool
		ok     bool
	}{
		{"tel:+12155550123", "12155550123", true, true},
		{"tel:+1-215-555-0123", "12155550123", true, true},
		{"tel:+44(20)7946.0018", "442079460018", true, true},
		{"TEL:+4930123456;verstat=TN-Validation-Passed", "4930123456", true, true},
		{"tel:2155550123;phone-context=+1", "12155550123", true, true},
		{"tel:030-123456;phone-context=+49", "49030123456", true, true},
		{"tel:7946-0018;phone-context=+44-20", "442079460018", true, true},
		{"tel:5550123;phone-context=example.com", "5550123", false, true},
		{"tel:911", "911", false, true},
		{"tel:+1215555012;ext=22", "1215555012", true, true},
		{"sip:+12155550123@carrier.example;user=phone", "12155550123", true, true},
		{"sips:+1-215-555-0123@carrier.example", "12155550123", true, true},
		{"sip:2155550123@198.18.0.9:5060", "2155550123", false, true},
		{"sip:(215)555-0123@198.18.0.9", "2155550123", false, true},
		{"sip:2155550123;phone-context=+1@carrier.example;user=phone", "12155550123", true, true},
		{"sip:2155550123;isub=12@carrier.example;user=phone", "2155550123", false, true},
		{"sip:+12155550123:secret@carrier.example", "12155550123", true, true},
		{"SIP:+12155550123@carrier.example?subject=x", "12155550123", true, true},
		{"sip:anonymous@anonymous.invalid", "", false, false},
		{"sip:alice@example.com", "", false, false},
		{"sip:1800FLOWERS@example.com", "", false, false},
		{"sip:carrier.example", "", false, false},
		{"sip:@carrier.example", "", false, false},
		{"sip:+@carrier.example", "", false, false},
		{"sip:--@carrier.example", "", false, false},
		{"tel:*67;phone-context=+1", "", false, false},
		{"tel:#31#2155550123;phone-context=+1", "", false, false},
		{"tel:2155550123;phone-context=+1x", "", false, false},
		{"tel:", "", false, false},
		{"mailto:+12155550123@example.com", "", false, false},
		{"+12155550123", "", false, false},
		{"", "", false, false},
	}
	for _, c := range cases {
		dst := make([]byte, 2, 32)
		dst[0], dst[1] = 'x', 'y'
		num, global, ok := TelephoneNumber([]byte(c.uri), dst)
		if ok != c.ok || global != c.global || string(num[2:]) != c.num || string(num[:2]) != "xy" {
			t.Errorf("TelephoneNumber(%q) = %q, %v, %v; want %q, %v, %v", c.uri, num, global, ok, "xy"+c.num, c.global, c.ok)
		}
	}
}

func TestURIUserAndParam(t *testing.T) {
	cases := []struct{ uri, scheme, user, params string }{
		{"sip:+12155550123@carrier.example:5060;user=phone;transport=udp", "sip", "+12155550123", "user=phone;transport=udp"},
		{"sips:alice:pw@example.com", "sips", "alice", ""},
		{"sip:2155550123;phone-context=+1@example.com;user=phone?x=y", "sip", "2155550123", "user=phone"},
		{"tel:+1-215-555-0123;verstat=TN-Validation-Passed", "tel", "+1-215-555-0123", "verstat=TN-Validation-Passed"},
		{"sip:example.com;lr", "sip", "", "lr"},
		{"urn:service:sos", "urn", "", ""},
	}
	for _, c := range cases {
		s, u, p := URIUser([]byte(c.uri))
		if string(s) != c.scheme || string(u) != c.user || string(p) != c.params {
			t.Errorf("URIUser(%q) = %q %q %q", c.uri, s, u, p)
		}
	}
	v, ok := Param([]byte("user=phone; Transport = UDP ;lr"), "transport")
	if !ok || string(v) != "UDP" {
		t.Errorf("Param transport = %q %v", v, ok)
	}
	if v, ok := Param([]byte(";lr"), "lr"); !ok || v != nil {
		t.Errorf("Param lr = %q %v", v, ok)
	}
	if _, ok := Param([]byte("user=phone"), "tag"); ok {
		t.Error("Param found an absent parameter")
	}
}

func TestParseDate(t *testing.T) {
	ref := func(s string) int64 {
		tm, err := time.Parse(time.RFC1123, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.Unix()
	}
	good := map[string]int64{
		"Mon, 23 Nov 2026 16:33:39 GMT":       ref("Mon, 23 Nov 2026 16:33:39 GMT"),
		"Thu, 01 Jan 1970 00:00:00 GMT":       0,
		"Thu, 21 Dec 2000 16:01:07 GMT":       977414467, // RFC 3261 section 20.17 example
		"Tue, 29 Feb 2028 23:59:59 GMT":       ref("Tue, 29 Feb 2028 23:59:59 GMT"),
		"Wed, 1 Mar 2100 12:00:00 GMT":        ref("Mon, 01 Mar 2100 12:00:00 GMT"), // weekday not cross-checked
		"  sat,  31 dec 2039 08:09:10 gmt  ":  ref("Sat, 31 Dec 2039 08:09:10 GMT"),
		"Fri, 31 Dec 9999 23:59:59 GMT":       ref("Fri, 31 Dec 9999 23:59:59 GMT"),
		"Sat, 31 Dec 2016 23:59:60 GMT":       ref("Sun, 01 Jan 2017 00:00:00 GMT"),
		"Mon, 23 Nov 2026 16:33:39 GMT\t":     ref("Mon, 23 Nov 2026 16:33:39 GMT"),
		"Sun, 06 Nov 1994 08:49:37 GMT":       784111777,
		"Mon,23 Nov 2026 16:33:39 GMT":        ref("Mon, 23 Nov 2026 16:33:39 GMT"),
		"Mon , 23 Nov 2026 16:33:39 GMT":      ref("Mon, 23 Nov 2026 16:33:39 GMT"),
		"Sun, 29 Feb 2004 00:00:00 GMT":       ref("Sun, 29 Feb 2004 00:00:00 GMT"),
		"Tue, 29 Feb 2000 00:00:00 GMT":       951782400,
		"Thu, 28 Feb 2030 00:00:00 GMT":       ref("Thu, 28 Feb 2030 00:00:00 GMT"),
		"Mon, 23 Nov 2026 16:33:39 GMT   ":    ref("Mon, 23 Nov 2026 16:33:39 GMT"),
		"Mon, 23 Nov 2026 16:33:39     GMT  ": ref("Mon, 23 Nov 2026 16:33:39 GMT"),
	}
	for in, want := range good {
		got, ok := ParseDate([]byte(in))
		if !ok || got != want {
			t.Errorf("ParseDate(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	bad := []string{
		"", "Mon", "Mon, 23 Nov 2026 16:33:39", "Mon, 23 Nov 2026 16:33:39 UTC", "Mon, 23 Nov 2026 16:33:39 +0000",
		"Xyz, 23 Nov 2026 16:33:39 GMT", "Mon 23 Nov 2026 16:33:39 GMT", "Mon, 32 Nov 2026 16:33:39 GMT",
		"Mon, 31 Nov 2026 16:33:39 GMT", "Fri, 29 Feb 2030 00:00:00 GMT", "Mon, 29 Feb 2100 00:00:00 GMT",
		"Mon, 23 Nov 1969 16:33:39 GMT", "Mon, 23 Nov 26 16:33:39 GMT", "Mon, 23 Nov 20260 16:33:39 GMT",
		"Mon, 23 Nov 2026 24:00:00 GMT", "Mon, 23 Nov 2026 16:60:39 GMT", "Mon, 23 Nov 2026 16:33:61 GMT",
		"Mon, 23 Nov 2026 6:33:39 GMT", "Mon, 23 Nov 2026 16:33 GMT", "Mon, 23 Nox 2026 16:33:39 GMT",
		"Mon, 123 Nov 2026 16:33:39 GMT", "Mon, 00 Nov 2026 16:33:39 GMT", "Mon, 23 Nov 2026 16:33:39 GMT x",
		"Monday, 23 Nov 2026 16:33:39 GMT", "Mon, 23 November 2026 16:33:39 GMT",
	}
	for _, in := range bad {
		if got, ok := ParseDate([]byte(in)); ok {
			t.Errorf("ParseDate(%q) = %d, want failure", in, got)
		}
	}
}

func TestHelperAllocs(t *testing.T) {
	dst := make([]byte, 0, 32)
	uris := [][]byte{[]byte("sip:+1-215-555-0123@carrier.example;user=phone"), []byte("tel:2155550123;phone-context=+1"), []byte("sip:anonymous@anonymous.invalid")}
	if n := testing.AllocsPerRun(200, func() {
		for _, u := range uris {
			TelephoneNumber(u, dst[:0])
		}
	}); n != 0 {
		t.Errorf("TelephoneNumber allocates %v times", n)
	}
	d := []byte("Mon, 23 Nov 2026 16:33:39 GMT")
	if n := testing.AllocsPerRun(200, func() { ParseDate(d) }); n != 0 {
		t.Errorf("ParseDate allocates %v times", n)
	}
	if n := testing.AllocsPerRun(200, func() { URIUser(uris[0]); Param(uris[0], "user") }); n != 0 {
		t.Errorf("URIUser/Param allocate %v times", n)
	}
}
