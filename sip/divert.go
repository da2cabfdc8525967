package sip

// The retargeting headers: Diversion (RFC 5806) and History-Info
// (RFC 7044, with the cause URI parameter of RFC 4458). Parse records the
// value of each such header (at most MaxRetargetHeaders of each, counted
// past that); the entries are read on demand, without allocating, by
// Message.Diversions and Message.HistoryInfo (or ParseDiversion and
// ParseHistoryInfo on one value). A value that does not parse fails only
// these readers, never Parse: a call with a malformed Diversion is still
// a call.

// MaxRetargetHeaders bounds the Diversion and the History-Info header
// values one Message records.
const MaxRetargetHeaders = 4

// Diversion is one entry of a Diversion header (RFC 5806 section 3):
//
//	Diversion = "Diversion" ":" 1#(name-addr *( ";" diversion-params ))
//
// The first entry of the first header is the most recent diversion
// (RFC 5806 section 4): URI is the target the call was diverted from.
type Diversion struct {
	Value   Span  // the whole entry
	URI     Span  // the diverting user's addr-spec (the previous target)
	Reason  Span  // the reason parameter's value, quotes removed ("unconditional", "user-busy", ...)
	Counter int32 // the counter parameter, 1 when absent (0..99)
	Privacy Span  // the privacy parameter's value, quotes removed
}

// HistoryInfo is one hi-entry of a History-Info header (RFC 7044
// section 4.1):
//
//	hi-entry = hi-targeted-to-uri *( SEMI hi-param )
//	hi-param = hi-index / hi-target-param / hi-extension
//
// A retarget shows as an entry whose URI carries the cause parameter of
// RFC 4458 (the new target, reached because the previous one answered
// that way, or was forwarded unconditionally: 302); the previous target
// is the entry its mp (or rc) parameter names, else its parent index.
type HistoryInfo struct {
	Value Span  // the whole entry
	URI   Span  // hi-targeted-to-uri, without angle brackets (escaped headers included)
	Index Span  // the index parameter ("1.1.2")
	Cause int32 // the cause URI parameter (RFC 4458: 302, 404, 408, 480, 486, 487, 503), 0 when absent
	MP    Span  // the mp parameter (index of the entry this one was mapped from, RFC 7044 section 4.1)
	RC    Span  // the rc parameter (index of the entry whose Request-URI changed)
	NP    bool  // the np parameter is present
}

// Diversions appends the recorded Diversion entries, in the order they
// appear (the most recent diversion first), to dst. ok is false when one
// of them does not parse or more headers were present than recorded; dst
// then holds the entries before the problem. It does not allocate when
// dst has room.
func (m *Message) Diversions(b []byte, dst []Diversion) (out []Diversion, ok bool) {
	for i := range int(m.NumDiversion) {
		if dst, ok = ParseDiversion(b, m.Diversion[i], dst); !ok {
			return dst, false
		}
	}
	return dst, m.TotalDiversion == m.NumDiversion
}

// HistoryInfo appends the recorded History-Info entries, in the order
// they appear, to dst (ok as for Diversions).
func (m *Message) HistoryInfo(b []byte, dst []HistoryInfo) (out []HistoryInfo, ok bool) {
	for i := range int(m.NumHistoryInfo) {
		if dst, ok = ParseHistoryInfo(b, m.HistoryInfoHdr[i], dst); !ok {
			return dst, false
		}
	}
	return dst, m.TotalHistoryInfo == m.NumHistoryInfo
}

