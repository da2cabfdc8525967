package e164

import (
	"errors"
	"fmt"
	"strconv"
)

// Limits of a number given in E.164 form (AppendGiven).
const (
	// MinGiven is the fewest digits of an E.164 number: a 2-digit country
	// code and a 4-digit national number (the shortest the numbering-plan
	// metadata allows anywhere: AT, DE, IR; TestMinGiven keeps it so).
	MinGiven = 6
	// MaxGiven is the E.164 maximum, country code included (ITU-T E.164
	// section 6.1).
	MaxGiven = maxDigits
)

// Errors of AppendGiven, besides ErrNotNumber, ErrTooShort and ErrTooLong.
var (
	// ErrCountryCode: the number does not start with an assigned country
	// calling code (a national number written without its trunk prefix).
	ErrCountryCode = errors.New("e164: no country code")
	// ErrTrunkPrefix: the number starts with 0 (a trunk or international
	// prefix), or has a trunk prefix in parentheses ("+44 (0)20 ...").
	ErrTrunkPrefix = errors.New("e164: trunk or international prefix")
)

// GivenError is a refusal of AppendGiven. Its text says what is wrong in
// words a client can act on (the API returns it in SVC4005); errors.Is
// matches ErrNotNumber, ErrTrunkPrefix, ErrCountryCode, ErrTooShort or
// ErrTooLong.
type GivenError struct {
	Reason string
	Err    error
}

func (e *GivenError) Error() string { return e.Reason }
func (e *GivenError) Unwrap() error { return e.Err }

const givenForm = `want E.164 digits, country code first, an optional leading "+" (separators " -.()" are ignored)`

// AppendGiven appends the E.164 digits of tn, a telephone number already
// written in E.164 form, to dst: the form an API client, a JSON claim or a
// configuration gives (ATIS-1000082 and RFC 8224 section 8.3: country code
// first, no '+'). It is the rule for numbers that do not come from a SIP
// URI; Canonicalizer.Append is the rule for those.
//
// Accepted: an optional '+' as the first byte, then ASCII digits, with the
// visual separators space, '-', '.', '(' and ')' anywhere after the '+'
// (removed). The result has MinGiven to MaxGiven digits, does not start
// with 0, and starts with a country calling code the numbering-plan
// metadata knows (every assigned one, non-geographic ones such as 800, 870
// and 882 included). Nothing is ever added or removed: no default country,
// no trunk prefix (a 0 after the country code stays, as Italy needs).
//
// Refused, with a *GivenError: empty input or no digits; any other byte
// (letters, a URI scheme, ';', '/', a no-break space, non-ASCII digits);
// nested or unbalanced parentheses;
// '+' anywhere but first; a number starting with 0 (a national number with
// its trunk prefix); a parenthesised group starting with 0, as in
// "+44 (0)20 7946 0123" (a trunk prefix the separators would otherwise
// splice into the number); no assigned country code at the start (a
// national number such as NANP 2155550100); fewer than MinGiven or more
// than MaxGiven digits.
//
// AppendGiven does not allocate when it accepts tn and dst has room; it
// is safe for concurrent use.
func AppendGiven(dst []byte, tn string) ([]byte, error) {
	if err := loadMetadata(); err != nil {
		return dst, err
	}
	start, digits := len(dst), 0
	inParen, parenStart := false, false
	for i := 0; i < len(tn); i++ {
		c := tn[i]
		switch {
		case c >= '0' && c <= '9':
			if parenStart && c == '0' {
				return dst[:start], &GivenError{`"(0" at byte ` + strconv.Itoa(i) + `: a trunk prefix in parentheses is not part of an E.164 number; write the number without it`, ErrTrunkPrefix}
			}
			parenStart = false
			if digits++; digits <= MaxGiven {
				dst = append(dst, c)
			}
		case c == '+' && i == 0:
		case c == '(' && !inParen:
			inParen, parenStart = true, true
		case c == ')' && inParen:
			inParen, parenStart = false, false
		case c == ' ' || c == '-' || c == '.':
		default:
			what := strconv.Quote(string(rune(c)))
			if c >= 0x80 {
				what = "a non-ASCII byte"
			}
			if c == '+' {
				return dst[:start], &GivenError{`"+" at byte ` + strconv.Itoa(i) + ` is only allowed first; ` + givenForm, ErrNotNumber}
			}
			return dst[:start], &GivenError{what + " at byte " + strconv.Itoa(i) + " is not a digit; " + givenForm, ErrNotNumber}
		}
	}
	n := dst[start:]
	switch {
	case inParen:
		return dst[:start], &GivenError{`"(" is not closed; ` + givenForm, ErrNotNumber}
	case digits > MaxGiven:
		return dst[:start], &GivenError{fmt.Sprintf("has %d digits; an E.164 number has %d to %d", digits, MinGiven, MaxGiven), ErrTooLong}
	case len(n) == 0:
		return dst[:start], &GivenError{"has no digits; " + givenForm, ErrNotNumber}
	case n[0] == '0':
		return dst[:start], &GivenError{"starts with 0: an E.164 number starts with its country code, not a trunk or international prefix", ErrTrunkPrefix}
	case !hasCountryCode(n):
		return dst[:start], &GivenError{fmt.Sprintf("does not start with an assigned country code (%s...): a national number is refused; write the country code first (1 for NANP)", n[:min(3, len(n))]), ErrCountryCode}
	case len(n) < MinGiven:
		return dst[:start], &GivenError{fmt.Sprintf("has %d digits; an E.164 number has %d to %d", len(n), MinGiven, MaxGiven), ErrTooShort}
	}
	return dst, nil
}

// hasCountryCode reports whether digits start with a country calling code
// of the metadata (codes are prefix-free, so at most one matches).
func hasCountryCode(digits []byte) bool {
	v := 0
	for i := 0; i < 3 && i < len(digits); i++ {
		v = v*10 + int(digits[i]-'0')
		if countryCodes[v] {
			return true
		}
	}
	return false
}

// AppendGivenPrefix appends the digits of a number prefix written like a
// number for AppendGiven ("+1215555", "+44 20 7946"), for matching numbers
// that start with it (policy inventories). The rules are AppendGiven's but
// for the length (1 to MaxGiven digits) and the country code: the prefix
// must start with an assigned country code, or, shorter than one, be the
// start of one ("4" and "42" are; "215" and "0" are not).
func AppendGivenPrefix(dst []byte, prefix string) ([]byte, error) {
	start := len(dst)
	out, err := AppendGiven(dst, prefix)
	if err == nil || !errors.Is(err, ErrTooShort) && !errors.Is(err, ErrCountryCode) {
		return out, err
	}
	// Too short for a number, or no whole country code: take the digits
	// again and check them as a prefix.
	dst = dst[:start]
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c >= '0' && c <= '9' {
			dst = append(dst, c)
		}
	}
	if p := dst[start:]; hasCountryCode(p) || startsCountryCode(p) {
		return dst, nil
	}
	return dst[:start], err
}

// startsCountryCode reports whether p (1 or 2 digits) is the start of an
// assigned country code.
func startsCountryCode(p []byte) bool {
	if len(p) >= 3 {
		return false
	}
	v := 0
	for _, c := range p {
		v = v*10 + int(c-'0')
	}
	lo, hi := v, v
	for n := len(p); n < 3; n++ {
		lo, hi = lo*10, hi*10+9
		for cc := lo; cc <= hi; cc++ {
			if countryCodes[cc] {
				return true
			}
		}
	}
	return false
}
