package sip

import (
	"bytes"
	"errors"
)

// Sentinel errors returned by Message.Parse. Parse returns either one of
// these or a preallocated error that wraps one of them with a more precise
// message (test with errors.Is); it never allocates an error.
var (
	ErrTruncated     = errors.New("sip: truncated message")
	ErrTooLarge      = errors.New("sip: message too large")
	ErrStartLine     = errors.New("sip: malformed start line")
	ErrHeader        = errors.New("sip: malformed or missing header")
	ErrContentLength = errors.New("sip: bad Content-Length")
	ErrCSeq          = errors.New("sip: bad CSeq")
)

// parseError is a statically allocated error with a precise message that
// unwraps to one of the sentinels, so Parse can say what was wrong without
// allocating.
type parseError struct {
	msg  string
	kind error
}

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return e.kind }

var (
	errNoHeaderEnd   = &parseError{"sip: no empty line after the headers", ErrTruncated}
	errBodyShort     = &parseError{"sip: Content-Length exceeds the data", ErrTruncated}
	errHeaderName    = &parseError{"sip: malformed header name", ErrHeader}
	errHeaderColon   = &parseError{"sip: header line without colon", ErrHeader}
	errVia           = &parseError{"sip: malformed Via", ErrHeader}
	errFrom          = &parseError{"sip: malformed From", ErrHeader}
	errTo            = &parseError{"sip: malformed To", ErrHeader}
	errPAI           = &parseError{"sip: malformed P-Asserted-Identity", ErrHeader}
	errCallID        = &parseError{"sip: malformed Call-ID", ErrHeader}
	errIdentity      = &parseError{"sip: malformed Identity", ErrHeader}
	errMaxForwards   = &parseError{"sip: malformed Max-Forwards", ErrHeader}
	errDuplicate     = &parseError{"sip: duplicate single-valued header", ErrHeader}
	errMissingVia    = &parseError{"sip: request without Via", ErrHeader}
	errMissingFrom   = &parseError{"sip: request without From", ErrHeader}
	errMissingTo     = &parseError{"sip: request without To", ErrHeader}
	errMissingCallID = &parseError{"sip: request without Call-ID", ErrHeader}
	errMissingCSeq   = &parseError{"sip: request without CSeq", ErrHeader}
	errCSeqMethod    = &parseError{"sip: CSeq method differs from the request method", ErrCSeq}
	errCLDuplicate   = &parseError{"sip: duplicate Content-Length", ErrContentLength}
	errCSeqDuplicate = &parseError{"sip: duplicate CSeq", ErrCSeq}
)

// Header kinds the parser records. The bit values double as the "seen" mask
// used to reject duplicates of single-valued headers.
const (
	hdrOther uint16 = 0
	hdrVia   uint16 = 1 << iota
	hdrFrom
	hdrTo
	hdrPAI
	hdrCallID
	hdrCSeq
	hdrDate
	hdrIdentity
	hdrContentLength
	hdrMaxForwards
)

// single-valued headers that must not repeat (RFC 3261 section 7.3.1: only
// headers whose grammar is a comma-separated list may appear several times).
// A second From, To, Call-ID, CSeq, Content-Length or Max-Forwards makes the
// message ambiguous (which From would be signed? which Content-Length frames
// the body?), so it is rejected rather than guessed at.
const singleValued = hdrFrom | hdrTo | hdrCallID | hdrCSeq | hdrContentLength | hdrMaxForwards