// ParseDiversion appends the entries of one Diversion header value
// v.In(b) to dst. ok is false, with dst holding the entries before it,
// when an entry is not a name-addr (or addr-spec) with well-formed
// parameters or its counter is not 1 or 2 digits.
func ParseDiversion(b []byte, v Span, dst []Diversion) ([]Diversion, bool) {
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
		d := Diversion{Value: Span{int32(es), int32(ee)}, Counter: 1}
		q, ok := entryURI(b, es, ee, &d.URI)
		if !ok {
			return dst, false
		}
		for q = skipLWS(b, q, ee); q < ee; q = skipLWS(b, q, ee) {
			var ns, ne, ps, pe int
			var hasValue bool
			q, ns, ne, ps, pe, hasValue, ok = nextParam(b, q, ee)
			if !ok {
				return dst, false
			}
			if !hasValue {
				continue
			}
			ps, pe = unquoteSpan(b, ps, pe)
			switch name := b[ns:ne]; {
			case equalFold(name, "reason"):
				d.Reason = Span{int32(ps), int32(pe)}
			case equalFold(name, "privacy"):
				d.Privacy = Span{int32(ps), int32(pe)}
			case equalFold(name, "counter"):
				n, ok := parseUint(b[ps:pe], 99)
				if !ok || pe-ps > 2 {
					return dst, false
				}
				d.Counter = int32(n)
			}
		}
		dst = append(dst, d)
		p = le + 1
	}
	return dst, true
}

// ParseHistoryInfo appends the entries of one History-Info header value
// v.In(b) to dst. ok is false, with dst holding the entries before it,
// when an entry's URI is not in angle brackets (RFC 7044 section 4.1:
// hi-targeted-to-uri = name-addr), a parameter is malformed, or a cause
// parameter is not a 3-digit code.
func ParseHistoryInfo(b []byte, v Span, dst []HistoryInfo) ([]HistoryInfo, bool) {
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
		h := HistoryInfo{Value: Span{int32(es), int32(ee)}}
		q, ok := entryURI(b, es, ee, &h.URI)
		if !ok || q == int(h.URI.End) { // no '>': an addr-spec, which History-Info does not allow
			return dst, false
		}
		if c, has := uriParam(h.URI.In(b), "cause"); has {
			n, ok := parseUint(c, 699)
			if !ok || len(c) != 3 || n < 100 {
				return dst, false
			}
			h.Cause = int32(n)
		}
		for q = skipLWS(b, q, ee); q < ee; q = skipLWS(b, q, ee) {
			var ns, ne, ps, pe int
			var hasValue bool
			q, ns, ne, ps, pe, hasValue, ok = nextParam(b, q, ee)
			if !ok {
				return dst, false
			}
			ps, pe = unquoteSpan(b, ps, pe)
			switch name := b[ns:ne]; {
			case equalFold(name, "index") && hasValue:
				h.Index = Span{int32(ps), int32(pe)}
			case equalFold(name, "mp") && hasValue:
				h.MP = Span{int32(ps), int32(pe)}
			case equalFold(name, "rc") && hasValue:
				h.RC = Span{int32(ps), int32(pe)}
			case equalFold(name, "np"):
				h.NP = true
			}
		}
		dst = append(dst, h)
		p = le + 1
	}
	return dst, true
}

// entryURI reads the name-addr (or addr-spec) at b[s:e] into uri and
// returns the offset after it: after '>' for a name-addr, after the
// addr-spec (at its first ';') otherwise.
func entryURI(b []byte, s, e int, uri *Span) (int, bool) {
	var na NameAddr
	if !parseNameAddr(b, s, e, &na) {
		return 0, false
	}
	*uri = na.URI
	p := int(na.URI.End)
	for p < e && b[p] != '>' && b[p] != ';' {
		if !isLWS(b[p]) {
			return 0, false
		}
		p++
	}
	if p < e && b[p] == '>' {
		return p + 1, true
	}
	return p, true
}

// uriParam finds a uri-parameter of a sip, sips or tel URI (RFC 3261
// section 19.1.1, RFC 3966 section 3), before any "?headers".
func uriParam(uri []byte, name string) ([]byte, bool) {
	_, _, params := URIUser(uri)
	if params == nil {
		// A sip URI without a user part: its parameters follow the host.
		for i, c := range uri {
			if c == '?' {
				break
			}
			if c == ';' {
				params = uri[i+1:]
				break
			}
		}
	}
	for i, c := range params {
		if c == '?' {
			params = params[:i]
			break
		}
	}
	return Param(params, name)
}

// unquoteSpan drops the quotes of a quoted-string value.
func unquoteSpan(b []byte, s, e int) (int, int) {
	if e-s >= 2 && b[s] == '"' && b[e-1] == '"' {
		return s + 1, e - 1
	}
	return s, e
}
