package interop

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Country is one national numbering plan of the matrix, with E.164 numbers
// (digits, no '+') from it. Countries whose plan has numbers of several
// lengths list one number per length.
type Country struct {
	ISO      string // ISO 3166 alpha-2
	Name     string
	CC       string   // ITU-T E.164 country code
	Numbers  []string // E.164 digits
	Variable bool     // the plan has numbers of different lengths
}

// Countries is the numbering plan table: 22 countries in all ITU zones
// but 3. Numbers are drama/example style numbers; the appliance
// canonicalises and never judges validity (docs/STANDARDS.md, "Telephone
// numbers").
var Countries = []Country{
	{"US", "United States", "1", []string{"12025550143"}, false},
	{"CA", "Canada", "1", []string{"14165550123"}, false},
	{"MX", "Mexico", "52", []string{"525512345678"}, false},
	{"FR", "France", "33", []string{"33142685300"}, false},
	{"BE", "Belgium", "32", []string{"3222345678", "32470123456"}, true},
	{"CH", "Switzerland", "41", []string{"41442345678"}, false},
	{"LU", "Luxembourg", "352", []string{"35226123456", "352621123456"}, true},
	{"GB", "United Kingdom", "44", []string{"442079460018"}, false},
	{"IE", "Ireland", "353", []string{"35312345678", "353871234567"}, true},
	{"IN", "India", "91", []string{"919876543210"}, false},
	{"SG", "Singapore", "65", []string{"6561234567"}, false},
	{"AU", "Australia", "61", []string{"61212345678"}, false},
	{"ZA", "South Africa", "27", []string{"27211234567"}, false},
	{"AE", "United Arab Emirates", "971", []string{"97121234567", "971501234567"}, true},
	{"JP", "Japan", "81", []string{"81312345678", "819012345678"}, true},
	{"KR", "South Korea", "82", []string{"82212345678"}, false},
	{"HK", "Hong Kong", "852", []string{"85221234567"}, false},
	{"NZ", "New Zealand", "64", []string{"6431234567", "64211234567"}, true},
	{"DE", "Germany", "49", []string{"4930123456", "498912345678", "4915123456789"}, true},
	{"AT", "Austria", "43", []string{"431234567", "436641234567"}, true},
	{"IT", "Italy", "39", []string{"390612345678", "39312345678"}, true},
	{"BR", "Brazil", "55", []string{"5511912345678"}, false},
}

// CountryByISO returns the Countries entry for iso.
func CountryByISO(iso string) (Country, bool) {
	for _, c := range Countries {
		if c.ISO == iso {
			return c, true
		}
	}
	return Country{}, false
}

// Signer implementations of a carrier's originating side.
const (
	SignerAppliance = "appliance"
	SignerKamailio  = "kamailio+secsipid"
)

// Carrier is one participant of the PoC: its own host (network
// namespace), certificate and verification policy.
type Carrier struct {
	Name      string       // short name, also the host name
	Display   string       // human name
	Home      string       // ISO code of its home country (default-country)
	CA        Jurisdiction // who issued its certificate
	Trusts    []Jurisdiction
	Countries []string // ISO codes of the numbers it serves
	Signer    string   // SignerAppliance or SignerKamailio
	Reject    bool     // terminating policy verify-reject instead of verify (annotate)
	TNRange   bool     // its certificate uses the TN-range form of TNAuthList
}

// TrustsCA reports whether c's terminating side accepts certificates from j.
func (c Carrier) TrustsCA(j Jurisdiction) bool { return slices.Contains(c.Trusts, j) }

// Numbers returns the numbers c serves, country by country.
func (c Carrier) Numbers() []Number {
	var out []Number
	for _, iso := range c.Countries {
		co, _ := CountryByISO(iso)
		for _, n := range co.Numbers {
			out = append(out, Number{TN: n, Country: iso})
		}
	}
	return out
}

// Number is a telephone number with its country.
type Number struct {
	TN      string // E.164 digits
	Country string // ISO code
}

