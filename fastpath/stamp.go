package fastpath

import (
	"bytes"
	"net/netip"
	"strconv"
	"unsafe"

	"github.com/shakenline/shakenline/sip"
)

// edit replaces pkt[at:at+del] with ins.
type edit struct {
	at, del int
	ins     []byte
}

// edits is a small, fixed set of edits applied in offset order: at most an
// annotation (five edits), Max-Forwards, our Via, received, rport, the
// Date (added or replaced) and one header.
type edits struct {
	n int
	e [len(annotation{}.e) + 6]edit
}

// annotation is up to five edits that annotate the identities of a
// request, such as the verstat of a verification: one rewrites the
// annotated identity, the others the other identities (From and up to
// sip.MaxPAI P-Asserted-Identity values, one of which is the annotated
// one).
type annotation struct {
	n int
	e [1 + sip.MaxPAI]edit
}

func (a *annotation) add(at, del int, ins []byte) {
	a.e[a.n] = edit{at: at, del: del, ins: ins}
	a.n++
}

// addTo queues a's edits, in order, on es; a nil a adds nothing.
func (a *annotation) addTo(es *edits) {
	if a == nil {
		return
	}
	for _, e := range a.e[:a.n] {
		es.add(e.at, e.del, e.ins)
	}
}

func (es *edits) add(at, del int, ins []byte) {
	es.e[es.n] = edit{at: at, del: del, ins: ins}
	es.n++
}

// apply appends pkt with the edits applied to dst. Edits are sorted by
// offset (an insertion sort over at most fifteen); at one offset, pure
// inserts come before a replacement, which would otherwise move past the
// offset and swallow them (our Via before a Max-Forwards that is the first
// header line); otherwise the order of add is kept.
func (es *edits) apply(dst, pkt []byte) []byte {
	e := es.e[:es.n]
	before := func(a, b edit) bool { return a.at < b.at || a.at == b.at && a.del == 0 && b.del > 0 }
	for i := 1; i < len(e); i++ {
		for j := i; j > 0 && before(e[j], e[j-1]); j-- {
			e[j], e[j-1] = e[j-1], e[j]
		}
	}
	off := 0
	for _, x := range e {
		if x.at < off { // overlapping edits: never produced by the stampers
			continue
		}
		dst = append(dst, pkt[off:x.at]...)
		dst = append(dst, x.ins...)
		off = x.at + x.del
	}
	return append(dst, pkt[off:]...)
}

// scratch holds the small pieces a stamp builds. One per goroutine that
// stamps (each loop, and each job for the signer side).
type scratch struct {
	tr    Transport // the request being stamped leaves over tr (our Via's transport)
	cid   uint64    // and came on connection cid (our Via's ;i=; 0: none)
	via   []byte
	recv  []byte // ";received=..." for the previous top Via
	rport []byte // "=port" filling a valueless rport
	mf    []byte
	ed    edits
}

// hop sets what our Via says of the request being stamped: it leaves for
// to and came as in says.
func (sc *scratch) hop(to target, in ingress) {
	sc.tr, sc.cid = to.tr, 0
	if in.conn != nil {
		sc.cid = in.conn.id
	}
}

func newScratch() *scratch {
	return &scratch{via: make([]byte, 0, 256), recv: make([]byte, 0, 96), rport: make([]byte, 0, 8), mf: make([]byte, 0, 32)}
}

// lineEnd returns the offset just past the line break that ends the line
// containing off.
func lineEnd(b []byte, off int) int {
	if i := bytes.IndexByte(b[off:], '\n'); i >= 0 {
		return off + i + 1
	}
	return len(b)
}

// stampRequest appends to dst the request in pkt as this stateless proxy
// forwards it (RFC 3261 section 16.6 and 16.11): our Via on top with a
// branch derived from the incoming one, received/rport on the previous top
// Via when the source differs from its sent-by (section 18.2.1, RFC 3581),
// Max-Forwards decremented (or 70 added), and hdr (a whole header line, for
// example "Identity: ...\r\n", or nil) inserted as the last header.
func (s *Server) stampRequest(dst, pkt []byte, m *sip.Message, src netip.AddrPort, hdr []byte, sc *scratch) []byte {
	return s.stampRequestEdit(dst, pkt, m, src, hdr, sc, nil, nil)
}

