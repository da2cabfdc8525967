package fastpath

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/shakenline/shakenline/sip"
)

// Stream framing (RFC 3261 section 18.3): on TCP and TLS a message ends
// Content-Length bytes after the empty line that ends its headers. A read
// may hold part of a message, several messages, or the end of one and the
// start of the next; the framer hands out whole messages, each as a slice
// of the read itself when it lies whole in it (no copy), and keeps only the
// incomplete tail of a read, in a pooled buffer that goes back to the pool
// as soon as the message is complete.

// maxHeaderLines is the most lines a message's start line and headers may
// span on a stream (folded lines count); more closes the connection.
const maxHeaderLines = 256

// frameErr says why a stream cannot be framed any further: the
// connection is closed (its reason label in closeReasons).
type frameErr uint8

const (
	frameOK               frameErr = iota
	frameTooLarge                  // headers, or headers and body, over sip.MaxMessage
	frameTooManyHeaders            // more than maxHeaderLines lines before the empty line
	frameNoContentLength           // a message without Content-Length (mandatory on streams)
	frameBadContentLength          // a Content-Length that is not a number, or two of them
	frameBudget                    // the buffers of incomplete messages are at their budget
)

// framer splits one connection's byte stream into SIP messages. It is used
// by the one goroutine that reads the connection.
type framer struct {
	pool  *bufPool
	pb    *[]byte // the pooled buffer of part, nil when none
	part  []byte  // an incomplete message carried over from earlier reads
	need  int     // the whole message's length once its headers are in part; 0 before
	scan  int     // where the search for the end of the headers in part resumes
	lines int     // lines counted in part[:scan]
	ka    uint8   // bytes of "\r\n\r\n" seen at a message boundary (RFC 5626 ping)
	done  bool    // part is the message the last next returned: drop it first
}

// next frames the bytes in: it consumes n of them and returns either one
// whole message (valid until the next call), or ping (a CRLFCRLF keep-alive
// between messages, RFC 5626 section 3.5.1, to be answered with CRLF), or
// an error (the stream cannot be framed: close it), or none of these when
// all n bytes went into an incomplete message. The caller calls next again
// with in[n:] until in is consumed and nothing is returned.
func (f *framer) next(in []byte) (n int, msg []byte, ping bool, err frameErr) {
	if f.done {
		f.release()
	}
	if f.pb == nil {
		return f.fresh(in)
	}
	if f.need > 0 { // the headers are in: take the rest of the body
		k := min(f.need-len(f.part), len(in))
		if !f.grow(k) {
			return k, nil, false, frameBudget
		}
		f.part = append(f.part, in[:k]...)
		if len(f.part) == f.need {
			f.done = true
			return k, f.part, false, frameOK
		}
		return k, nil, false, frameOK
	}
	// Headers still incomplete: take what the size limit allows.
	k := min(len(in), sip.MaxMessage+1-len(f.part))
	old := len(f.part)
	if !f.grow(k) {
		return k, nil, false, frameBudget
	}
	f.part = append(f.part, in[:k]...)
	end, lines, resume, found := headerEnd(f.part, f.scan, f.lines)
	if lines > maxHeaderLines {
		return k, nil, false, frameTooManyHeaders
	}
	if !found {
		if len(f.part) > sip.MaxMessage {
			return k, nil, false, frameTooLarge
		}
		f.scan, f.lines = resume, lines
		return k, nil, false, frameOK
	}
	total, e := frameLength(f.part[:end])
	if e != frameOK {
		return k, nil, false, e
	}
	if len(f.part) >= total {
		// The message ends inside in: the bytes after it stay in in.
		f.part = f.part[:total]
		f.done = true
		return total - old, f.part, false, frameOK
	}
	f.need = total
	if !f.grow(total - len(f.part)) {
		return k, nil, false, frameBudget
	}
	return k, nil, false, frameOK
}

// fresh frames at a message boundary: CRLFs are skipped (a CRLFCRLF is a
// ping), then a message that lies whole in in is returned in place; the
// start of one that does not is kept in part.
func (f *framer) fresh(in []byte) (n int, msg []byte, ping bool, err frameErr) {
	for n < len(in) {
		c := in[n]
		if c != '\r' && c != '\n' {
			break
		}
		n++
		switch {
		case c == "\r\n\r\n"[f.ka]:
			f.ka++
		case c == '\r':
			f.ka = 1
		default:
			f.ka = 0
		}
		if f.ka == 4 {
			f.ka = 0
			return n, nil, true, frameOK
		}
	}
	if n == len(in) {
		return n, nil, false, frameOK
	}
	f.ka = 0
	start := n
	rest := in[start:]
	// Look no further than a message may be long, as a held part would.
	end, lines, resume, found := headerEnd(rest[:min(len(rest), sip.MaxMessage+1)], 0, 0)
	if lines > maxHeaderLines {
		return len(in), nil, false, frameTooManyHeaders
	}
	if !found {
		if len(rest) > sip.MaxMessage {
			return len(in), nil, false, frameTooLarge
		}
		if !f.hold(rest, len(rest)) {
			return len(in), nil, false, frameBudget
		}
		f.scan, f.lines = resume, lines
		return len(in), nil, false, frameOK
	}
	total, e := frameLength(rest[:end])
	if e != frameOK {
		return len(in), nil, false, e
	}
	if len(rest) >= total {
		return start + total, rest[:total], false, frameOK
	}
	// The body comes in a later read.
	if !f.hold(rest, total) {
		return len(in), nil, false, frameBudget
	}
	f.need = total
	return len(in), nil, false, frameOK
}

