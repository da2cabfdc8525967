package claims

import (
	"fmt"
	"time"

	"github.com/shakenline/shakenline/sip"
)

// StaleDate is what the authentication service does with an INVITE whose
// Date header is outside the freshness window (or does not parse).
type StaleDate uint8

const (
	// StaleRefuse follows RFC 8224 section 4.1: no PASSporT is generated;
	// the INVITE is forwarded unsigned (the default).
	StaleRefuse StaleDate = iota
	// StaleReplace is a deviation from the RFC for upstreams whose clocks
	// are known to be wrong: the Date is replaced by the appliance's now
	// and the call is signed with iat = that Date.
	StaleReplace
)

func (s StaleDate) String() string {
	if s == StaleReplace {
		return "replace"
	}
	return "refuse"
}

// ParseStaleDate parses the stale_date setting: "refuse" (or empty) or
// "replace".
func ParseStaleDate(s string) (StaleDate, error) {
	switch s {
	case "", "refuse":
		return StaleRefuse, nil
	case "replace":
		return StaleReplace, nil
	}
	return 0, fmt.Errorf("claims: stale_date %q: want refuse or replace", s)
}

// DateAction is what signing does with the Date header of an INVITE.
type DateAction uint8

const (
	DateKeep    DateAction = iota // a Date within freshness: iat is its value, the header stays
	DateAdd                       // no Date: one is added with the value now, and iat is now
	DateReplace                   // stale or unparseable Date under StaleReplace: replaced by now, iat is now
	DateStale                     // a Date outside freshness, past or future: not signed
	DateBad                       // a Date that does not parse: not signed
)

// DateRule applies RFC 8224 sections 4.1 and 6.1 to the INVITE in pkt:
// without a Date header the authentication service adds one (RFC 7231
// IMF-fixdate, GMT) and iat is that second (DateAdd); a Date within
// freshness of now (either way) is the iat (DateKeep); a Date outside it,
// or one that does not parse (an empty one too), gets no PASSporT
// (DateStale, DateBad), unless
// stale is StaleReplace: then the Date is replaced by now and iat is now
// (DateReplace). iat is meaningful for DateKeep, DateAdd and DateReplace;
// the Date to write for DateAdd and DateReplace is sip.AppendDate(iat).
func DateRule(pkt []byte, m *sip.Message, now time.Time, freshness time.Duration, stale StaleDate) (iat int64, act DateAction) {
	iat = now.Unix()
	if !m.HasDate {
		return iat, DateAdd
	}
	d, ok := sip.ParseDate(m.Date.In(pkt))
	switch {
	case !ok:
		act = DateBad
	case Stale(d, iat, freshness):
		act = DateStale
	default:
		return d, DateKeep
	}
	if stale == StaleReplace {
		return iat, DateReplace
	}
	return iat, act
}

// Stale reports whether the time date (Unix seconds: a Date header's, or a
// given iat) is outside freshness of now (Unix seconds), in the past or in
// the future; the window's edges are inside. Compared in whole seconds: a
// Duration product would wrap for a date centuries away and pass the
// check.
func Stale(date, now int64, freshness time.Duration) bool {
	w := int64(freshness / time.Second)
	diff := now - date
	return diff > w || diff < -w
}
