package claims

import (
	"errors"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/sip"
)

// TestRetargets: Diversion and History-Info (with cause) become hops,
// oldest first, the last to the Request-URI's number (+12155550123 in
// inviteWith).
func TestRetargets(t *testing.T) {
	num, err := e164.New("US")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, extra string
		hops        string // "from>to,from>to"
		err         error
	}{
		{"one Diversion", "Diversion: <sip:+12025550101@ours.example;user=phone>;reason=unconditional\r\n", "12025550101>12155550123", nil},
		{"two diversions, most recent first", "Diversion: <tel:+12025550102>;reason=no-answer, <sip:2025550101@ours.example;user=phone>;reason=user-busy\r\n",
			"12025550101>12025550102,12025550102>12155550123", nil},
		{"two Diversion headers", "Diversion: <tel:+12025550102>\r\nDiversion: <tel:+12025550101>\r\n", "12025550101>12025550102,12025550102>12155550123", nil},
		{"History-Info with cause", "History-Info: <sip:+12025550101@ours.example>;index=1, <sip:+12155550123@198.18.2.2;cause=302>;index=1.1;mp=1\r\n",
			"12025550101>12155550123", nil},
		{"History-Info twice retargeted, parent index", "History-Info: <tel:+12025550101>;index=1,<tel:+12025550102;cause=408>;index=1.1,<tel:+12155550123;cause=486>;index=1.1.1\r\n",
			"12025550101>12025550102,12025550102>12155550123", nil},
		{"History-Info sequential fork: the path to the last target only", "History-Info: <tel:+12025550101>;index=1,<tel:+12025550102;cause=486>;index=1.1;mp=1,<tel:+12025550103;cause=408>;index=1.2;mp=1\r\n",
			"12025550101>12155550123", nil},
		{"History-Info without cause, Diversion used", "History-Info: <tel:+12025550101>;index=1\r\nDiversion: <tel:+12025550109>\r\n", "12025550109>12155550123", nil},
		{"History-Info wins over Diversion", "Diversion: <tel:+12025550109>\r\nHistory-Info: <tel:+12025550101>;index=1,<tel:+12155550123;cause=302>;index=1.1;mp=1\r\n", "12025550101>12155550123", nil},
		{"nothing", "", "", ErrNoRetarget},
		{"History-Info without cause", "History-Info: <tel:+12025550101>;index=1\r\n", "", ErrNoRetarget},
		{"malformed Diversion", "Diversion: reason=x\r\n", "", ErrRetarget},
		{"malformed History-Info alone", "History-Info: tel:+1;index=1\r\n", "", ErrRetarget},
		{"diverted from a name", "Diversion: <sip:alice@ours.example>\r\n", "", ErrHopNumber},
	} {
		pkt := inviteWith("<sip:+12155550100@198.18.1.2>", "<sip:+12155550123@198.18.2.2>", c.extra)
		var m sip.Message
		if err := m.Parse(pkt); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var r Retargets
		err := r.Read(pkt, &m, num)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
			continue
		}
		var got []string
		for _, h := range r.Hops {
			got = append(got, string(h.From)+">"+string(h.To))
		}
		if strings.Join(got, ",") != c.hops {
			t.Errorf("%s: hops %q, want %q", c.name, strings.Join(got, ","), c.hops)
		}
	}
}

func TestRetargetsAllocs(t *testing.T) {
	num, _ := e164.New("US")
	pkt := inviteWith("<sip:+12155550100@198.18.1.2>", "<sip:+12155550123@198.18.2.2>",
		"Diversion: <tel:+12025550102>;reason=no-answer, <sip:2025550101@ours.example;user=phone>\r\n")
	var m sip.Message
	var r Retargets
	_ = m.Parse(pkt)
	_ = r.Read(pkt, &m, num) // grows the buffers once
	if n := testing.AllocsPerRun(100, func() {
		if err := r.Read(pkt, &m, num); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Read: %v allocations once warm", n)
	}
}
