package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/rcd"
)

// Errors returned by Build.
var (
	ErrAttest = errors.New("policy: attestation must be A, B or C")
	ErrPrefix = errors.New("policy: bad source prefix")
	ErrNumber = errors.New("policy: bad number pattern")
	ErrRule   = errors.New("policy: bad rule")
)

// Config is the YAML form of the policy.
//
//	policy:
//	  default: C
//	  rules:
//	    - name: retail
//	      attest: A
//	      sources: [198.18.1.0/24]
//	      numbers: ["+1215555*", "12155550100-12155550199", "+442079460018"]
//	    - name: wholesale
//	      attest: B
//	      sources: [198.18.3.7]
type Config struct {
	Default string       `yaml:"default"`
	Rules   []RuleConfig `yaml:"rules"`
}

// Action is what the appliance does with an initial INVITE that a rule
// matched.
type Action uint8

const (
	Sign         Action = iota // originating side: sign with the rule's attestation (default)
	Verify                     // terminating side: verify, add verstat, forward (RFC 8224 section 6.2.3, ATIS-1000074)
	VerifyReject               // terminating side: verify, reject a failed call with the RFC 8224 code
	Forward                    // neither: forward untouched (counted)
)

func (a Action) String() string {
	switch a {
	case Sign:
		return "sign"
	case Verify:
		return "verify"
	case VerifyReject:
		return "verify-reject"
	case Forward:
		return "forward"
	}
	return "action(?)"
}

func parseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "sign":
		return Sign, nil
	case "verify", "verify-annotate":
		return Verify, nil
	case "verify-reject":
		return VerifyReject, nil
	case "forward":
		return Forward, nil
	}
	return 0, fmt.Errorf("%w: action %q (want sign, verify, verify-reject or forward)", ErrRule, s)
}

// RuleConfig is one rule. Every criterion given must match; a rule with no
// criterion matches every call (a catch-all).
type RuleConfig struct {
	Name    string   `yaml:"name"`
	Action  string   `yaml:"action"`  // sign (default) | verify | verify-reject | forward
	Attest  string   `yaml:"attest"`  // for sign; may be empty for the other actions
	Sources []string `yaml:"sources"` // IP addresses or CIDR prefixes of the trunk
	Numbers []string `yaml:"numbers"` // caller TN inventory, E.164 as given: "E164", "prefix*", "start-end" (see addNumber); the diverting number for div (DecideDiv)

	// Div adds a div PASSporT (RFC 8946) to a retargeted call that
	// carries a SHAKEN Identity (sign rules only; see DecideDiv).
	Div bool `yaml:"div"`
	// DivUnverified is what a div rule does with a retargeted call whose
	// SHAKEN PASSporT is missing or failed verification upstream (a
	// verstat other than TN-Validation-Passed): "sign" (the default: sign
	// it as a call entering unsigned, attestation C) or "forward" (as it
	// came, counted).
	DivUnverified string `yaml:"div_unverified"`
	// RCD is the Rich Call Data the rule's calls carry (RFC 9795).
	RCD *rcd.Config `yaml:"rcd"`
	// RCDPPT is where: "shaken" (in the shaken PASSporT, ATIS-1000094;
	// the default) or "rcd" (a separate rcd PASSporT).
	RCDPPT string `yaml:"rcd_ppt"`
}

// DivUnverified values.
const (
	DivUnverifiedSign    = "sign"
	DivUnverifiedForward = "forward"
)

// Table is a compiled, immutable policy (once ResolveRCD has run).
type Table struct {
	def    byte
	rules  []rule
	hasDiv bool // a rule has div: true
}

type rule struct {
	name     string
	action   Action
	attest   byte
	sources  []netip.Prefix
	exact    []string  // sorted E.164 digits
	prefixes []string  // digit prefixes
	ranges   []tnRange // sorted by (length, lo), merged: disjoint

	div         bool
	divForward  bool // div_unverified: forward
	rcd         *rcd.Claims
	rcdSeparate bool // rcd_ppt: rcd
}

