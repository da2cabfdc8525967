package e164

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// Errors returned by New and Append. Append wraps them with %w when it has
// more to say (test with errors.Is).
var (
	ErrNotNumber = errors.New("e164: not a telephone number")
	ErrTooLong   = errors.New("e164: number longer than 15 digits")
	ErrTooShort  = errors.New("e164: number too short")
	ErrRegion    = errors.New("e164: unknown region")
)

const (
	maxDigits = 15 // ITU-T E.164 section 6.1: at most 15 digits including the country code
	minNSN    = 2  // shortest national significant number (libphonenumber MIN_LENGTH_FOR_NSN)
	minGlobal = 3  // a 1-digit country code plus minNSN
	maxInput  = 32 // longer national inputs cannot become a 15-digit number
)

// Canonicalizer turns dialled telephone numbers into E.164 digits for one
// default region. It is immutable after New and safe for concurrent use.
type Canonicalizer struct {
	region string
	cc     []byte // country calling code digits, e.g. "44"
	nanp   bool   // North American Numbering Plan (cc 1)

	// idd is the international prefix when the region's metadata gives it
	// as a plain digit string ("00", "011", "810"); nil when it is a
	// pattern (AU, BR, KR, ...), which the slow path handles.
	idd []byte
	// iddRe matches an international prefix given as a pattern; digits it
	// matches take the slow path.
	iddRe *regexp.Regexp

	// plain is set when national-prefix stripping needs no pattern: the
	// national prefix for parsing is absent or an alternation of literal
	// digit strings, without a transform rule. prefixes are those
	// alternatives in pattern order; viable[i] is set when a national
	// number may itself start with prefixes[i][0], so stripping it needs
	// the general pattern check libphonenumber makes.
	plain    bool
	prefixes [][]byte
	viable   []bool
	general  *regexp.Regexp // ^(?:general national number pattern)$

	// strip[n] reports whether a national significant number of n digits
	// left after removing a national prefix is long enough to keep the
	// removal (libphonenumber testNumberLength: possible or too long).
	strip [maxInput + 1]bool
}

var (
	metaOnce sync.Once
	metaErr  error
	metaByID map[string]*phonenumbers.PhoneMetadata
	// countryCodes[cc] is set for every country calling code of the
	// metadata, geographic or not (AppendGiven).
	countryCodes [1000]bool
)

// loadMetadata decodes the phonenumbers territory metadata once; the
// library's MetadataCollection caches without locking, so it is only ever
// called from here, under the Once.
func loadMetadata() error {
	metaOnce.Do(func() {
		coll, err := phonenumbers.MetadataCollection()
		if err != nil {
			metaErr = fmt.Errorf("e164: phonenumbers metadata: %w", err)
			return
		}
		metaByID = make(map[string]*phonenumbers.PhoneMetadata, len(coll.GetMetadata()))
		for _, md := range coll.GetMetadata() {
			if cc := md.GetCountryCode(); cc > 0 && cc < int32(len(countryCodes)) {
				countryCodes[cc] = true
			}
			if id := md.GetId(); len(id) == 2 { // skip "001", non-geographic entities
				metaByID[id] = md
			}
		}
	})
	return metaErr
}