// DefaultCarriers is the full matrix: five carriers on three CAs (the
// Global CA, a US-style STI-CA and a French one), one signing with
// Kamailio+secsipid, one rejecting failed calls, one holding a TN-range
// certificate.
func DefaultCarriers() []Carrier {
	return []Carrier{
		{Name: "atlantic", Display: "Atlantic Telecom", Home: "US", CA: "US",
			Trusts: []Jurisdiction{"US", Global}, Countries: []string{"US", "CA", "MX"}, Signer: SignerAppliance},
		{Name: "lumiere", Display: "Lumière Télécom", Home: "FR", CA: "FR",
			Trusts: []Jurisdiction{"FR", Global}, Countries: []string{"FR", "BE", "CH", "LU"}, Signer: SignerAppliance, Reject: true},
		{Name: "meridian", Display: "Meridian Global Voice", Home: "GB", CA: Global,
			Trusts: []Jurisdiction{Global, "US", "FR"}, Countries: []string{"GB", "IE", "IN", "SG", "AU", "ZA", "AE"}, Signer: SignerAppliance},
		{Name: "sakura", Display: "Sakura Networks", Home: "JP", CA: Global,
			Trusts: []Jurisdiction{Global}, Countries: []string{"JP", "KR", "HK", "NZ"}, Signer: SignerAppliance, TNRange: true},
		{Name: "rheinfunk", Display: "Rheinfunk", Home: "DE", CA: Global,
			Trusts: []Jurisdiction{Global, "FR"}, Countries: []string{"DE", "AT", "IT", "BR"}, Signer: SignerKamailio},
	}
}

// Kind is a test case kind.
type Kind string

// Case kinds.
const (
	KindSigned      Kind = "signed"       // signed by the originating carrier, attest from its trunk
	KindUnsigned    Kind = "unsigned"     // from a trunk the originating policy forwards unsigned
	KindTNMismatch  Kind = "tn-mismatch"  // caller outside the TN ranges of a TN-range certificate
	KindTamperOrig  Kind = "tamper-orig"  // caller number changed after signing
	KindTamperDest  Kind = "tamper-dest"  // called number changed after signing
	KindTamperSig   Kind = "tamper-sig"   // one signature byte changed after signing
	KindExpired     Kind = "expired"      // signed with an expired certificate
	KindRevoked     Kind = "revoked"      // signed with a revoked certificate
	KindReplayFirst Kind = "replay-first" // a PASSporT's first use
	KindReplay      Kind = "replay"       // the same PASSporT again, on a new call
	// Forwarded calls (RFC 8946): the caller's carrier signed the call to
	// a number of the forwarding carrier (Call.Via), which forwards it
	// to the terminating carrier with a Diversion header.
	KindForwarded      Kind = "forwarded"        // through the forwarding carrier's retail trunk: a div PASSporT is added
	KindForwardedNoDiv Kind = "forwarded-no-div" // through its wholesale trunk, no div rule: the caller's PASSporT alone
	// Branded calls (RFC 9795): the originating carrier signs Rich Call
	// Data for its first number (the brand).
	KindBranded      Kind = "branded"       // name and logo, the logo unchanged since signing
	KindBrandChanged Kind = "brand-changed" // the logo's content changed after signing: rcdi mismatch
)

// Verstat values (ATIS-1000074).
const (
	Passed = "TN-Validation-Passed"
	Failed = "TN-Validation-Failed"
	None   = "No-TN-Validation"
)

// Call is one planned test call.
type Call struct {
	ID         int
	Kind       Kind
	Orig, Term string // carrier names
	Caller     Number
	Callee     Number
	Trunk      byte   // 'A', 'B', 'C' or 'N' (unsigned trunk)
	Signer     string // who signs: SignerAppliance, SignerKamailio, or "pre-signed"
	Expect     Expect
	// Forwarded calls: the forwarding carrier, whose trunk sends the
	// call, and its number the caller dialled (the PASSporT's dest).
	Via       string
	Forwarder Number
}

// Expect is the outcome a call must have.
type Expect struct {
	Delivered bool   // reached the terminating UAS
	Verstat   string // delivered: the verstat on P-Asserted-Identity
	Attest    string // delivered with a passed PASSporT: its attest
	Code      int    // the verifier's SIP code (0 when passed): the final response when rejected
	Result    string // the verifier's verstat, also when the call is rejected
	Why       string // which check decides
	Name      string // delivered: the verified Rich Call Data name shown as display name ("": none)
	Logo      bool   // delivered: a verified logo in Call-Info
}

func (e Expect) String() string {
	if !e.Delivered {
		return fmt.Sprintf("rejected %d", e.Code)
	}
	s := e.Verstat
	if e.Attest != "" {
		s += " attest " + e.Attest
	}
	if e.Name != "" {
		s += fmt.Sprintf(" name %q", e.Name)
	}
	if e.Logo {
		s += " logo"
	}
	return s
}

