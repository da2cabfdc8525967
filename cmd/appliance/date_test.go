package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/sipp"
	"github.com/shakenline/shakenline/passport"
)

// TestServeDateRules runs `appliance serve` as configured in YAML: by
// default (stale_date: refuse) a stale Date is forwarded unsigned and an
// INVITE without Date leaves with one, equal to its iat; with
// stale_date: replace (redirect mode here) the stale Date is replaced and
// the 302 carries the Date of the iat.
func TestServeDateRules(t *testing.T) {
	pki := labPKI(t)
	base := []string{"--key", filepath.Join(pki, "sp.key"), "--cert", filepath.Join(pki, "sp.pem"),
		"--x5u", "https://cert.example.org/sp.pem"}
	stale := "Date: " + time.Now().Add(-10*time.Minute).UTC().Format(http.TimeFormat) + "\r\n"

	t.Run("proxy-refuse", func(t *testing.T) {
		next := newCapture(t)
		sipAddr := freeUDP(t)
		logs := startServe(t, append(base, "--sip", sipAddr, "--next-hop", next.addr().String())...)
		sendUDP(t, sipAddr, inviteFor(t, "nodate", ""))
		sendUDP(t, sipAddr, inviteFor(t, "stale", stale))
		got := next.wait(2)
		if len(got) != 2 {
			t.Fatalf("%d INVITEs forwarded, want 2", len(got))
		}
		for _, m := range got {
			ids, dates := sipp.HeaderValues(m, "Identity"), sipp.HeaderValues(m, "Date")
			switch {
			case strings.Contains(string(m), "Call-ID: nodate@"):
				if len(ids) != 1 || len(dates) != 1 {
					t.Fatalf("no Date: want signed with a Date added:\n%s", m)
				}
				id, err := passport.ParseIdentity(ids[0])
				d, derr := time.Parse(http.TimeFormat, dates[0])
				if err != nil || derr != nil || d.Unix() != id.Payload.IAT {
					t.Fatalf("Date %q, iat %v (%v, %v): want equal", dates[0], id, err, derr)
				}
			default:
				if len(ids) != 0 || len(dates) != 1 || "Date: "+dates[0]+"\r\n" != stale {
					t.Fatalf("stale Date: want forwarded unsigned and unchanged:\n%s", m)
				}
			}
		}
		waitLog(t, logs, "outside the freshness window", 1)
	})

	t.Run("redirect-replace", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(cfg, []byte("mode: redirect\nstale_date: replace\nfreshness: 30s\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		sipAddr := freeUDP(t)
		startServe(t, append(base, "--config", cfg, "--sip", sipAddr)...)
		for _, line := range []string{stale, ""} {
			resp := exchangeUDP(t, sipAddr, inviteFor(t, "redir", line))
			ids, dates := sipp.HeaderValues(resp, "Identity"), sipp.HeaderValues(resp, "Date")
			if !strings.HasPrefix(string(resp), "SIP/2.0 302 ") || len(ids) != 1 || len(dates) != 1 {
				t.Fatalf("Date %q: want a 302 with Identity and Date:\n%s", line, resp)
			}
			id, err := passport.ParseIdentity(ids[0])
			d, derr := time.Parse(http.TimeFormat, dates[0])
			if err != nil || derr != nil || d.Unix() != id.Payload.IAT || time.Since(d) > 5*time.Second {
				t.Fatalf("302 Date %q, iat %v (%v, %v): want equal, now", dates[0], id, err, derr)
			}
		}
	})
}

func inviteFor(t *testing.T, callID, extra string) []byte {
	t.Helper()
	return []byte("INVITE sip:+13105550143@127.0.0.1;user=phone SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-" + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:+12025550101@127.0.0.1;user=phone>;tag=" + callID + "\r\n" +
		"To: <sip:+13105550143@127.0.0.1;user=phone>\r\nCall-ID: " + callID + "@date\r\nCSeq: 1 INVITE\r\n" +
		"P-Asserted-Identity: <tel:+12025550101>\r\n" + extra + "Content-Length: 0\r\n\r\n")
}

func sendUDP(t *testing.T, to string, msg []byte) {
	t.Helper()
	c, err := net.Dial("udp4", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
}

// exchangeUDP sends msg from a socket of its own and returns the first
// answer (rport sends it back to that socket).
func exchangeUDP(t *testing.T, to string, msg []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp4", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return buf[:n]
}
