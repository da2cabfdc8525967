package sip

import "bytes"

// listElemEnd returns the offset of the comma ending the list element that
// starts at p, or e if the element runs to e. Commas inside quoted strings
// or angle brackets do not separate elements (RFC 3261 section 7.3.1).
// It returns -1 for an unterminated quoted string or '<'.
func listElemEnd(b []byte, p, e int) int {
	for p < e {
		switch b[p] {
		case ',':
			return p
		case '"':
			p = quotedEnd(b, p, e)
			if p < 0 {
				return -1
			}
			continue
		case '<':
			j := bytes.IndexByte(b[p:e], '>')
			if j < 0 {
				return -1
			}
			p += j
		}
		p++
	}
	return e
}

// quotedEnd returns the offset after the quoted-string starting at b[p]=='"'
// (RFC 3261 section 25.1, quoted-pair is "\" followed by one byte), or -1.
func quotedEnd(b []byte, p, e int) int {
	for p++; p < e; p++ {
		switch b[p] {
		case '\\':
			p++
		case '"':
			return p + 1
		}
	}
	return -1
}

// skipLWS skips linear white space, including folded line breaks
// (RFC 3261 section 25.1: LWS = [*WSP CRLF] 1*WSP).
func skipLWS(b []byte, p, e int) int {
	for p < e && isLWS(b[p]) {
		p++
	}
	return p
}

// trimLWS returns [s, e) without leading and trailing LWS.
func trimLWS(b []byte, s, e int) (int, int) {
	s = skipLWS(b, s, e)
	for e > s && isLWS(b[e-1]) {
		e--
	}
	return s, e
}

// parseUint parses 1 to 10 decimal digits with a value at most max.
func parseUint(d []byte, max uint64) (uint64, bool) {
	if len(d) == 0 || len(d) > 10 {
		return 0, false
	}
	var n uint64
	for _, c := range d {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= max
}

// equalFold compares b with the lower-case ASCII string s, ignoring the
// case of ASCII letters in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool    { return '0' <= c && c <= '9' }
func isHexDigit(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }
func isLWS(c byte) bool      { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
func isToken(c byte) bool    { return tokenChars[c] }

// isHostChar reports bytes allowed in a hostname or IPv4 address
// (RFC 3261 section 25.1 hostport).
func isHostChar(c byte) bool {
	return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'z' || c == '-' || c == '.' || c == '_'
}

// tokenChars: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
// (RFC 3261 section 25.1).
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-.!%*_+`'~" {
		t[c] = true
	}
	return t
}()