// expect derives the outcome from the verifier's check order (verify
// package: orig/dest match, x5u, chain and trust store, validity,
// revocation, TNAuthList, signature, replay) and the terminating policy.
func expect(k Kind, orig, term Carrier, trunk byte, via *Carrier) Expect {
	trusted := term.TrustsCA(orig.CA)
	verstat, code, why := Passed, 0, "chain to a trusted anchor, signature, freshness"
	switch {
	case k == KindForwardedNoDiv:
		verstat, code, why = Failed, 438, "no div PASSporT: the caller's PASSporT names the forwarding number"
	case k == KindForwarded && !trusted:
		verstat, code, why = Failed, 437, fmt.Sprintf("caller's %s-issued certificate not in the trust stores %v", orig.CA, term.Trusts)
	case k == KindForwarded && !term.TrustsCA(via.CA):
		verstat, code, why = Failed, 438, fmt.Sprintf("div PASSporT under a %s-issued certificate, not trusted: no div chain", via.CA)
	case k == KindForwarded:
		why = "div chain: the caller's PASSporT, then the forwarding carrier's div PASSporT"
	case k == KindUnsigned:
		verstat, code, why = None, 428, "no Identity header"
	case k == KindTamperOrig || k == KindTamperDest:
		verstat, code, why = Failed, 438, "orig/dest do not match the call"
	case !trusted:
		verstat, code, why = Failed, 437, fmt.Sprintf("%s-issued certificate not in the trust stores %v", orig.CA, term.Trusts)
	case k == KindExpired:
		verstat, code, why = Failed, 437, "certificate expired"
	case k == KindRevoked:
		verstat, code, why = Failed, 437, "certificate revoked (CRL)"
	case k == KindTNMismatch:
		verstat, code, why = Failed, 438, "caller outside the certificate's TNAuthList ranges"
	case k == KindTamperSig:
		verstat, code, why = Failed, 438, "signature does not verify"
	case k == KindReplay:
		verstat, code, why = Failed, 438, "replayed PASSporT"
	}
	e := Expect{Delivered: true, Verstat: verstat, Code: code, Result: verstat, Why: why}
	if term.Reject && verstat != Passed {
		e.Delivered, e.Verstat = false, ""
	}
	if e.Delivered && verstat == Passed {
		e.Attest = string(trunk)
		switch k {
		case KindBranded:
			e.Name, e.Logo, e.Why = orig.Display, true, why+"; rcd: name and logo match their rcdi digests"
		case KindBrandChanged:
			e.Why = why + "; rcd: the logo does not match its rcdi digest, nothing shown"
		}
	}
	return e
}

// BrandNumber is the number a carrier signs Rich Call Data for (its
// Display as the name, a logo in its repository): its first number with
// other last two digits, a number of its own that no other call of the
// plan uses (inside the 100-number block of a TN-range certificate).
func BrandNumber(c Carrier) Number { return brandVariant(c, 0) }

// BrandChangingNumber is the brand number whose logo changes after the
// signer loaded it.
func BrandChangingNumber(c Carrier) Number { return brandVariant(c, 1) }

// brandVariant is the i-th of c's first number with its last two digits
// replaced that is no number of Countries.
func brandVariant(c Carrier, i int) Number {
	n := c.Numbers()[0]
	for d := 77; d < 100; d++ {
		tn := n.TN[:len(n.TN)-2] + strconv.Itoa(d)
		if slices.ContainsFunc(Countries, func(co Country) bool { return slices.Contains(co.Numbers, tn) }) {
			continue
		}
		if i == 0 {
			n.TN = tn
			return n
		}
		i--
	}
	panic("interop: no brand number left")
}

