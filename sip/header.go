package sip

import "bytes"

// parseNameAddr parses a From, To or P-Asserted-Identity value b[s:e]
// (RFC 3261 section 20.10 and 20.20, RFC 3325 section 9.1):
//
//	( name-addr / addr-spec ) *( SEMI param )
//	name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
//
// When the URI is not in angle brackets, parameters after ';' are header
// parameters, not URI parameters (section 20.10).
func parseNameAddr(b []byte, s, e int, na *NameAddr) bool {
	if s >= e {
		return false
	}
	na.Value = Span{int32(s), int32(e)}
	p := s
	if b[p] == '"' {
		q := quotedEnd(b, p, e)
		if q < 0 {
			return false
		}
		p = skipLWS(b, q, e)
		if p >= e || b[p] != '<' {
			return false
		}
	} else {
		// Unquoted display name (*(token LWS)) or a bare addr-spec: a '<'
		// before any ';' means name-addr.
		for q := p; q < e; q++ {
			if b[q] == '<' {
				p = q
				break
			}
			if b[q] == ';' {
				break
			}
		}
	}
	if b[p] == '<' {
		j := bytes.IndexByte(b[p+1:e], '>')
		if j < 0 {
			return false
		}
		us, ue := trimLWS(b, p+1, p+1+j)
		na.URI = Span{int32(us), int32(ue)}
		p += j + 2
	} else {
		q := p
		for q < e && b[q] != ';' {
			q++
		}
		us, ue := trimLWS(b, p, q)
		na.URI = Span{int32(us), int32(ue)}
		p = q
	}
	uri := na.URI.In(b)
	if c := bytes.IndexByte(uri, ':'); c <= 0 {
		return false // an addr-spec is an absolute URI: scheme ":" ...
	}
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
		if hasValue && equalFold(b[ns:ne], "tag") && na.Tag.Empty() {
			na.Tag = Span{int32(vs), int32(ve)}
		}
	}
}

// parsePAI records the values of one P-Asserted-Identity header
// (RFC 3325 section 9.1: PAssertedID = "P-Asserted-Identity" HCOLON
// PAssertedID-value *(COMMA PAssertedID-value)).
func (m *Message) parsePAI(b []byte, vs, ve int) error {
	if vs == ve {
		return errPAI
	}
	for p := vs; p <= ve; {
		e := listElemEnd(b, p, ve)
		if e < 0 {
			return errPAI
		}
		es, ee := trimLWS(b, p, e)
		var na NameAddr
		if !parseNameAddr(b, es, ee, &na) {
			return errPAI
		}
		if m.NumPAI < MaxPAI {
			m.PAI[m.NumPAI] = na
			m.NumPAI++
		}
		m.TotalPAI++
		p = e + 1
	}
	return nil
}

// parseIdentity records the values of one Identity header (RFC 8224
// section 4.1). Each header normally holds one value, but a proxy may have
// joined several with commas (RFC 3261 section 7.3.1), so commas outside
// quotes and angle brackets separate values.
func (m *Message) parseIdentity(b []byte, vs, ve int) error {
	if vs == ve {
		return errIdentity
	}
	for p := vs; p <= ve; {
		e := listElemEnd(b, p, ve)
		if e < 0 {
			return errIdentity
		}
		es, ee := trimLWS(b, p, e)
		if es == ee {
			return errIdentity
		}
		if m.NumIdentity < MaxIdentity {
			m.Identity[m.NumIdentity] = Span{int32(es), int32(ee)}
			m.NumIdentity++
		}
		m.TotalIdentity++
		p = e + 1
	}
	return nil
}

// parseCSeq parses CSeq = "CSeq" HCOLON 1*DIGIT LWS Method (RFC 3261
// section 20.16); the number is below 2**31 (section 8.1.1.5).
func (m *Message) parseCSeq(b []byte, vs, ve int) error {
	p := vs
	for p < ve && isDigit(b[p]) {
		p++
	}
	n, ok := parseUint(b[vs:p], 1<<31-1)
	if !ok {
		return ErrCSeq
	}
	q := skipLWS(b, p, ve)
	if q == p || q >= ve {
		return ErrCSeq
	}
	ms := q
	for q < ve && isToken(b[q]) {
		q++
	}
	if q != ve {
		return ErrCSeq
	}
	m.CSeq = uint32(n)
	m.CSeqMethod = methodOf(b[ms:ve])
	m.CSeqMethodName = Span{int32(ms), int32(ve)}
	return nil
}
