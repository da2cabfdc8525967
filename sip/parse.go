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
	hdrDiversion
	hdrHistoryInfo
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
	case 9:
		if equalFold(n, "diversion") {
			return hdrDiversion
		}
	case 12:
		switch {
		case equalFold(n, "max-forwards"):
			return hdrMaxForwards
		case equalFold(n, "history-info"):
			return hdrHistoryInfo
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
	case hdrDiversion:
		// Recorded as it is; read on demand (divert.go).
		if m.NumDiversion < MaxRetargetHeaders && vs < ve {
			m.Diversion[m.NumDiversion] = Span{int32(vs), int32(ve)}
			m.NumDiversion++
		}
		m.TotalDiversion++
	case hdrHistoryInfo:
		if m.NumHistoryInfo < MaxRetargetHeaders && vs < ve {
			m.HistoryInfoHdr[m.NumHistoryInfo] = Span{int32(vs), int32(ve)}
			m.NumHistoryInfo++
		}
		m.TotalHistoryInfo++
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