// tnRange is an inclusive range of numbers of one length.
type tnRange struct {
	n      int // digit count
	lo, hi uint64
}

// Decision is the result of Decide.
type Decision struct {
	Action Action
	Attest byte   // 'A', 'B' or 'C' (for Sign)
	Rule   string // name of the rule that matched, "default" when none did

	// For Sign: what the rule adds (nil and false: nothing).
	Div         bool        // a div PASSporT for retargeted calls (DecideDiv)
	DivForward  bool        // div_unverified: forward (else sign)
	RCD         *rcd.Claims // Rich Call Data claims
	RCDSeparate bool        // in an rcd PASSporT (else in the shaken one)
}

// Build compiles cfg; def is used when cfg.Default is empty.
func Build(cfg Config, def string) (*Table, error) {
	if cfg.Default != "" {
		def = cfg.Default
	}
	d, err := attest(def)
	if err != nil {
		return nil, fmt.Errorf("default: %w", err)
	}
	t := &Table{def: d}
	for i, rc := range cfg.Rules {
		r, err := buildRule(rc)
		if err != nil {
			return nil, fmt.Errorf("policy: rule %d (%q): %w", i+1, rc.Name, err)
		}
		t.rules = append(t.rules, r)
		t.hasDiv = t.hasDiv || r.div
	}
	return t, nil
}

func attest(s string) (byte, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "A":
		return 'A', nil
	case "B":
		return 'B', nil
	case "C":
		return 'C', nil
	}
	return 0, fmt.Errorf("%w (got %q)", ErrAttest, s)
}

func buildRule(rc RuleConfig) (rule, error) {
	r := rule{name: rc.Name}
	if r.name == "" {
		return r, fmt.Errorf("%w: a rule needs a name (it is recorded in the audit trail)", ErrRule)
	}
	var err error
	if r.action, err = parseAction(rc.Action); err != nil {
		return r, err
	}
	if r.action == Sign || rc.Attest != "" {
		if r.attest, err = attest(rc.Attest); err != nil {
			return r, err
		}
	}
	for _, s := range rc.Sources {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return r, fmt.Errorf("%w %q: %w", ErrPrefix, s, err)
		}
		r.sources = append(r.sources, p.Masked())
	}
	for _, n := range rc.Numbers {
		if err := r.addNumber(n); err != nil {
			return r, err
		}
	}
	if err := r.addRetargetAndRCD(rc); err != nil {
		return r, err
	}
	slices.Sort(r.exact)
	slices.SortFunc(r.ranges, func(a, b tnRange) int {
		if a.n != b.n {
			return a.n - b.n
		}
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	r.ranges = mergeRanges(r.ranges)
	return r, nil
}

// addRetargetAndRCD compiles div, div_unverified, rcd and rcd_ppt.
func (r *rule) addRetargetAndRCD(rc RuleConfig) error {
	if (rc.Div || rc.RCD != nil) && r.action != Sign {
		return fmt.Errorf("%w: div and rcd are for sign rules, not %s", ErrRule, r.action)
	}
	r.div = rc.Div
	switch strings.ToLower(strings.TrimSpace(rc.DivUnverified)) {
	case "":
	case DivUnverifiedSign:
		if !rc.Div {
			return fmt.Errorf("%w: div_unverified without div: true", ErrRule)
		}
	case DivUnverifiedForward:
		if !rc.Div {
			return fmt.Errorf("%w: div_unverified without div: true", ErrRule)
		}
		r.divForward = true
	default:
		return fmt.Errorf("%w: div_unverified %q (want sign or forward)", ErrRule, rc.DivUnverified)
	}
	switch strings.ToLower(strings.TrimSpace(rc.RCDPPT)) {
	case "", "shaken":
	case "rcd":
		r.rcdSeparate = true
	default:
		return fmt.Errorf("%w: rcd_ppt %q (want shaken or rcd)", ErrRule, rc.RCDPPT)
	}
	if rc.RCD == nil {
		if rc.RCDPPT != "" {
			return fmt.Errorf("%w: rcd_ppt without rcd", ErrRule)
		}
		return nil
	}
	c, err := rcd.Compile(*rc.RCD)
	if err != nil {
		return fmt.Errorf("%w: rcd: %w", ErrRule, err)
	}
	r.rcd = c
	return nil
}

// HasDiv reports whether a rule adds div PASSporTs (the signing path
// looks at Diversion and History-Info only then).
func (t *Table) HasDiv() bool { return t.hasDiv }

// NeedsContent reports whether a rule's rcd links to content, so that
// ResolveRCD must run before the table signs.
func (t *Table) NeedsContent() bool {
	for i := range t.rules {
		if t.rules[i].rcd != nil && t.rules[i].rcd.HasLinks() {
			return true
		}
	}
	return false
}

// ResolveRCD fetches the content every rule's rcd links to and computes
// its rcdi digests (package rcd). It must run before the table is used
// (Holder.Store); a failure, which names the rule and the URL, leaves the
// table unusable: the caller keeps the running one.
func (t *Table) ResolveRCD(ctx context.Context, fetch rcd.Fetch) error {
	for i := range t.rules {
		r := &t.rules[i]
		if r.rcd == nil || !r.rcd.HasLinks() {
			continue
		}
		if err := r.rcd.Resolve(ctx, fetch); err != nil {
			return fmt.Errorf("policy: rule %d (%q): %w", i+1, r.name, err)
		}
	}
	return nil
}

// mergeRanges joins overlapping or adjacent ranges of one length so that the
// sorted result is disjoint and a lookup needs one binary search.
func mergeRanges(in []tnRange) []tnRange {
	out := in[:0]
	for _, x := range in {
		if n := len(out); n > 0 && out[n-1].n == x.n && x.lo <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, x.hi)
			continue
		}
		out = append(out, x)
	}
	return out
}

