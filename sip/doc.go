// Package sip is the zero-allocation SIP message parser of the signing
// fast path. It owns the Message type (offsets into a packet for the
// headers that signing and stateless forwarding need), the URI helpers that
// pull a telephone number out of a From, To or P-Asserted-Identity URI
// (URIUser, Param, TelephoneNumber), the Date parser and formatter
// (ParseDate, AppendDate), and the grammar of the verstat parameter the
// terminating side writes on the caller's number: where it goes
// (VerstatPoint) and how one is found and removed (NextVerstat,
// AppendWithoutVerstat).
//
// Files: parse.go (Parse, the start line, header dispatch, the errors),
// via.go (Via), header.go (From, To, P-Asserted-Identity, Identity, CSeq),
// lex.go (the basic rules of RFC 3261 section 25.1: LWS, tokens, quoted
// strings, list elements), uri.go, date.go, verstat.go, hop.go (ParseHop:
// a configured next hop, ADDR:PORT or sip:ADDR:PORT;transport=..., not a
// packet-path function).
//
// # What Parse reads
//
// The start line (RFC 3261 section 7.1 / 7.2) and these headers, by full or
// compact name, case-insensitively (section 7.3.1, 7.3.3): Via/v (top
// via-parm parsed fully, the second one too where it parses, all via-parms
// counted; section 20.42, RFC 3581),
// From/f, To/t (section 20.20, 20.39), P-Asserted-Identity (RFC 3325
// section 9.1), Call-ID/i, CSeq, Date, Identity/y (RFC 8224 section 4.1),
// Content-Length/l, Max-Forwards. Other headers, including the compact m
// (Contact), are skipped without being looked at beyond their line end.
// Comma-separated values are split only outside quoted strings and angle
// brackets.
//
// Single-valued headers that repeat (From, To, Call-ID, CSeq,
// Content-Length, Max-Forwards) make Parse fail rather than pick one; a
// repeated Date keeps the first (HasDate tells an empty Date from none). A request must carry Via, From, To,
// Call-ID and CSeq (section 8.1.1), and its CSeq method must equal the
// request method (section 20.16). Responses need no particular header.
//
// # Line endings and folding
//
// Lines end in CRLF; a bare LF is accepted too (the terminator is then the
// single LF, spans that include "through CRLF" end after that LF, and
// HeadersEnd points at the LF of the empty line). A lone CR is not a line
// end. CRLFs before the start line are ignored (section 7.5). A line break
// followed by SP or HTAB continues the header value (LWS, section 7.3.1):
// value spans then contain the CR LF and white space as they appear in the
// packet; leading and trailing LWS is trimmed from every value.
//
// # Body
//
// With Content-Length the body is exactly that many bytes after the empty
// line; fewer bytes is ErrTruncated, extra bytes in the datagram are
// ignored (section 18.3). Without Content-Length the rest of the datagram is
// the body (section 18.3, UDP).
//
// # Errors
//
// ErrTruncated, ErrTooLarge, ErrStartLine, ErrHeader, ErrContentLength and
// ErrCSeq are the sentinels; Parse returns them or a static error wrapping
// one of them with a more precise message (use errors.Is). After an error
// the Message holds whatever was parsed so far; every span in it is still
// within the buffer, but it must not be used for forwarding decisions.
//
// # Limits
//
// Messages above MaxMessage bytes are refused. At most MaxPAI
// P-Asserted-Identity values and MaxIdentity Identity values are recorded;
// further ones are counted in TotalPAI and TotalIdentity and otherwise
// ignored. Offsets are int32.
//
// # Concurrency and buffer lifetime
//
// Parse, TelephoneNumber, ParseDate, AppendDate, URIUser, Param and the
// verstat functions do not allocate
// (when the destination slice has room) and keep no reference to their
// input: a Message holds offsets, not slices, so it stays valid for any
// byte-identical copy of the packet (for example one copied out of a gnet
// buffer before the callback returns). A Message is not safe for
// concurrent use; use one per event loop or goroutine and reuse it, the
// zero value is ready. The package has no global mutable state.
package sip
