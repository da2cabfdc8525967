package fastpath

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/shakenline/shakenline/sip"
)

// headerName classifies the header line starting at b for the headers a
// locally generated response copies (RFC 3261 section 8.2.6.2).
func headerName(line []byte) (name []byte) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil
	}
	return bytes.TrimRight(line[:i], " \t")
}

func isHeader(name []byte, long, compact string) bool {
	return bytes.EqualFold(name, []byte(long)) || (compact != "" && bytes.EqualFold(name, []byte(compact)))
}

// appendResponse appends to dst a response to the request in pkt: status
// line, every Via, From, To (with a tag added when it has none and code > 100),
// Call-ID, CSeq, the extra header lines, and an empty body.
func appendResponse(dst, pkt []byte, m *sip.Message, code int, reason string, extra ...[]byte) []byte {
	dst = append(dst, "SIP/2.0 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\n"...)
	off := lineEnd(pkt, int(m.StartLine.End))
	end := int(m.HeadersEnd)
	for off < end {
		// A header line runs to a line break not followed by SP/HT (folding).
		e := off
		for {
			e = lineEnd(pkt, e)
			if e >= end || (pkt[e] != ' ' && pkt[e] != '\t') {
				break
			}
		}
		if e > end {
			e = end
		}
		line := pkt[off:e]
		name := headerName(line)
		switch {
		case isHeader(name, "Via", "v"), isHeader(name, "From", "f"),
			isHeader(name, "Call-ID", "i"), isHeader(name, "CSeq", ""):
			dst = append(dst, line...)
		case isHeader(name, "To", "t"):
			if m.To.Tag.Empty() && code > 100 && m.To.Value.End > int32(off) && int(m.To.Value.End) <= e {
				dst = append(dst, pkt[off:m.To.Value.End]...)
				dst = append(dst, ";tag="...)
				dst = appendToTag(dst, pkt, m)
				dst = append(dst, pkt[m.To.Value.End:e]...)
			} else {
				dst = append(dst, line...)
			}
		}
		off = e
	}
	for _, x := range extra {
		dst = append(dst, x...)
	}
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// appendToTag appends a To tag that is the same for every retransmission of
// the request (a stateless server must not keep one; section 8.2.6.2).
func appendToTag(dst, pkt []byte, m *sip.Message) []byte {
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	for _, b := range [][]byte{m.CallID.In(pkt), m.From.Tag.In(pkt), m.Via.Branch.In(pkt)} {
		for _, c := range b {
			h ^= uint64(c)
			h *= prime64
		}
	}
	const hex = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hex[(h>>uint(i))&0xf])
	}
	return dst
}

// reply sends a locally generated response to the request in hand (l.msg)
// back to src, on the connection it came on when it came on one.
func (l *loop) reply(pkt []byte, src netip.AddrPort, code int, reason string, extra ...[]byte) {
	mLocalReplies.Inc()
	n := len(pkt)
	for _, x := range extra {
		n += len(x)
	}
	l.send(appendResponse(l.outBuf(n), pkt, &l.msg, code, reason, extra...), l.back(src))
}

// contact is the Contact header line of a 302: the request's Request-URI.
func (l *loop) contact(pkt []byte, m *sip.Message) []byte {
	b := append(l.sc.via[:0], "Contact: <"...)
	b = append(b, m.RequestURI.In(pkt)...)
	b = append(b, ">\r\n"...)
	l.sc.via = b
	return b
}