// stampRequestEdit is stampRequest with an annotation (nil: none), such as
// a verstat parameter, and a Date edit (nil: none; see job.setDate), which
// goes before hdr when both are inserted at the end of the headers.
func (s *Server) stampRequestEdit(dst, pkt []byte, m *sip.Message, src netip.AddrPort, hdr []byte, sc *scratch, ann *annotation, date *edit) []byte {
	sc.ed.n = 0
	ann.addTo(&sc.ed)
	if date != nil {
		sc.ed.add(date.at, date.del, date.ins)
	}
	sc.via = append(sc.via[:0], s.viaPrefix[sc.tr]...)
	sc.via = appendBranch(sc.via, pkt, m)
	if sc.cid != 0 {
		sc.via = appendConnID(sc.via, sc.cid)
	}
	sc.via = append(sc.via, "\r\n"...)
	if m.MaxForwards < 0 {
		sc.via = append(sc.via, "Max-Forwards: 70\r\n"...)
	} else {
		sc.mf = append(sc.mf[:0], "Max-Forwards: "...)
		sc.mf = strconv.AppendInt(sc.mf, int64(m.MaxForwards-1), 10)
		sc.mf = append(sc.mf, "\r\n"...)
		sc.ed.add(int(m.MaxForwardsLine.Start), m.MaxForwardsLine.Len(), sc.mf)
	}
	sc.ed.add(lineEnd(pkt, int(m.StartLine.End)), 0, sc.via)
	s.annotateVia(pkt, m, src, sc)
	if len(hdr) > 0 {
		sc.ed.add(int(m.HeadersEnd), 0, hdr)
	}
	return sc.ed.apply(dst, pkt)
}

// annotateVia makes the previous top Via name the real source (RFC 3261
// section 18.2.1, RFC 3581 section 4): received= is set to the source
// address when it differs from the sent-by or when rport is present, and
// rport is set to the source port. Values the sender wrote into received or
// rport itself are replaced, never trusted: they would let a client send
// every response of the transaction to an address of its choosing.
func (s *Server) annotateVia(pkt []byte, m *sip.Message, src netip.AddrPort, sc *scratch) {
	v := &m.Via
	if v.Value.Empty() {
		return
	}
	host := v.Host.In(pkt)
	if len(host) > 1 && host[0] == '[' {
		host = host[1 : len(host)-1]
	}
	var ipbuf [64]byte
	ip := src.Addr().Unmap().AppendTo(ipbuf[:0])
	// rport first: a valueless rport ending the via-parm and a new
	// received are inserted at the same offset, in this order.
	if v.HasRPort {
		if !v.RPort.Empty() {
			sc.rport = strconv.AppendUint(sc.rport[:0], uint64(src.Port()), 10)
			sc.ed.add(int(v.RPort.Start), v.RPort.Len(), sc.rport)
		} else if at := rportEnd(pkt[v.Value.Start:v.Value.End]); at >= 0 {
			sc.rport = append(sc.rport[:0], '=')
			sc.rport = strconv.AppendUint(sc.rport, uint64(src.Port()), 10)
			sc.ed.add(int(v.Value.Start)+at, 0, sc.rport)
		}
	}
	switch {
	case !v.Received.Empty():
		sc.recv = append(sc.recv[:0], ip...)
		sc.ed.add(int(v.Received.Start), v.Received.Len(), sc.recv)
	case v.HasRPort || !bytes.EqualFold(host, ip):
		sc.recv = append(append(sc.recv[:0], ";received="...), ip...)
		sc.ed.add(int(v.Value.End), 0, sc.recv)
	}
}

// rportEnd finds the end of a valueless ";rport" parameter in a via-parm.
func rportEnd(v []byte) int {
	for i := 0; i+6 <= len(v); i++ {
		if v[i] != ';' {
			continue
		}
		j := i + 1
		for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
			j++
		}
		if j+5 <= len(v) && bytes.EqualFold(v[j:j+5], []byte("rport")) {
			k := j + 5
			if k == len(v) || v[k] == ';' || v[k] == ' ' || v[k] == '\t' {
				return k
			}
		}
	}
	return -1
}

// appendBranch appends our branch: the RFC 3261 magic cookie and a hash of
// what identifies the transaction, so that a retransmission gets the same
// branch without any state (section 16.11).
func appendBranch(dst, pkt []byte, m *sip.Message) []byte {
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	mix := func(b []byte) {
		for _, c := range b {
			h ^= uint64(c)
			h *= prime64
		}
	}
	br := m.Via.Branch.In(pkt)
	if bytes.HasPrefix(br, []byte("z9hG4bK")) {
		mix(br)
		mix(m.Via.Host.In(pkt))
	} else { // RFC 2543 peer: hash the transaction's identifying fields
		mix(m.Via.Value.In(pkt))
		mix(m.CallID.In(pkt))
		mix(m.From.Tag.In(pkt))
		mix(m.RequestURI.In(pkt))
		var cs [4]byte
		cs[0], cs[1], cs[2], cs[3] = byte(m.CSeq>>24), byte(m.CSeq>>16), byte(m.CSeq>>8), byte(m.CSeq)
		mix(cs[:])
	}
	// A CANCEL, and the ACK of a non-2xx, carry the INVITE's top Via branch
	// (sections 9.1, 17.1.1.3); hashing the same inputs keeps them matched.
	const hex = "0123456789abcdef"
	dst = append(dst, "z9hG4bKsl"...)
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hex[(h>>uint(i))&0xf])
	}
	return dst
}

