package claims

import (
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/sip"
)

// inviteWith is an initial INVITE with the given From, To and extra header
// lines (P-Asserted-Identity, Date).
func inviteWith(from, to, extra string) []byte {
	return []byte("INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\r\n" +
		"From: " + from + ";tag=1\r\nTo: " + to + "\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n" + extra + "Content-Length: 0\r\n\r\n")
}

// TestOrigDestTN: orig is the first P-Asserted-Identity that is a number,
// else From; dest is To, never the Request-URI; national numbers are
// dialled in the default country (docs/API.md, "Telephone numbers", rule
// S).
func TestOrigDestTN(t *testing.T) {
	num, err := e164.New("US")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, from, to, extra string
		orig, dest            string // "" for none
	}{
		{"PAI first", "<sip:+12155550100@198.18.1.2>", "<sip:+12155550123@198.18.2.2>", "P-Asserted-Identity: <tel:+1-215-555-0199>\r\n", "12155550199", "12155550123"},
		{"second PAI when the first is no number", "<sip:anon@198.18.1.2>", "<tel:+12155550123>",
			"P-Asserted-Identity: <sip:alice@198.18.1.2>, <sip:+442079460123@198.18.1.2;user=phone>\r\n", "442079460123", "12155550123"},
		{"From without PAI, national", "<sip:2155550100@198.18.1.2;user=phone>", "<sip:2155550123@198.18.2.2;user=phone>", "", "12155550100", "12155550123"},
		{"anonymous caller", "\"Anonymous\" <sip:anonymous@anonymous.invalid>", "<sip:+12155550123@198.18.2.2>", "", "", "12155550123"},
		{"called party without number", "<sip:+12155550100@198.18.1.2>", "<sip:bob@198.18.2.2>", "", "12155550100", ""},
	} {
		pkt := inviteWith(c.from, c.to, c.extra)
		var m sip.Message
		if err := m.Parse(pkt); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		orig, ok := OrigTN(nil, make([]byte, 0, 64), pkt, &m, num)
		if string(orig) != c.orig || ok != (c.orig != "") {
			t.Errorf("%s: orig %q %v, want %q", c.name, orig, ok, c.orig)
		}
		dest, ok := DestTN(nil, make([]byte, 0, 64), pkt, &m, num)
		if string(dest) != c.dest || ok != (c.dest != "") {
			t.Errorf("%s: dest %q %v, want %q", c.name, dest, ok, c.dest)
		}
	}
}

// The fast path maps every INVITE it signs: without allocating, given
// room in dst and raw.
func TestAllocs(t *testing.T) {
	num, err := e164.New("US")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 14, 20, 36, 0, time.UTC)
	pkt := inviteWith("<sip:2155550100@198.18.1.2;user=phone>", "<sip:+12155550123@198.18.2.2>",
		"P-Asserted-Identity: <tel:+1-215-555-0199>\r\nDate: "+now.Format(sipDate)+"\r\n")
	var m sip.Message
	if err := m.Parse(pkt); err != nil {
		t.Fatal(err)
	}
	dst, raw := make([]byte, 0, 32), make([]byte, 0, 64)
	if n := testing.AllocsPerRun(1000, func() {
		_, _ = OrigTN(dst[:0], raw, pkt, &m, num)
		_, _ = DestTN(dst[:0], raw, pkt, &m, num)
		_, _ = DateRule(pkt, &m, now, time.Minute, StaleRefuse)
	}); n != 0 {
		t.Fatalf("%.1f allocations per INVITE, want 0", n)
	}
}

func TestStale(t *testing.T) {
	const now = 1796653236
	for _, c := range []struct {
		date  int64
		stale bool
	}{
		{now, false}, {now - 60, false}, {now + 60, false}, {now - 61, true}, {now + 61, true},
		{-1 << 62, true}, {1 << 62, true}, // centuries away either way: a Duration product would wrap
	} {
		if got := Stale(c.date, now, time.Minute); got != c.stale {
			t.Errorf("Stale(%d, now %d, 1m) = %v, want %v", c.date, int64(now), got, c.stale)
		}
	}
}

func TestParseStaleDate(t *testing.T) {
	for in, want := range map[string]StaleDate{"": StaleRefuse, "refuse": StaleRefuse, "replace": StaleReplace} {
		if got, err := ParseStaleDate(in); err != nil || got != want || (in != "" && got.String() != in) {
			t.Errorf("ParseStaleDate(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseStaleDate("Replace"); err == nil || !strings.Contains(err.Error(), "want refuse or replace") {
		t.Errorf("ParseStaleDate(Replace): %v", err)
	}
}
