package sip

import (
	"net/http"
	"testing"
	"time"
)

// TestAppendDate compares AppendDate with the standard library's
// IMF-fixdate (net/http.TimeFormat) for every day from 1970 to 2400 at a
// varying time of day, the clamped ends, and reads each back with
// ParseDate.
func TestAppendDate(t *testing.T) {
	check := func(u int64, want string) {
		t.Helper()
		got := AppendDate(nil, u)
		if string(got) != want || len(got) != DateLen {
			t.Fatalf("AppendDate(%d) = %q, want %q", u, got, want)
		}
	}
	end := time.Date(2400, 3, 1, 0, 0, 0, 0, time.UTC).Unix()
	for u := int64(0); u < end; u += 86400 + 3607 {
		want := time.Unix(u, 0).UTC().Format(http.TimeFormat)
		check(u, want)
		if back, ok := ParseDate([]byte(want)); !ok || back != u {
			t.Fatalf("ParseDate(%q) = %d %v, want %d", want, back, ok, u)
		}
	}
	check(-5, "Thu, 01 Jan 1970 00:00:00 GMT")
	check(1<<40, "Fri, 31 Dec 9999 23:59:59 GMT")
	check(1796653236, "Mon, 07 Dec 2026 14:20:36 GMT")
	dst := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { dst = AppendDate(dst[:0], 1796653236) }); n != 0 {
		t.Fatalf("AppendDate: %.1f allocations, want 0", n)
	}
}

// TestParseDateHeader: the first Date header wins, an empty one included
// (HasDate tells it from none).
func TestParseDateHeader(t *testing.T) {
	base := "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n" +
		"To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
	for _, c := range []struct {
		headers, date string
		has           bool
	}{
		{"", "", false},
		{"Date:\r\n", "", true},
		{"Date:   \r\nDate: Mon, 07 Dec 2026 14:20:36 GMT\r\n", "", true},
		{"Date: Mon, 07 Dec 2026 14:20:36 GMT\r\nDate: Sat, 01 Jan 2000 00:00:00 GMT\r\n", "Mon, 07 Dec 2026 14:20:36 GMT", true},
	} {
		b := []byte(base + c.headers + "Content-Length: 0\r\n\r\n")
		var m Message
		if err := m.Parse(b); err != nil {
			t.Fatal(err)
		}
		if m.HasDate != c.has || string(m.Date.In(b)) != c.date {
			t.Errorf("%q: HasDate %v Date %q, want %v %q", c.headers, m.HasDate, m.Date.In(b), c.has, c.date)
		}
	}
}

func FuzzAppendDate(f *testing.F) {
	for _, u := range []int64{0, 951782400, 1796653236, 4107542400, 253402300799} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, u int64) {
		got := string(AppendDate(nil, u))
		c := min(max(u, 0), 253402300799)
		if want := time.Unix(c, 0).UTC().Format(http.TimeFormat); got != want {
			t.Fatalf("AppendDate(%d) = %q, want %q", u, got, want)
		}
		if back, ok := ParseDate([]byte(got)); !ok || back != c {
			t.Fatalf("ParseDate(AppendDate(%d)) = %d %v", u, back, ok)
		}
	})
}

func BenchmarkAppendDate(b *testing.B) {
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendDate(dst[:0], 1796653236)
	}
}