// isOurVia reports whether the top Via of a response names this proxy
// (the SIP port, or the TLS one).
func (s *Server) isOurVia(pkt []byte, m *sip.Message) bool {
	v := &m.Via
	port := v.Port
	if port == 0 {
		port = 5060
	}
	return (int(port) == int(s.advertise.Port()) || int(port) == int(s.tlsPort)) && bytes.EqualFold(v.Host.In(pkt), s.viaHost) &&
		bytes.HasPrefix(v.Branch.In(pkt), []byte("z9hG4bKsl"))
}

// stampInline appends pkt with hdr inserted as its last header and nothing
// else changed (inline mode: the appliance is a wire) but the Date edit
// (nil: none; see job.setDate).
func stampInline(dst, pkt []byte, m *sip.Message, hdr []byte, date *edit, sc *scratch) []byte {
	sc.ed.n = 0
	if date != nil {
		sc.ed.add(date.at, date.del, date.ins)
	}
	sc.ed.add(int(m.HeadersEnd), 0, hdr)
	return sc.ed.apply(dst, pkt)
}

// stampResponse appends the response in pkt without our top Via.
func stampResponse(dst, pkt []byte, m *sip.Message, sc *scratch) []byte {
	sc.ed.n = 0
	v := &m.Via
	if v.Alone {
		sc.ed.add(int(v.Line.Start), v.Line.Len(), nil)
	} else {
		end := int(v.Value.End)
		for end < len(pkt) && (pkt[end] == ',' || pkt[end] == ' ' || pkt[end] == '\t' || pkt[end] == '\r' || pkt[end] == '\n') {
			end++
		}
		sc.ed.add(int(v.Value.Start), end-int(v.Value.Start), nil)
	}
	return sc.ed.apply(dst, pkt)
}

// viaTarget is where a response goes by its (new) top Via: received and
// rport when present, else the sent-by (RFC 3261 section 18.2.2, RFC 3581
// section 4). ok is false for a host name, which the fast path does not
// resolve.
func viaTarget(pkt []byte, v *sip.Via) (netip.AddrPort, bool) {
	host := v.Received.In(pkt)
	if len(host) == 0 {
		host = v.Host.In(pkt)
	}
	a, ok := parseIP(host)
	if !ok {
		return netip.AddrPort{}, false
	}
	port := uint16(v.Port)
	if rp := v.RPort.In(pkt); len(rp) > 0 {
		n, err := strconv.ParseUint(unsafeString(rp), 10, 16)
		if err == nil {
			port = uint16(n)
		}
	}
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(a, port), true
}

// parseIP parses an IPv4 or (bracketed or bare) IPv6 literal without
// allocating. Zones are refused.
func parseIP(b []byte) (netip.Addr, bool) {
	if len(b) > 1 && b[0] == '[' && b[len(b)-1] == ']' {
		b = b[1 : len(b)-1]
	}
	if len(b) == 0 || len(b) > 45 || bytes.IndexByte(b, '%') >= 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(unsafeString(b))
	return a, err == nil
}

// unsafeString views b as a string for a call that does not keep it.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// requestURITarget is where a request from the next hop goes: the host and
// port of its Request-URI when that host is an IP literal.
func requestURITarget(pkt []byte, m *sip.Message) (netip.AddrPort, bool) {
	u := m.RequestURI.In(pkt)
	if i := bytes.IndexByte(u, ':'); i >= 0 { // scheme
		u = u[i+1:]
	}
	if i := bytes.IndexByte(u, '@'); i >= 0 {
		u = u[i+1:]
	}
	if i := bytes.IndexAny(u, ";?>"); i >= 0 {
		u = u[:i]
	}
	host, port := u, []byte(nil)
	if len(u) > 0 && u[0] == '[' {
		if i := bytes.IndexByte(u, ']'); i > 0 {
			host, port = u[:i+1], u[i+1:]
		}
	} else if i := bytes.LastIndexByte(u, ':'); i >= 0 {
		host, port = u[:i], u[i:]
	}
	a, ok := parseIP(host)
	if !ok {
		return netip.AddrPort{}, false
	}
	p := uint64(5060)
	if len(port) > 1 && port[0] == ':' {
		n, err := strconv.ParseUint(unsafeString(port[1:]), 10, 16)
		if err != nil {
			return netip.AddrPort{}, false
		}
		p = n
	}
	return netip.AddrPortFrom(a, uint16(p)), true
}
