package fastpath

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/sip"
)

// dateResult is what left the appliance for one INVITE: its Date headers
// and, when signed, the PASSporT's iat.
type dateResult struct {
	dates  []string
	signed bool
	iat    int64
	msg    []byte
}

// sendDated sends an INVITE with the given Date line (empty: none) and
// returns what the next hop (proxy) or the client (redirect: the 302) got.
func sendDated(t *testing.T, te *testEnv, mode Mode, callID, dateLine string) dateResult {
	t.Helper()
	te.send(t, invite(te.client.LocalAddr().(*net.UDPAddr).AddrPort(), callID, dateLine))
	from := te.next
	if mode == Redirect {
		from = te.client
	}
	got, _ := recv(t, from)
	if mode == Redirect && !bytes.HasPrefix(got, []byte("SIP/2.0 302 ")) {
		t.Fatalf("want a 302:\n%s", got)
	}
	r := dateResult{dates: header(got, "Date"), msg: got}
	if ids := header(got, "Identity"); len(ids) == 1 {
		id, err := passport.ParseIdentity(ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := passport.VerifySignature(&te.key.PublicKey, id); err != nil {
			t.Fatalf("signature: %v", err)
		}
		r.signed, r.iat = true, id.Payload.IAT
	} else if len(ids) > 1 {
		t.Fatalf("%d Identity headers:\n%s", len(ids), got)
	}
	return r
}

// imfDate parses an RFC 7231 IMF-fixdate strictly.
func imfDate(t *testing.T, s string) int64 {
	t.Helper()
	d, err := time.Parse(http.TimeFormat, s)
	if err != nil || d.Format(http.TimeFormat) != s {
		t.Fatalf("Date %q is not an IMF-fixdate: %v", s, err)
	}
	return d.Unix()
}

// TestDateRules checks RFC 8224 sections 4.1 and 6.1 in proxy and
// redirect mode: an INVITE without Date gets one, whose second is the
// iat; a Date within freshness is the iat and stays as it is; a Date
// outside freshness, past or future, or one that does not parse, is not
// signed and leaves as it came.
func TestDateRules(t *testing.T) {
	for _, mode := range []Mode{Proxy, Redirect} {
		t.Run(mode.String(), func(t *testing.T) {
			te := start(t, mode, nil)
			now := time.Now().UTC()

			t.Run("no-date", func(t *testing.T) {
				r := sendDated(t, te, mode, "nodate", "")
				if !r.signed || len(r.dates) != 1 {
					t.Fatalf("no Date: signed %v, Date headers %q, want signed with one Date:\n%s", r.signed, r.dates, r.msg)
				}
				if d := imfDate(t, r.dates[0]); d != r.iat || d < now.Unix()-2 || d > now.Unix()+2 {
					t.Fatalf("added Date %q (%d), iat %d, now %d: want Date = iat = now", r.dates[0], d, r.iat, now.Unix())
				}
			})

			t.Run("fresh", func(t *testing.T) {
				for _, skew := range []time.Duration{-20 * time.Second, 20 * time.Second} {
					d := now.Add(skew).Truncate(time.Second)
					r := sendDated(t, te, mode, "fresh", "Date: "+d.Format(sipDate)+"\r\n")
					if !r.signed || r.iat != d.Unix() || len(r.dates) != 1 || imfDate(t, r.dates[0]) != d.Unix() {
						t.Fatalf("Date %v (skew %v): signed %v iat %d Date %q, want signed with iat = Date", d, skew, r.signed, r.iat, r.dates)
					}
					if mode == Proxy && r.dates[0] != d.Format(sipDate) {
						t.Fatalf("Date %q forwarded as %q, want it unchanged", d.Format(sipDate), r.dates[0])
					}
				}
			})

			t.Run("stale", func(t *testing.T) {
				stale0 := mUnsignedStale.Get()
				for _, line := range []string{
					"Date: " + now.Add(-10*time.Minute).Format(sipDate) + "\r\n",
					"Date: " + now.Add(5*time.Minute).Format(sipDate) + "\r\n",
					"Date: " + now.Add(-24*time.Hour).Format(sipDate) + "\r\n",
				} {
					r := sendDated(t, te, mode, "stale", line)
					if r.signed || len(r.dates) > 1 {
						t.Fatalf("%q: signed %v, Date headers %q, want unsigned, Date as it came", strings.TrimSpace(line), r.signed, r.dates)
					}
					if mode == Proxy && (len(r.dates) != 1 || "Date: "+r.dates[0]+"\r\n" != line) {
						t.Fatalf("%q: forwarded with Date %q, want it unchanged", strings.TrimSpace(line), r.dates)
					}
					if mode == Redirect && len(r.dates) != 0 {
						t.Fatalf("%q: unsigned 302 with Date %q, want none", strings.TrimSpace(line), r.dates)
					}
				}
				if n := mUnsignedStale.Get() - stale0; n != 3 {
					t.Fatalf(`shakenline_calls_unsigned_total{reason="stale-date"} rose by %d, want 3`, n)
				}
			})
		})
	}
}

// TestDateUnparseable: a Date that is not an RFC 3261 date cannot be shown
// fresh; it is forwarded unsigned and counted apart.
func TestDateUnparseable(t *testing.T) {
	te := start(t, Proxy, nil)
	bad0, stale0 := mUnsignedBadDate.Get(), mUnsignedStale.Get()
	for _, c := range []struct{ line, value string }{{"Date: yesterday\r\n", "yesterday"}, {"Date:\r\n", ""}} {
		r := sendDated(t, te, Proxy, "baddate", c.line)
		if r.signed || len(r.dates) != 1 || r.dates[0] != c.value {
			t.Fatalf("%q: signed %v, Date %q: want unsigned, Date as it came", c.line, r.signed, r.dates)
		}
	}
	if mUnsignedBadDate.Get()-bad0 != 2 || mUnsignedStale.Get() != stale0 {
		t.Fatalf("bad-date counter +%d, stale-date +%d: want +2, +0", mUnsignedBadDate.Get()-bad0, mUnsignedStale.Get()-stale0)
	}
}

// TestDateReplace: with stale_date: replace, a stale or unparseable Date is
// replaced by now and the call signed with iat = the new Date, in proxy
// and redirect mode.
func TestDateReplace(t *testing.T) {
	for _, mode := range []Mode{Proxy, Redirect} {
		t.Run(mode.String(), func(t *testing.T) {
			te := start(t, mode, func(c *Config, _ *testEnv) { c.StaleDate = claims.StaleReplace })
			replaced0 := mDateReplaced.Get()
			for _, line := range []string{
				"Date: " + time.Now().Add(-10*time.Minute).UTC().Format(sipDate) + "\r\n",
				"Date: " + time.Now().Add(time.Hour).UTC().Format(sipDate) + "\r\n",
				"Date: yesterday\r\n",
				"Date:\r\n", // empty: replaced in place, not doubled
			} {
				now := time.Now().Unix()
				r := sendDated(t, te, mode, "replace", line)
				if !r.signed || len(r.dates) != 1 {
					t.Fatalf("%q: signed %v, Date %q: want signed with one Date", strings.TrimSpace(line), r.signed, r.dates)
				}
				if d := imfDate(t, r.dates[0]); d != r.iat || d < now-2 || d > now+2 {
					t.Fatalf("%q: Date %q, iat %d, now %d: want the Date replaced by now = iat", strings.TrimSpace(line), r.dates[0], r.iat, now)
				}
				if mode == Proxy && bytes.Count(r.msg, []byte("\r\nDate:")) != 1 {
					t.Fatalf("Date not replaced in place:\n%s", r.msg)
				}
			}
			if n := mDateReplaced.Get() - replaced0; n != 4 {
				t.Fatalf(`shakenline_calls_date_total{action="replaced"} rose by %d, want 4`, n)
			}
		})
	}
}

// TestStaleDateLoggedOnce: a flood of stale Dates is one log line a minute
// (and a counter).
func TestStaleDateLoggedOnce(t *testing.T) {
	var logs syncBuffer
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	line := "Date: " + time.Now().Add(-time.Hour).UTC().Format(sipDate) + "\r\n"
	for range 5 {
		if r := sendDated(t, te, Proxy, "flood", line); r.signed {
			t.Fatal("stale Date signed")
		}
	}
	if n := strings.Count(logs.String(), "outside the freshness window"); n != 1 {
		t.Fatalf("%d log lines for 5 stale Dates, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "skew_seconds=-36") {
		t.Fatalf("log line without the skew:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestDateStampInline: in inline mode the signed INVITE is the one that
// came with the Date added (last but one) or replaced (in place) and the
// Identity header last, nothing else changed.
func TestDateStampInline(t *testing.T) {
	l, src := benchLoop(t, nil)
	l.eg = inlineEgress{}
	defer func() { l.eg = proxyEgress{} }()
	const iat = 1796653236
	const date = "Mon, 07 Dec 2026 14:20:36 GMT"
	for _, c := range []struct {
		name, in string
		act      claims.DateAction
	}{
		{"added", "", claims.DateAdd},
		{"replaced", "Date: Sat, 01 Jan 2000 00:00:00 GMT\r\n", claims.DateReplace},
		{"kept", "Date: " + date + "\r\n", claims.DateKeep},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkt := invite(src, "inline", c.in)
			m := new(sip.Message)
			if err := m.Parse(pkt); err != nil {
				t.Fatal(err)
			}
			j := newJob(l)
			j.setDate(m, iat, c.act)
			j.input = append(j.input[:0], "e30.e30"...)
			j.npp, j.pp[0] = 1, pport{b: j.l.s.cfg.Builder, end: len(j.input)}
			got := string(j.stamp(nil, pkt, m, &hsm.Request{}))
			ids := header([]byte(got), "Identity")
			if len(ids) != 1 {
				t.Fatalf("no Identity:\n%s", got)
			}
			last := "\r\nIdentity: " + ids[0] + "\r\n\r\n"
			want := string(pkt)
			switch c.act {
			case claims.DateAdd:
				last = "\r\nDate: " + date + last
			case claims.DateReplace:
				want = strings.Replace(want, "Sat, 01 Jan 2000 00:00:00 GMT", date, 1)
			}
			want = strings.Replace(want, "\r\n\r\n", last, 1)
			if got != want {
				t.Fatalf("inline stamp:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