// New returns a Canonicalizer whose national numbers belong to
// defaultCountry, an ISO 3166-1 alpha-2 code such as "US", "GB" or "DE"
// (case-insensitive). It fails with ErrRegion for a code the phonenumbers
// metadata does not know.
func New(defaultCountry string) (*Canonicalizer, error) {
	if err := loadMetadata(); err != nil {
		return nil, err
	}
	region := strings.ToUpper(defaultCountry)
	md := metaByID[region]
	if md == nil {
		return nil, fmt.Errorf("%w %q", ErrRegion, defaultCountry)
	}
	c := &Canonicalizer{
		region: region,
		cc:     strconv.AppendInt(nil, int64(md.GetCountryCode()), 10),
	}
	c.nanp = md.GetCountryCode() == 1
	if p := md.GetInternationalPrefix(); isDigits(p) {
		c.idd = []byte(p)
	} else if p != "" {
		re, err := regexp.Compile("^(?:" + p + ")")
		if err != nil {
			return nil, fmt.Errorf("e164: %s international prefix: %w", region, err)
		}
		c.iddRe = re
	}

	gen := md.GetGeneralDesc()
	pattern := gen.GetNationalNumberPattern()
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		return nil, fmt.Errorf("e164: %s general pattern: %w", region, err)
	}
	c.general = re

	npfp := md.GetNationalPrefixForParsing()
	c.plain = md.GetNationalPrefixTransformRule() == ""
	if c.plain && npfp != "" {
		for _, alt := range strings.Split(npfp, "|") {
			if !isDigits(alt) {
				c.plain = false
				break
			}
			c.prefixes = append(c.prefixes, []byte(alt))
			c.viable = append(c.viable, canStartWith(pattern, alt[0]))
		}
	}
	if !c.plain {
		c.prefixes, c.viable = nil, nil
	}

	// testNumberLength for the general description (number type UNKNOWN).
	possible := gen.GetPossibleLength()
	local := gen.GetPossibleLengthLocalOnly()
	for n := range c.strip {
		c.strip[n] = lengthKeepsStrip(int32(n), possible, local)
	}
	return c, nil
}

// Region is the ISO 3166 code the Canonicalizer was made for.
func (c *Canonicalizer) Region() string { return c.region }

// CountryCode is the default region's calling code, e.g. "44".
func (c *Canonicalizer) CountryCode() string { return string(c.cc) }

// Append appends the E.164 form of a telephone number, as digits without
// '+' (RFC 8224 section 8.3), to dst and returns it.
//
// digits holds only ASCII digits, as sip.TelephoneNumber produces them.
// global reports that the number was written with '+' (or a global
// phone-context): it is then returned unchanged. Otherwise the number was
// dialled in the default region: a number dialled with the region's
// international prefix loses that prefix, and a national number gets the
// country calling code, with the national (trunk) prefix removed the way
// libphonenumber's parser removes it. No number is rejected for being
// invalid in its numbering plan; only the errors below are returned:
// ErrNotNumber (empty or non-digit input), ErrTooShort (fewer than 3
// digits in all, or a national significant number under 2 digits) and
// ErrTooLong (more than 15 digits in all).
//
// See the package documentation for which inputs allocate.
func (c *Canonicalizer) Append(dst, digits []byte, global bool) ([]byte, error) {
	if len(digits) == 0 {
		return dst, ErrNotNumber
	}
	for _, d := range digits {
		if d < '0' || d > '9' {
			return dst, ErrNotNumber
		}
	}
	if global {
		return appendGlobal(dst, digits)
	}
	if len(digits) > maxInput {
		return dst, ErrTooLong
	}
	// Dialled with the international prefix (libphonenumber
	// maybeStripInternationalPrefixAndNormalize): what follows is a
	// country code and number, unless it starts with 0, which no country
	// code does; then the digits are national after all.
	if c.idd != nil && len(digits) > len(c.idd) && hasPrefix(digits, c.idd) && digits[len(c.idd)] != '0' {
		return appendGlobal(dst, digits[len(c.idd):])
	}
	if c.nanp {
		// NANP fast path: NXX-NXX-XXXX, or 1 + ten digits.
		if len(digits) == 10 && digits[0] >= '2' {
			return c.appendNational(dst, digits)
		}
		if len(digits) == 11 && digits[0] == '1' && digits[1] >= '2' {
			return appendGlobal(dst, digits)
		}
	}
	// A national number that begins with the country code may have been
	// written without '+' (libphonenumber maybeExtractCountryCode decides
	// with the numbering plan), and prefix patterns need the regexp
	// engine: these go to the library.
	if !c.plain || hasPrefix(digits, c.cc) || (c.iddRe != nil && c.iddRe.Match(digits)) {
		return c.appendSlow(dst, digits)
	}
	nsn := digits
	for i, p := range c.prefixes {
		if !hasPrefix(digits, p) {
			continue
		}
		rest := digits[len(p):]
		// maybeStripNationalPrefixAndCarrierCode: keep the prefix when the
		// whole number is a viable national number and the rest is not;
		// parseHelper: and when the rest is not of a possible length.
		if c.viable[i] && c.general.Match(digits) && !c.general.Match(rest) {
			break
		}
		if len(rest) < len(c.strip) && c.strip[len(rest)] {
			nsn = rest
		}
		break
	}
	return c.appendNational(dst, nsn)
}

