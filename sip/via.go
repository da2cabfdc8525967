package sip

import "bytes"

// parseViaLine records one Via header line whose value is b[vs:ve]
// (RFC 3261 section 20.42): Via = ( "Via" / "v" ) HCOLON via-parm *(COMMA via-parm).
// The first via-parm of the first Via line is parsed into m.Via and the
// second one (of that line or the next) into m.Via2, which is left empty
// when it does not parse (the message still does: only a proxy routing a
// response needs it); all others are only counted.
func (m *Message) parseViaLine(b []byte, lineStart, vs, ve, next int) error {
	if vs == ve {
		return errVia
	}
	first := m.ViaCount == 0
	n := int32(0)
	for p := vs; p <= ve; {
		e := listElemEnd(b, p, ve)
		if e < 0 {
			return errVia
		}
		es, ee := trimLWS(b, p, e)
		if es == ee {
			return errVia
		}
		if first && n == 0 {
			if !parseVia(b, es, ee, &m.Via) {
				return errVia
			}
		} else if m.ViaCount+n == 1 && !parseVia(b, es, ee, &m.Via2) {
			m.Via2 = Via{}
		}
		n++
		p = e + 1
	}
	if first {
		m.Via.Line = Span{int32(lineStart), int32(next)}
		m.Via.Alone = n == 1
	}
	m.ViaCount += n
	return nil
}

// parseVia parses one via-parm b[s:e] (RFC 3261 section 20.42 and 25.1):
//
//	via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
//	sent-protocol = protocol-name SLASH protocol-version SLASH transport
//	sent-by       = host [ COLON port ]
//	via-params    = via-ttl / via-maddr / via-received / via-branch / via-extension
//
// plus rport with or without a value (RFC 3581 section 3).
func parseVia(b []byte, s, e int, v *Via) bool {
	v.Value = Span{int32(s), int32(e)}
	p := s
	// protocol-name SLASH protocol-version SLASH transport, LWS around SLASH.
	for i := 0; i < 3; i++ {
		if i > 0 {
			p = skipLWS(b, p, e)
			if p >= e || b[p] != '/' {
				return false
			}
			p = skipLWS(b, p+1, e)
		}
		t := p
		for p < e && isToken(b[p]) {
			p++
		}
		if p == t {
			return false
		}
		if i == 2 {
			v.Transport = Span{int32(t), int32(p)}
		}
	}
	q := skipLWS(b, p, e)
	if q == p || q >= e {
		return false
	}
	p = q
	// sent-by host: hostname / IPv4address / IPv6reference (brackets kept).
	h := p
	if b[p] == '[' {
		j := bytes.IndexByte(b[p:e], ']')
		if j < 2 {
			return false
		}
		for _, c := range b[p+1 : p+j] {
			if !isHexDigit(c) && c != ':' && c != '.' {
				return false
			}
		}
		p += j + 1
	} else {
		for p < e && isHostChar(b[p]) {
			p++
		}
		if p == h {
			return false
		}
	}
	v.Host = Span{int32(h), int32(p)}
	p = skipLWS(b, p, e)
	if p < e && b[p] == ':' {
		p = skipLWS(b, p+1, e)
		d := p
		for p < e && isDigit(b[p]) {
			p++
		}
		port, ok := parseUint(b[d:p], 65535)
		if !ok || port == 0 {
			return false
		}
		v.Port = int32(port)
	}
	// *( SEMI via-params ), each generic-param = token [ EQUAL gen-value ].
	for {
		p = skipLWS(b, p, e)
		if p >= e {
			return true
		}
		var ns, ne, vs, ve int
		var hasValue, ok bool
		p, ns, ne, vs, ve, hasValue, ok = nextParam(b, p, e)
		if !ok {
			return false
		}
		name := b[ns:ne]
		switch {
		case equalFold(name, "branch"):
			if !hasValue || vs == ve {
				return false
			}
			v.Branch = Span{int32(vs), int32(ve)}
		case equalFold(name, "received"):
			if !hasValue || vs == ve {
				return false
			}
			v.Received = Span{int32(vs), int32(ve)}
		case equalFold(name, "rport"):
			v.HasRPort = true
			if hasValue {
				if _, ok := parseUint(b[vs:ve], 65535); !ok {
					return false
				}
				v.RPort = Span{int32(vs), int32(ve)}
			}
		}
	}
}

// nextParam parses one ";name[=value]" starting at b[p] == ';' and ending
// before e. The value is a token, a host (IPv6 with or without brackets) or
// a quoted-string (RFC 3261 section 25.1 gen-value); a quoted value's span
// keeps its quotes. It returns the offset after the parameter.
func nextParam(b []byte, p, e int) (after, ns, ne, vs, ve int, hasValue, ok bool) {
	if p >= e || b[p] != ';' {
		return p, 0, 0, 0, 0, false, false
	}
	p = skipLWS(b, p+1, e)
	ns = p
	for p < e && isToken(b[p]) {
		p++
	}
	ne = p
	if ns == ne {
		return p, 0, 0, 0, 0, false, false
	}
	q := skipLWS(b, p, e)
	if q >= e || b[q] != '=' {
		return p, ns, ne, 0, 0, false, true
	}
	p = skipLWS(b, q+1, e)
	vs = p
	if p < e && b[p] == '"' {
		qe := quotedEnd(b, p, e)
		if qe < 0 {
			return p, 0, 0, 0, 0, false, false
		}
		p = qe
	} else {
		for p < e && (isToken(b[p]) || b[p] == ':' || b[p] == '[' || b[p] == ']') {
			p++
		}
	}
	ve = p
	return p, ns, ne, vs, ve, true, true
}
