package fastpath

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/sip"
)

func stamped(t *testing.T, msg string, src netip.AddrPort) (string, *sip.Message) {
	t.Helper()
	l, _ := benchLoop(t, nil)
	var in sip.Message
	if err := in.Parse([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	out := l.s.stampRequest(nil, []byte(msg), &in, src, []byte("Identity: x\r\n"), newScratch())
	var m sip.Message
	if err := m.Parse(out); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return string(out), &m
}

// Max-Forwards as the first header sits at the offset where our Via goes:
// both edits must survive.
func TestStampMaxForwardsFirst(t *testing.T) {
	msg := "INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bK1\r\n" +
		"From: <tel:+12155550100>;tag=1\r\nTo: <tel:+12155550123>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	out, m := stamped(t, msg, netip.MustParseAddrPort("198.18.1.2:5060"))
	if m.ViaCount != 2 || !bytes.HasPrefix(m.Via.Branch.In([]byte(out)), []byte("z9hG4bKsl")) {
		t.Fatalf("our Via lost:\n%s", out)
	}
	if m.MaxForwards != 69 {
		t.Fatalf("Max-Forwards %d:\n%s", m.MaxForwards, out)
	}
}

// received and rport written by the sender are replaced by the real source,
// so a client cannot send the transaction's responses elsewhere.
func TestStampOverridesForgedReceivedAndRport(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.5:5062")
	for _, via := range []string{
		"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;received=198.51.100.77;rport=9",
		"SIP/2.0/UDP 192.0.2.1:5060;rport=9;branch=z9hG4bKabc",
		"SIP/2.0/UDP 203.0.113.5:5062;branch=z9hG4bKabc;rport",
	} {
		msg := "INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: " + via + "\r\n" +
			"From: <tel:+12155550100>;tag=1\r\nTo: <tel:+12155550123>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
		out, _ := stamped(t, msg, src)
		var prev string
		for _, l := range strings.Split(out, "\r\n") {
			if strings.HasPrefix(l, "Via: ") && !strings.Contains(l, "z9hG4bKsl") {
				prev = l
			}
		}
		if !strings.Contains(prev, "received=203.0.113.5") || !strings.Contains(prev, "rport=5062") ||
			strings.Contains(prev, "198.51.100.77") || strings.Contains(prev, "rport=9;") || strings.HasSuffix(prev, "rport=9") {
			t.Errorf("Via %q stamped as %q", via, prev)
		}
		var back sip.Message
		// The response routed by that Via goes to the real source.
		resp := []byte("SIP/2.0 200 OK\r\n" + prev + "\r\nFrom: <tel:+1>;tag=1\r\nTo: <tel:+2>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
		if err := back.Parse(resp); err != nil {
			t.Fatal(err)
		}
		if dst, ok := viaTarget(resp, &back.Via); !ok || dst != src {
			t.Errorf("response for %q would go to %v, want %v", via, dst, src)
		}
	}
}
