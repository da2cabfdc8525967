package policy

import (
	"errors"
	"net/netip"
	"testing"
)

func mustBuild(t *testing.T, cfg Config, def string) *Table {
	t.Helper()
	tb, err := Build(cfg, def)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestDecideFirstMatchWins(t *testing.T) {
	tb := mustBuild(t, Config{Rules: []RuleConfig{
		{Name: "retail", Attest: "A", Sources: []string{"198.18.1.0/24"}, Numbers: []string{"+1215555*", "12155560100-12155560199", "+44 20 7946 0018"}},
		{Name: "retail-unknown-number", Attest: "B", Sources: []string{"198.18.1.0/24"}},
		{Name: "wholesale", Attest: "b", Sources: []string{"198.18.3.7", "2001:2::/48"}},
		{Name: "inventory-anywhere", Attest: "A", Numbers: []string{"33123456789"}},
	}}, "C")
	cases := []struct {
		src, orig string
		want      byte
		rule      string
	}{
		{"198.18.1.9", "12155550100", 'A', "retail"},
		{"198.18.1.9", "12155560150", 'A', "retail"},
		{"198.18.1.9", "12155560199", 'A', "retail"},
		{"198.18.1.9", "12155560200", 'B', "retail-unknown-number"},
		{"198.18.1.9", "442079460018", 'A', "retail"},
		{"198.18.1.9", "", 'B', "retail-unknown-number"},
		{"198.18.3.7", "12155550100", 'B', "wholesale"},
		{"198.18.3.8", "12155550100", 'C', "default"},
		{"2001:2::9", "4930123456", 'B', "wholesale"},
		{"::ffff:198.18.3.7", "1", 'B', "wholesale"},
		{"203.0.113.1", "33123456789", 'A', "inventory-anywhere"},
		{"203.0.113.1", "331234567890", 'C', "default"},
	}
	for _, c := range cases {
		d := tb.Decide(netip.MustParseAddr(c.src), []byte(c.orig))
		if d.Attest != c.want || d.Rule != c.rule {
			t.Errorf("Decide(%s, %q) = %c/%s, want %c/%s", c.src, c.orig, d.Attest, d.Rule, c.want, c.rule)
		}
	}
}

func TestRangesMergedAndDisjoint(t *testing.T) {
	// 11-digit ranges (NANP) and one of 10 digits (DE)
	tb := mustBuild(t, Config{Rules: []RuleConfig{{Name: "r", Attest: "A", Numbers: []string{
		"12025551000-12025551999", "12025551500-12025552500", "+1 202 555 2501 - +1 202 555 2600", "12025555000-12025555000",
		"4930901100-4930901199",
	}}}}, "C")
	r := tb.rules[0]
	if len(r.ranges) != 3 { // 4930901100-199 (10 digits), 12025551000-2600, 12025555000
		t.Fatalf("ranges = %+v", r.ranges)
	}
	for _, tn := range []string{"12025551000", "12025552000", "12025552600", "12025555000", "4930901150"} {
		if tb.Decide(netip.MustParseAddr("198.18.0.1"), []byte(tn)).Attest != 'A' {
			t.Errorf("%s not matched", tn)
		}
	}
	for _, tn := range []string{"12025550999", "12025552601", "12025554999", "12025555001", "12025551500x", "120255515000"} {
		if tb.Decide(netip.MustParseAddr("198.18.0.1"), []byte(tn)).Attest != 'C' {
			t.Errorf("%s matched", tn)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	cases := []struct {
		cfg  Config
		want error
	}{
		{Config{Default: "D"}, ErrAttest},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "Z"}}}, ErrAttest},
		{Config{Rules: []RuleConfig{{Attest: "A"}}}, ErrRule},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Sources: []string{"198.18.0.0/33"}}}}, ErrPrefix},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"12ab"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"200-100"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"100-1000"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"12025552000-12025551000"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"12025551000-120255519999"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"1234567890123456"}}}}, ErrNumber},
		// E.164 as given: national numbers are refused, never completed
		// with a default country (they would never match a caller)
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"2155550143"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"02079460123"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"215555*"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"0*"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"2155550100-2155550199"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"1+2025550143"}}}}, ErrNumber},
		{Config{Rules: []RuleConfig{{Name: "x", Attest: "A", Numbers: []string{"+4930-901820"}}}}, ErrNumber}, // one '-': a range
	}
	for i, c := range cases {
		if _, err := Build(c.cfg, "C"); !errors.Is(err, c.want) {
			t.Errorf("case %d: err = %v, want %v", i, err, c.want)
		}
	}
}

func TestHolderSwap(t *testing.T) {
	a := mustBuild(t, Config{}, "A")
	b := mustBuild(t, Config{}, "B")
	h := NewHolder(a)
	if h.Load().Default() != 'A' {
		t.Fatal("initial table not served")
	}
	h.Store(b)
	if h.Load().Default() != 'B' {
		t.Fatal("swap not visible")
	}
}

func TestDecideAllocs(t *testing.T) {
	tb := mustBuild(t, Config{Rules: []RuleConfig{
		{Name: "retail", Attest: "A", Sources: []string{"198.18.1.0/24"}, Numbers: []string{"+1215555*", "12155560100-12155560199", "442079460018"}},
	}}, "C")
	src := netip.MustParseAddr("198.18.1.9")
	orig := []byte("12155560150")
	if n := testing.AllocsPerRun(1000, func() { tb.Decide(src, orig) }); n != 0 {
		t.Fatalf("Decide allocates %.1f per call", n)
	}
}

func TestActions(t *testing.T) {
	tb := mustBuild(t, Config{Rules: []RuleConfig{
		{Name: "peer-x", Action: "verify", Sources: []string{"198.18.5.0/24"}},
		{Name: "peer-y", Action: "verify-reject", Sources: []string{"198.18.6.0/24"}},
		{Name: "transit", Action: "forward", Sources: []string{"198.18.7.0/24"}},
		{Name: "retail", Attest: "A", Sources: []string{"198.18.1.0/24"}},
	}}, "C")
	for src, want := range map[string]Action{"198.18.5.1": Verify, "198.18.6.1": VerifyReject, "198.18.7.1": Forward, "198.18.1.1": Sign, "203.0.113.9": Sign} {
		if d := tb.Decide(netip.MustParseAddr(src), nil); d.Action != want {
			t.Errorf("%s: action %v, want %v", src, d.Action, want)
		}
	}
	if _, err := Build(Config{Rules: []RuleConfig{{Name: "x", Action: "sign"}}}, "C"); !errors.Is(err, ErrAttest) {
		t.Errorf("sign rule without attest accepted: %v", err)
	}
	if _, err := Build(Config{Rules: []RuleConfig{{Name: "x", Action: "drop"}}}, "C"); !errors.Is(err, ErrRule) {
		t.Errorf("unknown action accepted: %v", err)
	}
}