// Plan builds the call list for carriers: for every ordered pair every
// number the originating carrier serves calls a number of the terminating
// one (attest A, B, C in turn), plus one unsigned call; then per
// terminating carrier the negative cases, sent by a Global CA carrier, and
// the TN-range mismatch from each TN-range carrier.
func Plan(carriers []Carrier) []Call {
	var calls []Call
	byName := map[string]Carrier{}
	for _, c := range carriers {
		byName[c.Name] = c
	}
	add := func(c Call, o, t Carrier) {
		c.ID = len(calls) + 1
		c.Orig, c.Term = o.Name, t.Name
		if c.Signer == "" {
			c.Signer = o.Signer
		}
		var via *Carrier
		if v, ok := byName[c.Via]; ok {
			via = &v
		}
		c.Expect = expect(c.Kind, o, t, c.Trunk, via)
		calls = append(calls, c)
	}
	for _, o := range carriers {
		for _, t := range carriers {
			if o.Name == t.Name {
				continue
			}
			tn := t.Numbers()
			for k, n := range o.Numbers() {
				add(Call{Kind: KindSigned, Caller: n, Callee: tn[k%len(tn)], Trunk: "ABC"[k%3]}, o, t)
			}
			add(Call{Kind: KindUnsigned, Caller: o.Numbers()[0], Callee: tn[len(tn)-1], Trunk: 'N'}, o, t)
		}
	}
	for _, t := range carriers {
		var src *Carrier
		for i := range carriers {
			if o := carriers[i]; o.CA == Global && o.Name != t.Name && o.Signer == SignerAppliance && !o.TNRange {
				src = &carriers[i]
				break
			}
		}
		if src == nil {
			for i := range carriers {
				if o := carriers[i]; o.Name != t.Name && o.Signer == SignerAppliance {
					src = &carriers[i]
					break
				}
			}
		}
		if src != nil {
			on, tn := src.Numbers(), t.Numbers()
			for i, k := range []Kind{KindTamperOrig, KindTamperDest, KindTamperSig, KindExpired, KindRevoked, KindReplayFirst, KindReplay} {
				c := Call{Kind: k, Caller: on[i%len(on)], Callee: tn[i%len(tn)], Trunk: 'A', Signer: "pre-signed"}
				if k == KindReplay { // the same PASSporT on a new call between the same numbers
					prev := calls[len(calls)-1]
					c.Caller, c.Callee = prev.Caller, prev.Callee
				}
				add(c, *src, t)
			}
		}
		for _, o := range carriers {
			if o.TNRange && o.Name != t.Name {
				add(Call{Kind: KindTNMismatch, Caller: outside(o), Callee: t.Numbers()[0], Trunk: 'A'}, o, t)
			}
		}
		// Forwarded calls: through each forwarding carrier that signs
		// with the appliance, from another carrier (one the terminating
		// carrier trusts when there is one; the terminating one itself
		// when there are only two), with and without the div rule.
		for _, f := range carriers {
			if f.Name == t.Name || f.Signer != SignerAppliance {
				continue
			}
			o, found := t, false // a caller's carrier the terminating one trusts, so the div chain decides
			for _, c := range carriers {
				if c.Name != f.Name && c.Name != t.Name && (!found || !t.TrustsCA(o.CA) && t.TrustsCA(c.CA)) {
					o, found = c, true
				}
			}
			for _, k := range []Kind{KindForwarded, KindForwardedNoDiv} {
				trunk := byte('A')
				if k == KindForwardedNoDiv {
					trunk = 'B'
				}
				add(Call{Kind: k, Caller: o.Numbers()[0], Callee: t.Numbers()[0], Trunk: trunk, Signer: "pre-signed",
					Via: f.Name, Forwarder: f.Numbers()[0]}, o, t)
			}
		}
		// Branded calls from each carrier that signs with the appliance.
		for _, o := range carriers {
			if o.Name == t.Name || o.Signer != SignerAppliance {
				continue
			}
			add(Call{Kind: KindBranded, Caller: BrandNumber(o), Callee: t.Numbers()[0], Trunk: 'A'}, o, t)
			add(Call{Kind: KindBrandChanged, Caller: BrandChangingNumber(o), Callee: t.Numbers()[0], Trunk: 'A'}, o, t)
		}
	}
	return calls
}

// outside returns a number of o's home country that its TN ranges do not
// cover (same length as its first number, another block).
func outside(o Carrier) Number {
	n := o.Numbers()[0]
	b := []byte(n.TN)
	i := len(b) - 3 // the hundreds digit leaves the 100-number block
	b[i] = '0' + (b[i]-'0'+5)%10
	return Number{TN: string(b), Country: n.Country}
}

// TNRanges returns the TN-range TNAuthList of a TN-range carrier: the
// 100-number block around each of its numbers.
func TNRanges(c Carrier) []string {
	var out []string
	for _, n := range c.Numbers() {
		out = append(out, n.TN[:len(n.TN)-2]+"00")
	}
	return out
}

// Summary of a plan: carriers, countries, cases.
func Summary(carriers []Carrier, calls []Call) string {
	countries := map[string]bool{}
	for _, c := range calls {
		countries[c.Caller.Country], countries[c.Callee.Country] = true, true
	}
	kinds := map[Kind]int{}
	for _, c := range calls {
		kinds[c.Kind]++
	}
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%s=%d", k, n))
	}
	slices.Sort(ks)
	return fmt.Sprintf("%d carriers, %d countries, %d calls (%s)", len(carriers), len(countries), len(calls), strings.Join(ks, " "))
}
