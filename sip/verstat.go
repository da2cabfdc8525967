package sip

import (
	"bytes"
	"strings"
)

// The verstat parameter carries the terminating side's verification result
// on the caller's number (values TN-Validation-Passed, TN-Validation-Failed,
// No-TN-Validation; 3GPP TS 24.229, ATIS-1000074; where it
// goes and which ones are removed: docs/STANDARDS.md, "verstat"). These
// functions find, remove and place it without allocating.

// NextVerstat finds the first verstat parameter in pkt[start:end] and
// returns its span, from its ';' through its value and the white space
// after it; s == e == 0 when there is none. The name matches in any case,
// with white space allowed around ';' and '=' (RFC 3261 SEMI and EQUAL in
// header parameters; a lenient reader may take it in a URI too) and the
// value optional. In a URI (header false) the value runs to the next ';', '@', '>', '?' or white
// space; among header parameters it is a token or a quoted-string
// (generic-param, RFC 3261 section 25.1).
func NextVerstat(pkt []byte, start, end int, header bool) (s, e int) {
	const name = "verstat"
	stop := ";@>? \t\r\n"
	if header {
		stop = ";, \t\r\n"
	}
	for i := start; i < end; i++ {
		if pkt[i] != ';' {
			continue
		}
		p := skipLWS(pkt, i+1, end)
		if end-p < len(name) || !strings.EqualFold(string(pkt[p:p+len(name)]), name) {
			continue
		}
		p += len(name)
		q := skipLWS(pkt, p, end)
		switch {
		case q >= end || pkt[q] == ';' || header && pkt[q] == ',' || !header && strings.IndexByte("@>?", pkt[q]) >= 0:
			return i, q // a verstat without a value
		case !header && pkt[q] == ',':
			// ";verstat,x" in a user part: no parameter name holds a
			// ',' (RFC 3966), so this is a malformed verstat; it goes
			// with what a lenient reader could take for its value, and
			// the number before it stays whole.
		case pkt[q] != '=':
			continue // another parameter whose name starts with "verstat"
		default:
			q = skipLWS(pkt, q+1, end)
		}
		if header && q < end && pkt[q] == '"' {
			for q++; q < end && pkt[q] != '"'; q++ {
				if pkt[q] == '\\' {
					q++
				}
			}
			return i, skipLWS(pkt, min(q+1, end), end)
		}
		for q < end && strings.IndexByte(stop, pkt[q]) < 0 {
			q++
		}
		return i, skipLWS(pkt, q, end)
	}
	return 0, 0
}

// AppendWithoutVerstat appends pkt[start:end] to dst without its verstat
// parameters (see NextVerstat).
func AppendWithoutVerstat(dst, pkt []byte, start, end int, header bool) []byte {
	for start < end {
		s, e := NextVerstat(pkt, start, end, header)
		if s == e {
			break
		}
		dst = append(dst, pkt[start:s]...)
		start = e
	}
	return append(dst, pkt[start:end]...)
}

// VerstatPoint is where ";verstat=..." goes: after the number of the first
// P-Asserted-Identity that is a telephone number, else of From. It returns
// that identity too and whether its URI is in angle brackets; at is -1
// when neither names a number.
func VerstatPoint(pkt []byte, m *Message) (na NameAddr, at int, bracketed bool) {
	var raw [64]byte
	try := func(u Span) int {
		if _, _, ok := TelephoneNumber(u.In(pkt), raw[:0]); !ok {
			return -1
		}
		b := u.In(pkt)
		if len(b) > 4 && (b[0] == 't' || b[0] == 'T') { // tel:number;params
			for i, c := range b {
				if c == ';' {
					return int(u.Start) + i
				}
			}
			return int(u.End)
		}
		for i, c := range b { // sip:user@host: the parameter joins the user part
			if c == '@' {
				return int(u.Start) + i
			}
		}
		return -1
	}
	// inBrackets: "<" LWS addr-spec LWS ">". A bracket alone or inside
	// the URI (a malformed header the parser let through) counts too:
	// adding a pair there would nest them ("<sip:a@>>") and break the
	// request.
	inBrackets := func(u Span) bool {
		if bytes.ContainsAny(u.In(pkt), "<>") {
			return true
		}
		i, e := int(u.Start)-1, int(u.End)
		for i >= 0 && (pkt[i] == ' ' || pkt[i] == '\t') {
			i--
		}
		for e < len(pkt) && (pkt[e] == ' ' || pkt[e] == '\t') {
			e++
		}
		return i >= 0 && pkt[i] == '<' || e < len(pkt) && pkt[e] == '>'
	}
	for i := 0; i < int(m.NumPAI); i++ {
		if at := try(m.PAI[i].URI); at >= 0 {
			return m.PAI[i], at, inBrackets(m.PAI[i].URI)
		}
	}
	return m.From, try(m.From.URI), inBrackets(m.From.URI)
}
