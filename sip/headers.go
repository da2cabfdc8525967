package sip

// NextHeader finds the next header line called name (lower-case; compact
// is its compact form, or "") in the header section of b, the message m
// was parsed from, at or after offset from (0: from the first header). It
// returns the whole line, name through its line end, and the value
// without surrounding LWS; line is empty when there is none. For headers
// Parse does not record (Call-Info on the terminating side); it does not
// allocate.
func NextHeader(b []byte, m *Message, from int, name, compact string) (line, value Span) {
	p := int(m.StartLine.End)
	if p < 0 || p > len(b) {
		return Span{}, Span{}
	}
	p = lineEnd(b, p)
	if from > p {
		p = from
	}
	end := int(m.HeadersEnd)
	if end > len(b) {
		end = len(b)
	}
	for p < end {
		le, next, ok := logicalLine(b, p)
		if !ok {
			return Span{}, Span{}
		}
		n := p
		for n < le && isToken(b[n]) {
			n++
		}
		c := n
		for c < le && (b[c] == ' ' || b[c] == '\t') {
			c++
		}
		if c < le && b[c] == ':' && (equalFold(b[p:n], name) || compact != "" && equalFold(b[p:n], compact)) {
			vs, ve := trimLWS(b, c+1, le)
			return Span{int32(p), int32(next)}, Span{int32(vs), int32(ve)}
		}
		p = next
	}
	return Span{}, Span{}
}

// lineEnd returns the offset after the line break that ends the line
// holding off.
func lineEnd(b []byte, off int) int {
	for i := off; i < len(b); i++ {
		if b[i] == '\n' {
			return i + 1
		}
	}
	return len(b)
}

// CallInfo is one info element of a Call-Info header (RFC 3261 section
// 20.9, RFC 9796):
//
//	info       = LAQUOT absoluteURI RAQUOT *( SEMI info-param )
//	info-param = ( "purpose" EQUAL ( "icon" / "info" / "card" / token ) ) / generic-param
type CallInfo struct {
	Value   Span // the whole element
	URI     Span // the absoluteURI, without angle brackets
	Purpose Span // the purpose parameter's value ("icon", "jcard", ...)
	// RCD reports a parameter RFC 9796 defines for Rich Call Data
	// (call-reason, verified, integrity): a claim about the caller that
	// only a verification service may make.
	RCD bool
}

// ParseCallInfo appends the elements of one Call-Info header value
// v.In(b) to dst; ok is false, with dst holding the elements before it,
// for an element that is not an absolute URI in angle brackets with
// well-formed parameters.
func ParseCallInfo(b []byte, v Span, dst []CallInfo) ([]CallInfo, bool) {
	s, e := int(v.Start), int(v.End)
	if s < 0 || e > len(b) || s >= e {
		return dst, false
	}
	for p := s; p <= e; {
		le := listElemEnd(b, p, e)
		if le < 0 {
			return dst, false
		}
		es, ee := trimLWS(b, p, le)
		if es >= ee || b[es] != '<' {
			return dst, false
		}
		ci := CallInfo{Value: Span{int32(es), int32(ee)}}
		q := es + 1
		for q < ee && b[q] != '>' {
			q++
		}
		if q >= ee {
			return dst, false
		}
		us, ue := trimLWS(b, es+1, q)
		ci.URI = Span{int32(us), int32(ue)}
		for q = skipLWS(b, q+1, ee); q < ee; q = skipLWS(b, q, ee) {
			var ns, ne, ps, pe int
			var hasValue, ok bool
			q, ns, ne, ps, pe, hasValue, ok = nextParam(b, q, ee)
			if !ok {
				return dst, false
			}
			switch name := b[ns:ne]; {
			case equalFold(name, "purpose") && hasValue:
				ps, pe = unquoteSpan(b, ps, pe)
				ci.Purpose = Span{int32(ps), int32(pe)}
			case equalFold(name, "call-reason"), equalFold(name, "verified"), equalFold(name, "integrity"):
				ci.RCD = true
			}
		}
		dst = append(dst, ci)
		p = le + 1
	}
	return dst, true
}