// Parse parses the SIP message in b (RFC 3261 section 7) and fills m with
// offsets into b. m is reset first. Parse does not allocate and does not
// keep b; the offsets are valid for b or any byte-identical copy of it.
//
// See the package documentation for what is accepted (line folding, bare
// LF) and what each error means.
func (m *Message) Parse(b []byte) error {
	*m = Message{ContentLength: -1, MaxForwards: -1}
	if len(b) > MaxMessage {
		return ErrTooLarge
	}
	// RFC 3261 section 7.5: CRLFs before the start line (keep-alives,
	// RFC 5626 section 4.4.1) are ignored.
	p := 0
	for p < len(b) && (b[p] == '\r' || b[p] == '\n') {
		p++
	}
	if p == len(b) {
		return ErrTruncated
	}
	nl := bytes.IndexByte(b[p:], '\n')
	if nl < 0 {
		return ErrTruncated
	}
	end := p + nl
	next := end + 1
	if end > p && b[end-1] == '\r' {
		end--
	}
	if err := m.parseStartLine(b, p, end); err != nil {
		return err
	}
	p = next

	var seen uint16
	for {
		if p >= len(b) {
			return errNoHeaderEnd
		}
		// The empty line (RFC 3261 section 7: CRLF after the last header).
		if b[p] == '\n' {
			m.HeadersEnd = int32(p)
			p++
			break
		}
		if b[p] == '\r' {
			if p+1 >= len(b) {
				return errNoHeaderEnd
			}
			if b[p+1] == '\n' {
				m.HeadersEnd = int32(p)
				p += 2
				break
			}
		}
		end, next, ok := logicalLine(b, p)
		if !ok {
			return errNoHeaderEnd
		}
		kind, err := m.parseHeader(b, p, end, next)
		if err != nil {
			return err
		}
		if kind&singleValued != 0 && seen&kind != 0 {
			switch kind {
			case hdrContentLength:
				return errCLDuplicate
			case hdrCSeq:
				return errCSeqDuplicate
			}
			return errDuplicate
		}
		seen |= kind
		p = next
	}

	// Message body (RFC 3261 section 7.4 and 18.3): framed by Content-Length
	// when present; a datagram without it carries the rest as body. Bytes
	// past Content-Length in a datagram are ignored (section 18.3).
	if m.ContentLength >= 0 {
		if int(m.ContentLength) > len(b)-p {
			return errBodyShort
		}
		m.Body = Span{int32(p), int32(p) + m.ContentLength}
	} else {
		m.Body = Span{int32(p), int32(len(b))}
	}

	if m.IsRequest {
		// RFC 3261 section 8.1.1: the minimum set of header fields of a
		// request (Max-Forwards is also listed there, but stateless
		// forwarders tolerate its absence, so it is not enforced).
		switch {
		case seen&hdrVia == 0:
			return errMissingVia
		case seen&hdrFrom == 0:
			return errMissingFrom
		case seen&hdrTo == 0:
			return errMissingTo
		case seen&hdrCallID == 0:
			return errMissingCallID
		case seen&hdrCSeq == 0:
			return errMissingCSeq
		}
		// RFC 3261 section 20.16: the CSeq method MUST match the request's.
		if m.CSeqMethod != m.Method {
			return errCSeqMethod
		}
		if m.Method == MethodOther && !bytes.Equal(m.CSeqMethodName.In(b), m.MethodName.In(b)) {
			return errCSeqMethod
		}
	}
	return nil
}

// logicalLine finds the end of the header line starting at p, following
// folded continuation lines (RFC 3261 section 7.3.1: a line break followed
// by SP or HTAB continues the value). end is the offset of the line
// terminator (CR of CRLF, or a bare LF), next the offset after it.
func logicalLine(b []byte, p int) (end, next int, ok bool) {
	lineStart := p
	for {
		i := bytes.IndexByte(b[p:], '\n')
		if i < 0 {
			return 0, 0, false
		}
		nl := p + i
		if nl+1 < len(b) && (b[nl+1] == ' ' || b[nl+1] == '\t') {
			p = nl + 1
			continue
		}
		end = nl
		if end > lineStart && b[end-1] == '\r' {
			end--
		}
		return end, nl + 1, true
	}
}

// parseStartLine parses b[s:e], the Request-Line (RFC 3261 section 7.1) or
// Status-Line (section 7.2), without its line terminator.
func (m *Message) parseStartLine(b []byte, s, e int) error {
	m.StartLine = Span{int32(s), int32(e)}
	line := b[s:e]
	// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
	if len(line) >= 8 && isSIPVersion(line[:7]) && line[7] == ' ' {
		if len(line) < 11 || !isDigit(line[8]) || !isDigit(line[9]) || !isDigit(line[10]) {
			return ErrStartLine
		}
		code := int32(line[8]-'0')*100 + int32(line[9]-'0')*10 + int32(line[10]-'0')
		if code < 100 || code > 699 {
			return ErrStartLine
		}
		m.StatusCode = code
		r := s + 11
		if r < e {
			if b[r] != ' ' {
				return ErrStartLine
			}
			r++
		}
		m.Reason = Span{int32(r), int32(e)}
		return nil
	}
	// Request-Line = Method SP Request-URI SP SIP-Version
	i := 0
	for i < len(line) && isToken(line[i]) {
		i++
	}
	if i == 0 || i >= len(line) || line[i] != ' ' {
		return ErrStartLine
	}
	m.MethodName = Span{int32(s), int32(s + i)}
	m.Method = methodOf(line[:i])
	j := bytes.IndexByte(line[i+1:], ' ')
	if j <= 0 {
		return ErrStartLine
	}
	uriEnd := i + 1 + j
	if len(line)-(uriEnd+1) != 7 || !isSIPVersion(line[uriEnd+1:]) {
		return ErrStartLine
	}
	for _, c := range line[i+1 : uriEnd] {
		if c <= ' ' || c == 0x7f {
			return ErrStartLine
		}
	}
	m.RequestURI = Span{int32(s + i + 1), int32(s + uriEnd)}
	m.IsRequest = true
	return nil
}

// isSIPVersion reports whether v is "SIP/2.0"; RFC 3261 section 7.1 makes
// the version case-insensitive.
func isSIPVersion(v []byte) bool {
	return len(v) == 7 && v[0]|0x20 == 's' && v[1]|0x20 == 'i' && v[2]|0x20 == 'p' &&
		v[3] == '/' && v[4] == '2' && v[5] == '.' && v[6] == '0'
}