// hold starts part with b, in a pooled buffer with room for size bytes.
func (f *framer) hold(b []byte, size int) bool {
	pb := f.pool.get(size)
	if pb == nil {
		return false
	}
	f.pb = pb
	f.part = append((*pb)[:0], b...)
	return true
}

// grow makes room for k more bytes in part, moving it to a larger pooled
// buffer when needed.
func (f *framer) grow(k int) bool {
	if len(f.part)+k <= cap(f.part) {
		return true
	}
	pb := f.pool.get(len(f.part) + k)
	if pb == nil {
		return false
	}
	b := append((*pb)[:0], f.part...)
	f.pool.put(f.pb)
	f.pb, f.part = pb, b
	return true
}

// release drops what part holds and returns its buffer to the pool.
func (f *framer) release() {
	if f.pb != nil {
		*f.pb = f.part[:0]
		f.pool.put(f.pb)
	}
	f.pb, f.part, f.need, f.scan, f.lines, f.done = nil, nil, 0, 0, 0, false
}

// partial reports whether an incomplete message is held.
func (f *framer) partial() bool { return f.pb != nil && !f.done }

// headerEnd looks for the empty line that ends the headers in b, from
// offset from (a line break whose successor was not yet read) with lines
// lines counted before it. end is the offset just past the empty line;
// when it is not found, resume is where to look again once b has grown.
// A bare LF ends a line as a CRLF does (as package sip reads it).
func headerEnd(b []byte, from, lines int) (end, nlines, resume int, found bool) {
	i := from
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0, lines, len(b), false
		}
		i += j
		if i+1 >= len(b) {
			return 0, lines, i, false
		}
		if b[i+1] == '\n' {
			return i + 2, lines, 0, true
		}
		if b[i+1] == '\r' {
			if i+2 >= len(b) {
				return 0, lines, i, false
			}
			if b[i+2] == '\n' {
				return i + 3, lines, 0, true
			}
		}
		lines++
		if lines > maxHeaderLines {
			return 0, lines, i, false
		}
		i++
	}
}

// frameLength is the length of the message whose start line and headers
// (through the empty line) are h: len(h) plus its Content-Length, which a
// stream requires (RFC 3261 sections 18.3 and 20.14), given once.
func frameLength(h []byte) (int, frameErr) {
	cl := -1
	// The first line is the start line; each header line starts after a
	// line break and is not a continuation (SP or HTAB).
	for i := bytes.IndexByte(h, '\n') + 1; i > 0 && i < len(h); {
		line := h[i:]
		next := bytes.IndexByte(line, '\n')
		if next < 0 {
			break
		}
		line = line[:next]
		i += next + 1
		name, value, ok := headerNameValue(line)
		if !ok || !(len(name) == 1 && (name[0] == 'l' || name[0] == 'L') ||
			bytes.EqualFold(name, []byte("Content-Length"))) {
			continue
		}
		if cl >= 0 {
			return 0, frameBadContentLength
		}
		n, ok := parseDecimal(value)
		if !ok {
			return 0, frameBadContentLength
		}
		if n > sip.MaxMessage {
			return 0, frameTooLarge
		}
		cl = n
	}
	if cl < 0 {
		return 0, frameNoContentLength
	}
	if len(h)+cl > sip.MaxMessage {
		return 0, frameTooLarge
	}
	return len(h) + cl, frameOK
}

// headerNameValue splits a header line (without its LF) at the colon: the
// name without trailing white space, the value without surrounding white
// space or the CR.
func headerNameValue(line []byte) (name, value []byte, ok bool) {
	if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return nil, nil, false
	}
	c := bytes.IndexByte(line, ':')
	if c <= 0 {
		return nil, nil, false
	}
	name = bytes.TrimRight(line[:c], " \t")
	value = bytes.Trim(line[c+1:], " \t\r")
	return name, value, true
}

// parseDecimal parses an unsigned decimal of at most 9 digits.
func parseDecimal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// bufPool lends the buffers of incomplete messages and of stream output
// queued from other goroutines, in three sizes, within a budget of bytes
// lent at once: a slow or hostile client holds at most one buffer, sized
// to what it has sent, and all of them together at most the budget. The
// free buffers are sync.Pools (per P, no lock shared by the loops).
type bufPool struct {
	classes [len(bufSizes)]sync.Pool
	lent    atomic.Int64
	budget  int64
}

// bufSizes are the buffer sizes: a typical message, a large one, the
// largest message accepted.
var bufSizes = [...]int{4 << 10, 16 << 10, sip.MaxMessage + 1}

func newBufPool(budget int64) *bufPool {
	p := &bufPool{budget: budget}
	for i := range p.classes {
		size := bufSizes[i]
		p.classes[i].New = func() any { b := make([]byte, 0, size); return &b }
	}
	return p
}

// get lends a buffer with room for n bytes (at most the largest size),
// or nil when the budget is spent.
func (p *bufPool) get(n int) *[]byte {
	for i, size := range bufSizes {
		if n > size && i < len(bufSizes)-1 {
			continue
		}
		if p.lent.Add(int64(size)) > p.budget {
			p.lent.Add(-int64(size))
			mStreamBudget.Inc()
			return nil
		}
		return p.classes[i].Get().(*[]byte)
	}
	return nil
}

// put returns a buffer get lent.
func (p *bufPool) put(pb *[]byte) {
	if pb == nil {
		return
	}
	c := cap(*pb)
	for i, size := range bufSizes {
		if c == size {
			p.lent.Add(-int64(size))
			*pb = (*pb)[:0]
			p.classes[i].Put(pb)
			return
		}
	}
}
