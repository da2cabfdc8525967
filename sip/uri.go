package sip

import "bytes"

// URIUser splits a SIP, SIPS or tel URI (the addr-spec, without angle
// brackets) without allocating:
//
//   - sip:/sips: (RFC 3261 section 19.1.1): user is the user part without
//     password and without user parameters (";isub=...", ";phone-context=..."
//     of a telephone-subscriber); params are the uri-parameters after the
//     host, without the leading ';' and without "?headers".
//   - tel: (RFC 3966 section 3): user is the number (global "+..." or
//     local), params are its parameters without the leading ';'.
//
// scheme is returned as written (compare it case-insensitively). For other
// schemes, or a SIP URI without a user part, user and params are nil.
func URIUser(uri []byte) (scheme, user, params []byte) {
	scheme, user, _, params = splitURI(uri)
	return scheme, user, params
}

// splitURI is URIUser that also returns the user parameters of a SIP URI
// (everything after the first ';' of the user part).
func splitURI(uri []byte) (scheme, user, userParams, params []byte) {
	c := bytes.IndexByte(uri, ':')
	if c <= 0 {
		return nil, nil, nil, nil
	}
	scheme = uri[:c]
	rest := uri[c+1:]
	switch {
	case equalFold(scheme, "tel"):
		if i := bytes.IndexByte(rest, ';'); i >= 0 {
			return scheme, rest[:i], nil, rest[i+1:]
		}
		return scheme, rest, nil, nil
	case equalFold(scheme, "sip"), equalFold(scheme, "sips"):
	default:
		return scheme, nil, nil, nil
	}
	if q := bytes.IndexByte(rest, '?'); q >= 0 {
		rest = rest[:q] // RFC 3261 section 19.1.1 headers
	}
	at := bytes.IndexByte(rest, '@')
	hostport := rest
	if at >= 0 {
		user = rest[:at]
		hostport = rest[at+1:]
		if i := bytes.IndexByte(user, ';'); i >= 0 {
			userParams = user[i+1:]
			user = user[:i]
		}
		if i := bytes.IndexByte(user, ':'); i >= 0 {
			user = user[:i] // ":password" (deprecated, section 22.1)
		}
	}
	if i := bytes.IndexByte(hostport, ';'); i >= 0 {
		params = hostport[i+1:]
	}
	return scheme, user, userParams, params
}

// Param finds the parameter name (lower-case ASCII, matched
// case-insensitively) in a ';'-separated parameter list such as the params
// returned by URIUser, with or without a leading ';'. value is the raw
// value (quotes kept, nil for a parameter without '='); ok reports whether
// the parameter is present.
func Param(params []byte, name string) (value []byte, ok bool) {
	for len(params) > 0 {
		var p []byte
		if i := bytes.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			p, params = params, nil
		}
		n := p
		var v []byte
		if i := bytes.IndexByte(p, '='); i >= 0 {
			n, v = p[:i], p[i+1:]
		}
		if equalFold(bytes.TrimSpace(n), name) {
			if v != nil {
				v = bytes.TrimSpace(v)
			}
			return v, true
		}
	}
	return nil, false
}

// TelephoneNumber extracts the telephone number from uri (an addr-spec
// without angle brackets) and appends its digits, without '+' or visual
// separators, to dst. It does not allocate when dst has room.
//
// Accepted forms:
//
//   - tel:+1-215-555-0123 (RFC 3966 global number): global=true.
//   - tel:2155550123;phone-context=+1 (local number, RFC 3966 section 5.1.5,
//     with a global-number-digits context): the context digits are
//     prefixed and global=true.
//   - tel:5550123;phone-context=example.com (domain context), or a local
//     number without phone-context: the digits, global=false.
//   - sip:/sips: whose user part is a telephone number: digits with an
//     optional leading '+' and visual separators "-.()" (RFC 3261 section
//     19.1.6; user=phone is accepted but not required). User parameters
//     after ';' are ignored except a phone-context that is a global number,
//     which is applied as for tel:.
//
// ok is false, and dst is returned unchanged, for anything else: anonymous,
// alphanumeric or empty users, '*' '#' or hex digits (local dial strings),
// other schemes.
func TelephoneNumber(uri []byte, dst []byte) (num []byte, global bool, ok bool) {
	scheme, user, userParams, params := splitURI(uri)
	if len(user) == 0 {
		return dst, false, false
	}
	ctxParams := params
	if !equalFold(scheme, "tel") {
		ctxParams = userParams
	}
	n := len(dst)
	if user[0] == '+' {
		dst, ok = appendPhoneDigits(dst, user[1:])
		if !ok {
			return dst[:n], false, false
		}
		return dst, true, true
	}
	// Local number: RFC 3966 section 5.1.5 phone-context.
	if ctx, has := Param(ctxParams, "phone-context"); has && len(ctx) > 0 && ctx[0] == '+' {
		dst, ok = appendPhoneDigits(dst, ctx[1:])
		if !ok {
			return dst[:n], false, false
		}
		global = true
	}
	dst, ok = appendPhoneDigits(dst, user)
	if !ok {
		return dst[:n], false, false
	}
	return dst, global, true
}

// appendPhoneDigits appends the digits of s, which may hold visual
// separators (RFC 3966 section 3: "-" / "." / "(" / ")"), to dst. It fails
// on any other byte or when s has no digit.
func appendPhoneDigits(dst, s []byte) ([]byte, bool) {
	digits := 0
	for _, c := range s {
		switch {
		case isDigit(c):
			dst = append(dst, c)
			digits++
		case c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return dst, false
		}
	}
	return dst, digits > 0
}