// addNumber adds one inventory pattern. Numbers are E.164 as given, the
// rule of the HTTP API (e164.AppendGiven: an optional leading '+', the
// separators " -.()" ignored, country code first, 6 to 15 digits, never a
// default country added; docs/API.md, "Telephone numbers"), because the
// calling numbers Decide sees are E.164 already:
//
//   - "PREFIX*": every number starting with PREFIX (e164.AppendGivenPrefix:
//     1 to 15 digits, starting with a country code or with the start of
//     one);
//   - "LOW-HIGH": a range, two numbers of the same length joined by one
//     '-', LOW first: a pattern with exactly one '-' is a range;
//   - anything else: one number (its '-', two or more, are separators:
//     "+1-215-555-0100").
func (r *rule) addNumber(pat string) error {
	bad := func(err error) error { return fmt.Errorf("%w %q: %w", ErrNumber, pat, err) }
	switch {
	case strings.HasSuffix(pat, "*"):
		d, err := e164.AppendGivenPrefix(nil, strings.TrimSpace(strings.TrimSuffix(pat, "*")))
		if err != nil {
			return bad(err)
		}
		r.prefixes = append(r.prefixes, string(d))
	case strings.Count(pat, "-") == 1:
		lo, hi, _ := strings.Cut(pat, "-")
		lo, hi = strings.TrimSpace(lo), strings.TrimSpace(hi)
		a, err := e164.AppendGiven(nil, lo)
		if err != nil {
			return bad(fmt.Errorf("range start (a pattern with one '-' is a range): %w", err))
		}
		b, err := e164.AppendGiven(nil, hi)
		if err != nil {
			return bad(fmt.Errorf("range end: %w", err))
		}
		if len(a) != len(b) || string(a) > string(b) {
			return fmt.Errorf("%w %q: a range needs two numbers of the same length, low first", ErrNumber, pat)
		}
		r.ranges = append(r.ranges, tnRange{n: len(a), lo: atou(string(a)), hi: atou(string(b))})
	default:
		d, err := e164.AppendGiven(nil, strings.TrimSpace(pat))
		if err != nil {
			return bad(err)
		}
		r.exact = append(r.exact, string(d))
	}
	return nil
}

