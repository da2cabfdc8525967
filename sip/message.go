package sip

// Span is a half-open byte range [Start, End) into the buffer a Message was
// parsed from. Offsets rather than slices let a caller copy a packet into
// another buffer and keep using the parse: offsets stay valid in any copy of
// the same bytes, so no rebasing is needed.
type Span struct{ Start, End int32 }

// In returns the bytes of s inside b (the buffer the message was parsed from,
// or a byte-identical copy of it).
func (s Span) In(b []byte) []byte { return b[s.Start:s.End] }

// Len is the number of bytes in s.
func (s Span) Len() int { return int(s.End - s.Start) }

// Empty reports whether s covers no bytes (the header was absent or empty).
func (s Span) Empty() bool { return s.End <= s.Start }

// Method is a SIP request method (RFC 3261 section 7.1). Unknown methods are
// MethodOther; their name is in Message.MethodName.
type Method uint8

const (
	MethodNone Method = iota // a response, or not parsed
	MethodInvite
	MethodAck
	MethodBye
	MethodCancel
	MethodOptions
	MethodRegister
	MethodPrack
	MethodUpdate
	MethodInfo
	MethodOther
)

// Limits of what one Message records. Headers past these counts are still
// accepted and forwarded, just not recorded.
const (
	MaxPAI      = 4     // P-Asserted-Identity values (RFC 3325 allows a sip and a tel one)
	MaxIdentity = 8     // Identity header values (RFC 8224 allows several; a forwarded call carries a shaken, up to 5 div and an rcd PASSporT)
	MaxMessage  = 65535 // largest message accepted (one UDP datagram)
)

// Via is a parsed via-parm (RFC 3261 section 20.42, RFC 3581).
type Via struct {
	Value     Span  // the whole via-parm, without a trailing comma
	Line      Span  // the whole header line, name through CRLF (top Via only)
	Alone     bool  // Line holds only this via-parm (no comma-separated siblings; top Via only)
	Transport Span  // "UDP", "TCP", ...
	Host      Span  // sent-by host; an IPv6 reference keeps its brackets
	Port      int32 // sent-by port, 0 when absent
	Branch    Span  // value of the branch parameter
	Received  Span  // value of the received parameter
	RPort     Span  // value of rport (empty when absent or valueless)
	HasRPort  bool  // rport present, with or without a value
}

// NameAddr is a From, To or P-Asserted-Identity value (RFC 3261 section 20.10).
type NameAddr struct {
	Value Span // whole header value
	URI   Span // the addr-spec, without angle brackets
	Tag   Span // tag parameter value (From and To only)
}

// Message holds offsets into the buffer passed to Parse for the headers that
// signing and stateless proxying need. The zero value is ready for Parse; a
// Message is reused across packets and owns no memory of its own.
type Message struct {
	IsRequest  bool
	Method     Method
	MethodName Span
	RequestURI Span
	StatusCode int32
	Reason     Span
	StartLine  Span // the request or status line, without CRLF

	Via      Via   // top Via
	Via2     Via   // the via-parm under the top one (where a proxy routes a response); Value empty when there is none or it does not parse
	ViaCount int32 // number of via-parms seen in all Via headers

	From, To NameAddr
	PAI      [MaxPAI]NameAddr
	NumPAI   int32 // values recorded in PAI (at most MaxPAI)
	TotalPAI int32 // P-Asserted-Identity values seen, recorded or not

	CallID         Span
	CSeq           uint32
	CSeqMethod     Method
	CSeqMethodName Span // the method token of CSeq
	Date           Span
	HasDate        bool // a Date header was seen (Date may still be empty: "Date:" with no value)

	Identity      [MaxIdentity]Span // header values, RFC 8224 section 4.1
	NumIdentity   int32             // values recorded in Identity (at most MaxIdentity)
	TotalIdentity int32             // Identity values seen, recorded or not

	// Retargeting headers (divert.go): the header values, read on demand
	// by Diversions and HistoryInfo.
	Diversion        [MaxRetargetHeaders]Span // Diversion header values (RFC 5806)
	NumDiversion     int32                    // values recorded in Diversion
	TotalDiversion   int32                    // Diversion headers seen, recorded or not
	HistoryInfoHdr   [MaxRetargetHeaders]Span // History-Info header values (RFC 7044)
	NumHistoryInfo   int32                    // values recorded in HistoryInfoHdr
	TotalHistoryInfo int32                    // History-Info headers seen, recorded or not

	ContentLength   int32 // -1 when absent
	MaxForwards     int32 // -1 when absent
	MaxForwardsLine Span  // the whole Max-Forwards header line, name through CRLF

	HeadersEnd int32 // offset of the CRLF that ends the header section (insert new headers here)
	Body       Span
}