// appendNational appends the country code and the national significant
// number nsn.
func (c *Canonicalizer) appendNational(dst, nsn []byte) ([]byte, error) {
	if len(nsn) < minNSN {
		return dst, ErrTooShort
	}
	if len(c.cc)+len(nsn) > maxDigits {
		return dst, ErrTooLong
	}
	dst = append(dst, c.cc...)
	return append(dst, nsn...), nil
}

// appendGlobal appends a number that already starts with its country code.
func appendGlobal(dst, digits []byte) ([]byte, error) {
	if len(digits) > maxDigits {
		return dst, ErrTooLong
	}
	if len(digits) < minGlobal {
		return dst, ErrTooShort
	}
	return append(dst, digits...), nil
}

// appendSlow canonicalises with phonenumbers.Parse. It allocates.
func (c *Canonicalizer) appendSlow(dst, digits []byte) ([]byte, error) {
	var num phonenumbers.PhoneNumber
	if err := phonenumbers.ParseToNumber(string(digits), c.region, &num); err != nil {
		switch {
		case errors.Is(err, phonenumbers.ErrTooShortNSN), errors.Is(err, phonenumbers.ErrTooShortAfterIDD):
			return dst, fmt.Errorf("%w: %w", ErrTooShort, err)
		case errors.Is(err, phonenumbers.ErrNumTooLong):
			return dst, fmt.Errorf("%w: %w", ErrTooLong, err)
		}
		return dst, fmt.Errorf("%w: %w", ErrNotNumber, err)
	}
	n := len(dst)
	dst = strconv.AppendInt(dst, int64(num.GetCountryCode()), 10)
	dst = append(dst, phonenumbers.GetNationalSignificantNumber(&num)...)
	if len(dst)-n > maxDigits {
		return dst[:n], ErrTooLong
	}
	if len(dst)-n < minGlobal {
		return dst[:n], ErrTooShort
	}
	return dst, nil
}

// lengthKeepsStrip mirrors libphonenumber testNumberLength for the general
// description and reports whether parseHelper keeps a national prefix
// removal that leaves n digits: IS_POSSIBLE or TOO_LONG keep it;
// TOO_SHORT, IS_POSSIBLE_LOCAL_ONLY and INVALID_LENGTH undo it.
func lengthKeepsStrip(n int32, possible, local []int32) bool {
	if len(possible) == 0 || possible[0] == -1 {
		return false
	}
	for _, l := range local {
		if l == n {
			return false
		}
	}
	switch {
	case n < possible[0]:
		return false
	case n > possible[len(possible)-1]:
		return true
	}
	for _, l := range possible {
		if l == n {
			return true
		}
	}
	return false
}

// canStartWith reports whether some string matched by pattern can begin
// with the byte b, by walking the compiled program from its start. It errs
// towards true when the pattern cannot be analysed.
func canStartWith(pattern string, b byte) bool {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return true
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return true
	}
	seen := make([]bool, len(prog.Inst))
	var walk func(pc uint32) bool
	walk = func(pc uint32) bool {
		if seen[pc] {
			return false
		}
		seen[pc] = true
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			return walk(in.Out) || walk(in.Arg)
		case syntax.InstCapture, syntax.InstNop, syntax.InstEmptyWidth:
			return walk(in.Out)
		case syntax.InstMatch, syntax.InstFail:
			return false
		}
		return in.MatchRune(rune(b))
	}
	return walk(uint32(prog.Start))
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func hasPrefix(b, p []byte) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == string(p)
}