func atou(s string) uint64 {
	var v uint64
	for i := 0; i < len(s); i++ {
		v = v*10 + uint64(s[i]-'0')
	}
	return v
}

// Decide returns the attestation for a call from src whose calling number is
// orig (E.164 digits, no '+'; empty when the caller has no number).
func (t *Table) Decide(src netip.Addr, orig []byte) Decision {
	src = src.Unmap()
	for i := range t.rules {
		r := &t.rules[i]
		if r.matches(src, orig) {
			return r.decision()
		}
	}
	return Decision{Action: Sign, Attest: t.def, Rule: "default"}
}

func (r *rule) decision() Decision {
	return Decision{Action: r.action, Attest: r.attest, Rule: r.name,
		Div: r.div, DivForward: r.divForward, RCD: r.rcd, RCDSeparate: r.rcdSeparate}
}

// DecideDiv is Decide for a retargeted call that carries a SHAKEN
// Identity: the rules are matched on the source and on div, the number
// the call was diverted from (the number the diverting provider vouches
// for, RFC 8946 section 3), not on the caller's. The first rule that
// matches decides; Decision.Div says whether it adds a div PASSporT.
// With no match, the default (no div).
func (t *Table) DecideDiv(src netip.Addr, div []byte) Decision {
	return t.Decide(src, div)
}

// Default is the attestation used when no rule matches.
func (t *Table) Default() byte { return t.def }

// Rules is the number of rules.
func (t *Table) Rules() int { return len(t.rules) }

func (r *rule) matches(src netip.Addr, orig []byte) bool {
	if len(r.sources) > 0 {
		ok := false
		for _, p := range r.sources {
			if p.Contains(src) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.exact)+len(r.prefixes)+len(r.ranges) == 0 {
		return true
	}
	return len(orig) > 0 && r.numberMatches(orig)
}

func (r *rule) numberMatches(orig []byte) bool {
	lo, hi := 0, len(r.exact)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.exact[m] < string(orig) { // compiler: no copy for a comparison
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(r.exact) && r.exact[lo] == string(orig) {
		return true
	}
	for _, p := range r.prefixes {
		if len(orig) >= len(p) && string(orig[:len(p)]) == p {
			return true
		}
	}
	if len(r.ranges) == 0 || len(orig) > 19 {
		return false
	}
	var v uint64
	for _, c := range orig {
		if c < '0' || c > '9' {
			return false
		}
		v = v*10 + uint64(c-'0')
	}
	n := len(orig)
	// Ranges are sorted by (length, lo) and disjoint: the only candidate is
	// the last range of this length starting at or below v.
	i, _ := slices.BinarySearchFunc(r.ranges, tnRange{n: n, lo: v}, func(a, b tnRange) int {
		if a.n != b.n {
			return a.n - b.n
		}
		if a.lo <= b.lo {
			return -1
		}
		return 1
	})
	return i > 0 && r.ranges[i-1].n == n && v <= r.ranges[i-1].hi
}

// Holder holds the running Table and swaps it atomically on reload.
type Holder struct{ p atomic.Pointer[Table] }

// NewHolder returns a Holder serving t.
func NewHolder(t *Table) *Holder {
	h := &Holder{}
	h.p.Store(t)
	return h
}

// Load returns the current table.
func (h *Holder) Load() *Table { return h.p.Load() }

// Store installs t for every call that starts after it returns.
func (h *Holder) Store(t *Table) { h.p.Store(t) }