// methodOf maps a method token to a Method. Method names are
// case-sensitive (RFC 3261 section 7.1).
func methodOf(t []byte) Method {
	switch string(t) { // no allocation: the compiler compares in place
	case "INVITE":
		return MethodInvite
	case "ACK":
		return MethodAck
	case "BYE":
		return MethodBye
	case "CANCEL":
		return MethodCancel
	case "OPTIONS":
		return MethodOptions
	case "REGISTER":
		return MethodRegister
	case "PRACK":
		return MethodPrack
	case "UPDATE":
		return MethodUpdate
	case "INFO":
		return MethodInfo
	}
	return MethodOther
}

// headerKind maps a header name (full or compact form, RFC 3261 section
// 7.3.3 and RFC 8224 section 4.1) to the kind the parser records.
// Names are case-insensitive (RFC 3261 section 7.3.1).
func headerKind(n []byte) uint16 {
	switch len(n) {
	case 1:
		switch n[0] | 0x20 {
		case 'v':
			return hdrVia
		case 'f':
			return hdrFrom
		case 't':
			return hdrTo
		case 'i':
			return hdrCallID
		case 'l':
			return hdrContentLength
		case 'y':
			return hdrIdentity
		}
	case 2:
		if equalFold(n, "to") {
			return hdrTo
		}
	case 3:
		if equalFold(n, "via") {
			return hdrVia
		}
	case 4:
		switch {
		case equalFold(n, "from"):
			return hdrFrom
		case equalFold(n, "cseq"):
			return hdrCSeq
		case equalFold(n, "date"):
			return hdrDate
		}
	case 7:
		if equalFold(n, "call-id") {
			return hdrCallID
		}
	case 8:
		if equalFold(n, "identity") {
			return hdrIdentity
		}
	case 12:
		if equalFold(n, "max-forwards") {
			return hdrMaxForwards
		}
	case 14:
		if equalFold(n, "content-length") {
			return hdrContentLength
		}
	case 19:
		if equalFold(n, "p-asserted-identity") {
			return hdrPAI
		}
	}
	return hdrOther
}

// parseHeader parses the header line b[start:end] (next is the offset after
// its terminator) and returns its kind.
// message-header = field-name HCOLON field-value, HCOLON = *( SP / HTAB ) ":" SWS
// (RFC 3261 section 7.3.1 and 25.1).
func (m *Message) parseHeader(b []byte, start, end, next int) (uint16, error) {
	p := start
	for p < end && isToken(b[p]) {
		p++
	}
	if p == start {
		return 0, errHeaderName
	}
	kind := headerKind(b[start:p])
	for p < end && (b[p] == ' ' || b[p] == '\t') {
		p++
	}
	if p >= end || b[p] != ':' {
		if p < end && !isToken(b[p]) && b[p] != ' ' && b[p] != '\t' {
			return 0, errHeaderName
		}
		return 0, errHeaderColon
	}
	if kind == hdrOther {
		return kind, nil
	}
	vs, ve := trimLWS(b, p+1, end)
	switch kind {
	case hdrVia:
		return kind, m.parseViaLine(b, start, vs, ve, next)
	case hdrFrom:
		if !parseNameAddr(b, vs, ve, &m.From) {
			return kind, errFrom
		}
	case hdrTo:
		if !parseNameAddr(b, vs, ve, &m.To) {
			return kind, errTo
		}
	case hdrPAI:
		return kind, m.parsePAI(b, vs, ve)
	case hdrCallID:
		// Call-ID = word [ "@" word ] (RFC 3261 section 20.8): no LWS inside.
		if vs == ve {
			return kind, errCallID
		}
		for _, c := range b[vs:ve] {
			if c <= ' ' || c == 0x7f {
				return kind, errCallID
			}
		}
		m.CallID = Span{int32(vs), int32(ve)}
	case hdrCSeq:
		return kind, m.parseCSeq(b, vs, ve)
	case hdrDate:
		// The first Date wins, even an empty one; its value is checked by
		// ParseDate when used.
		if !m.HasDate {
			m.Date, m.HasDate = Span{int32(vs), int32(ve)}, true
		}
	case hdrIdentity:
		return kind, m.parseIdentity(b, vs, ve)
	case hdrContentLength:
		// Content-Length = 1*DIGIT (RFC 3261 section 20.14).
		n, ok := parseUint(b[vs:ve], MaxMessage)
		if !ok {
			return kind, ErrContentLength
		}
		m.ContentLength = int32(n)
	case hdrMaxForwards:
		// Max-Forwards = 1*DIGIT, 0-255 (RFC 3261 section 20.22).
		n, ok := parseUint(b[vs:ve], 255)
		if !ok {
			return kind, errMaxForwards
		}
		m.MaxForwards = int32(n)
		m.MaxForwardsLine = Span{int32(start), int32(next)}
	}
	return kind, nil
}

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
