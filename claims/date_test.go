package claims

import (
	"testing"
	"time"

	"github.com/shakenline/shakenline/sip"
)

// sipDate is the RFC 3261 section 20.17 Date format (always GMT).
const sipDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// invite is an initial INVITE with the given extra header lines.
func invite(extra string) []byte {
	return []byte("INVITE sip:+12155550123@198.18.2.2:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bK-c1;rport\r\n" +
		"From: \"Alice\" <sip:+12155550100@198.18.1.2>;tag=abc\r\n" +
		"To: <sip:+12155550123@198.18.2.2;user=phone>\r\n" +
		"Call-ID: c1@198.18.1.2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" + extra + "Content-Length: 0\r\n\r\n")
}

// TestDateRuleBoundaries: the window is inclusive, the same either way.
func TestDateRuleBoundaries(t *testing.T) {
	now := time.Date(2026, 12, 7, 14, 20, 36, 0, time.UTC)
	for _, c := range []struct {
		date  string // "" for none
		stale StaleDate
		iat   int64
		act   DateAction
	}{
		{"", StaleRefuse, now.Unix(), DateAdd},
		{now.Add(-60 * time.Second).Format(sipDate), StaleRefuse, now.Unix() - 60, DateKeep},
		{now.Add(60 * time.Second).Format(sipDate), StaleRefuse, now.Unix() + 60, DateKeep},
		{now.Add(-61 * time.Second).Format(sipDate), StaleRefuse, now.Unix(), DateStale},
		{now.Add(61 * time.Second).Format(sipDate), StaleRefuse, now.Unix(), DateStale},
		{now.Add(61 * time.Second).Format(sipDate), StaleReplace, now.Unix(), DateReplace},
		{"Fri, 31 Dec 9999 23:59:59 GMT", StaleRefuse, now.Unix(), DateStale},
		{"Thu, 01 Jan 1970 00:00:00 GMT", StaleRefuse, now.Unix(), DateStale},
		{"2026-12-07T14:20:36Z", StaleRefuse, now.Unix(), DateBad},
		{"2026-12-07T14:20:36Z", StaleReplace, now.Unix(), DateReplace},
	} {
		line := ""
		if c.date != "" {
			line = "Date: " + c.date + "\r\n"
		}
		pkt := invite(line)
		m := new(sip.Message)
		if err := m.Parse(pkt); err != nil {
			t.Fatal(err)
		}
		if iat, act := DateRule(pkt, m, now, time.Minute, c.stale); iat != c.iat || act != c.act {
			t.Errorf("Date %q, %v: iat %d action %d, want %d %d", c.date, c.stale, iat, act, c.iat, c.act)
		}
	}
}
