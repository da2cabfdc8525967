package fastpath

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/sip"
)

// frameAll frames a stream given in chunks, as reads would deliver it,
// and returns the messages (copied), the pings and the first error.
func frameAll(pool *bufPool, chunks ...[]byte) (msgs []string, pings int, err frameErr) {
	f := framer{pool: pool}
	defer f.release()
	for _, in := range chunks {
		for len(in) > 0 {
			n, msg, ping, e := f.next(in)
			in = in[n:]
			switch {
			case e != frameOK:
				return msgs, pings, e
			case ping:
				pings++
			case msg != nil:
				msgs = append(msgs, string(msg))
			}
		}
	}
	return msgs, pings, frameOK
}

func streamOf(parts ...string) []byte { return []byte(strings.Join(parts, "")) }

var (
	frameA = "INVITE sip:a@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.1.2;branch=z9hG4bKa\r\nContent-Length: 5\r\n\r\nhello"
	frameB = "OPTIONS sip:b@198.18.2.2 SIP/2.0\r\nl: 0\r\nVia: SIP/2.0/TCP 198.18.1.2;branch=z9hG4bKb\r\n\r\n"
	frameC = "SIP/2.0 200 OK\nVia: SIP/2.0/TCP 198.18.1.2;branch=z9hG4bKc\ncontent-length :  3 \n\nabc"
)

// Every cut of a stream frames as the whole stream does: the same
// messages, the same pings, whatever the reads look like.
func TestFramerCutAnywhere(t *testing.T) {
	s := streamOf("\r\n", frameA, "\r\n\r\n", frameB, frameC, "\r\n\r\n", "\r\n", frameA)
	pool := newBufPool(1 << 30)
	want, wantPings, err := frameAll(pool, s)
	if err != frameOK || len(want) != 4 || wantPings != 2 {
		t.Fatalf("whole stream: %d messages, %d pings, err %d", len(want), wantPings, err)
	}
	if want[0] != frameA || want[1] != frameB || want[2] != frameC || want[3] != frameA {
		t.Fatalf("messages %q", want)
	}
	for i := 0; i <= len(s); i++ {
		for j := i; j <= len(s); j += 7 {
			got, pings, err := frameAll(pool, s[:i], s[i:j], s[j:])
			if err != frameOK || pings != wantPings || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("cut at %d,%d: %q, %d pings, err %d", i, j, got, pings, err)
			}
		}
	}
	var bytewise [][]byte
	for i := range s {
		bytewise = append(bytewise, s[i:i+1])
	}
	if got, pings, err := frameAll(pool, bytewise...); err != frameOK || pings != wantPings || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("byte by byte: %q, %d pings, err %d", got, pings, err)
	}
	if n := pool.lent.Load(); n != 0 {
		t.Fatalf("%d bytes still lent", n)
	}
}

func TestFramerLimits(t *testing.T) {
	pool := newBufPool(1 << 30)
	long := "INVITE sip:a@198.18.2.2 SIP/2.0\r\nX-Long: " + strings.Repeat("a", sip.MaxMessage) + "\r\nContent-Length: 0\r\n\r\n"
	many := "INVITE sip:a@198.18.2.2 SIP/2.0\r\n" + strings.Repeat("X-H: 1\r\n", maxHeaderLines) + "Content-Length: 0\r\n\r\n"
	cases := []struct {
		name string
		s    string
		want frameErr
	}{
		{"endless header", long, frameTooLarge},
		{"endless header, no end", strings.Repeat("a", sip.MaxMessage+10), frameTooLarge},
		{"too many headers", many, frameTooManyHeaders},
		{"no Content-Length", "OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n", frameNoContentLength},
		{"two Content-Lengths", "OPTIONS sip:a SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n", frameBadContentLength},
		{"bad Content-Length", "OPTIONS sip:a SIP/2.0\r\nContent-Length: 1x\r\n\r\n", frameBadContentLength},
		{"body past the limit", "OPTIONS sip:a SIP/2.0\r\nContent-Length: 65500\r\n\r\n", frameTooLarge},
	}
	for _, c := range cases {
		if _, _, err := frameAll(pool, []byte(c.s)); err != c.want {
			t.Errorf("%s, whole: err %d, want %d", c.name, err, c.want)
		}
		// In 1000-byte reads, as a slow client sends it.
		var chunks [][]byte
		for b := []byte(c.s); len(b) > 0; b = b[min(len(b), 1000):] {
			chunks = append(chunks, b[:min(len(b), 1000)])
		}
		if _, _, err := frameAll(pool, chunks...); err != c.want {
			t.Errorf("%s, in pieces: err %d, want %d", c.name, err, c.want)
		}
	}
	if n := pool.lent.Load(); n != 0 {
		t.Fatalf("%d bytes still lent", n)
	}
	// Below the budget a partial message cannot be held: the connection
	// closes rather than the memory grow.
	small := newBufPool(1 << 10)
	if _, _, err := frameAll(small, []byte(frameA[:20])); err != frameBudget {
		t.Fatalf("over budget: err %d", err)
	}
}

// FuzzFraming: a byte stream cut at every position frames as the whole
// stream does (messages, pings, whether it fails), and every buffer lent
// goes back.
func FuzzFraming(f *testing.F) {
	f.Add(streamOf(frameA, frameB, "\r\n\r\n", frameC))
	f.Add(streamOf("\r\n\r", "\n", frameB[:30]))
	f.Add([]byte("SIP/2.0 100 Trying\r\nl:2\r\n\r\nab\r\n\r\n"))
	f.Add([]byte(strings.Repeat("X\r\n", 300)))
	f.Fuzz(func(t *testing.T, s []byte) {
		pool := newBufPool(1 << 30)
		want, wantPings, wantErr := frameAll(pool, s)
		for i := 0; i <= len(s); i++ {
			got, pings, err := frameAll(pool, s[:i], s[i:])
			if (err == frameOK) != (wantErr == frameOK) || pings != wantPings || len(got) != len(want) {
				t.Fatalf("cut at %d: %d messages, %d pings, err %d; whole: %d, %d, %d", i, len(got), pings, err, len(want), wantPings, wantErr)
			}
			for k := range got {
				if got[k] != want[k] {
					t.Fatalf("cut at %d: message %d differs", i, k)
				}
			}
		}
		for _, m := range want {
			if !bytes.Contains([]byte(m), []byte("\n")) || len(m) > sip.MaxMessage {
				t.Fatalf("framed %q", m)
			}
		}
		if n := pool.lent.Load(); n != 0 {
			t.Fatalf("%d bytes still lent", n)
		}
	})
}
