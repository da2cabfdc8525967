package claims

import (
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/sip"
)

// OrigTN appends the calling number of the INVITE in pkt to dst: the first
// P-Asserted-Identity that is a telephone number (tel, or sip with a number
// user part), else From (RFC 8224 section 8.3, ATIS-1000074 section 5.3.1),
// canonicalised to E.164 digits (docs/API.md, "Telephone numbers", rule
// S). raw is scratch space (cap 64 avoids allocation). ok is false when the
// caller has no number (anonymous, alphanumeric): such a call is not
// signed.
func OrigTN(dst, raw, pkt []byte, m *sip.Message, numbers *e164.Canonicalizer) ([]byte, bool) {
	for i := 0; i < int(m.NumPAI); i++ {
		if n, ok := number(dst, raw, pkt, m.PAI[i].URI, numbers); ok {
			return n, true
		}
	}
	return number(dst, raw, pkt, m.From.URI, numbers)
}

// DestTN appends the called number: from To, not the Request-URI (RFC 8224
// section 8.3).
func DestTN(dst, raw, pkt []byte, m *sip.Message, numbers *e164.Canonicalizer) ([]byte, bool) {
	return number(dst, raw, pkt, m.To.URI, numbers)
}

// number canonicalises the number in the URI u; raw is scratch space for
// the digits as dialled (a caller-owned buffer keeps this allocation-free).
func number(dst, raw, pkt []byte, u sip.Span, numbers *e164.Canonicalizer) ([]byte, bool) {
	d, global, ok := sip.TelephoneNumber(u.In(pkt), raw[:0])
	if !ok {
		return dst, false
	}
	n, err := numbers.Append(dst, d, global)
	if err != nil {
		return dst, false
	}
	return n, true
}
