package policy

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/rcd"
)

func TestDivAndRCDRules(t *testing.T) {
	tb := mustBuild(t, Config{Rules: []RuleConfig{
		{Name: "forwarding", Attest: "A", Sources: []string{"198.18.1.0/24"}, Numbers: []string{"+1202555*"}, Div: true},
		{Name: "forwarding-strict", Attest: "A", Sources: []string{"198.18.2.0/24"}, Div: true, DivUnverified: "forward"},
		{Name: "bank", Attest: "A", Numbers: []string{"+12155550100"}, RCD: &rcd.Config{Nam: "Example Bank", Crn: "Fraud alert"}},
		{Name: "bank-separate", Attest: "A", Numbers: []string{"+12155550101"}, RCD: &rcd.Config{Nam: "Example Bank"}, RCDPPT: "rcd"},
	}}, "C")
	src := netip.MustParseAddr("198.18.1.9")
	if d := tb.DecideDiv(src, []byte("12025550101")); !d.Div || d.DivForward || d.Rule != "forwarding" {
		t.Errorf("diverting number in the inventory: %+v", d)
	}
	if d := tb.DecideDiv(src, []byte("12155550100")); d.Div {
		t.Errorf("diverting number not ours: %+v", d)
	}
	if d := tb.DecideDiv(netip.MustParseAddr("198.18.2.1"), []byte("44")); !d.Div || !d.DivForward {
		t.Errorf("div_unverified forward: %+v", d)
	}
	d := tb.Decide(netip.MustParseAddr("203.0.113.1"), []byte("12155550100"))
	if d.RCD == nil || d.RCDSeparate || string(d.RCD.Passport().RCD) != `{"nam":"Example Bank"}` || string(d.RCD.Passport().CRN) != `"Fraud alert"` {
		t.Errorf("rcd rule: %+v", d)
	}
	if d := tb.Decide(netip.MustParseAddr("203.0.113.1"), []byte("12155550101")); d.RCD == nil || !d.RCDSeparate {
		t.Errorf("rcd_ppt rcd: %+v", d)
	}
	if d := tb.Decide(netip.MustParseAddr("203.0.113.1"), []byte("12155550199")); d.RCD != nil || d.Div {
		t.Errorf("default: %+v", d)
	}
	if tb.NeedsContent() {
		t.Error("no links, yet NeedsContent")
	}
}

func TestDivAndRCDRulesRefused(t *testing.T) {
	for _, rc := range []RuleConfig{
		{Name: "v", Action: "verify", Div: true},
		{Name: "f", Action: "forward", RCD: &rcd.Config{Nam: "x"}},
		{Name: "u", Attest: "A", DivUnverified: "sign"},
		{Name: "u2", Attest: "A", Div: true, DivUnverified: "drop"},
		{Name: "p", Attest: "A", RCDPPT: "rcd"},
		{Name: "p2", Attest: "A", RCD: &rcd.Config{Nam: "x"}, RCDPPT: "div"},
		{Name: "n", Attest: "A", RCD: &rcd.Config{}},
	} {
		if _, err := Build(Config{Rules: []RuleConfig{rc}}, "C"); !errors.Is(err, ErrRule) {
			t.Errorf("%+v: %v", rc, err)
		}
	}
}

func TestResolveRCD(t *testing.T) {
	tb := mustBuild(t, Config{Rules: []RuleConfig{
		{Name: "bank", Attest: "A", RCD: &rcd.Config{Nam: "Example Bank", Icn: "https://brand.example/logo.png"}},
	}}, "C")
	if !tb.NeedsContent() {
		t.Fatal("NeedsContent false")
	}
	fail := func(context.Context, string) ([]byte, error) { return nil, errors.New("connection refused") }
	err := tb.ResolveRCD(context.Background(), fail)
	if err == nil || !strings.Contains(err.Error(), `"bank"`) || !strings.Contains(err.Error(), "https://brand.example/logo.png") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("ResolveRCD failure: %v", err)
	}
	ok := func(context.Context, string) ([]byte, error) { return []byte("PNG"), nil }
	if err := tb.ResolveRCD(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	d := tb.Decide(netip.Addr{}, nil)
	if string(d.RCD.Passport().RCDI) != `{"/icn":"`+rcd.Digest([]byte("PNG"))+`"}` {
		t.Errorf("rcdi %s", d.RCD.Passport().RCDI)
	}
}
