package loadgen

import (
	"bytes"
	"net/netip"
)

// maxVias is how many Via header lines a scanned message may carry; more is
// ErrMalformed (a stateless chain in a benchmark never gets that deep).
const maxVias = 8

// maxMessage caps what the scanner looks at (RFC 3261 section 18.1.1 keeps
// UDP messages well under this).
const maxMessage = 8192

// sipMsg holds slices into one received datagram: only what the generator
// and the sink need to answer, count and correlate. It is reset by scan and
// valid while the datagram buffer is.
type sipMsg struct {
	request bool
	method  []byte // request method
	status  int    // response status code

	vias   [maxVias][]byte // whole Via lines (name included, no CRLF)
	viaTop []byte          // value of the first Via
	nvia   int

	fromLine, toLine, callIDLine, cseqLine []byte // whole lines
	callID                                 []byte // value
	toVal                                  []byte // value of To
	cseqMethod                             []byte
	contactURI                             []byte // inside <...> of Contact, or the bare value
	identity                               []byte // value of the first Identity header
	nIdentity                              int
}

// scan fills m from b. It understands the compact forms of the headers it
// reads (RFC 3261 section 7.3.3, RFC 8224 section 4 for "y") and skips all
// others. Folded header lines are not supported.
func (m *sipMsg) scan(b []byte) error {
	*m = sipMsg{}
	if len(b) > maxMessage {
		return ErrMalformed
	}
	eol := bytes.Index(b, crlf)
	if eol <= 0 {
		return ErrMalformed
	}
	if err := m.startLine(b[:eol]); err != nil {
		return err
	}
	p := eol + 2
	for {
		if p >= len(b) {
			return ErrMalformed // no empty line ending the header
		}
		e := bytes.Index(b[p:], crlf)
		if e < 0 {
			return ErrMalformed
		}
		line := b[p : p+e]
		p += e + 2
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return ErrMalformed
		}
		name := trimWS(line[:colon])
		val := trimWS(line[colon+1:])
		switch {
		case eqFold(name, "via") || eqFold(name, "v"):
			if m.nvia == maxVias {
				return ErrMalformed
			}
			if m.nvia == 0 {
				m.viaTop = val
				if c := bytes.IndexByte(val, ','); c >= 0 {
					m.viaTop = bytes.TrimSpace(val[:c])
				}
			}
			m.vias[m.nvia] = line
			m.nvia++
		case eqFold(name, "from") || eqFold(name, "f"):
			m.fromLine = line
		case eqFold(name, "to") || eqFold(name, "t"):
			m.toLine, m.toVal = line, val
		case eqFold(name, "call-id") || eqFold(name, "i"):
			m.callIDLine, m.callID = line, val
		case eqFold(name, "cseq"):
			m.cseqLine = line
			if sp := bytes.IndexByte(val, ' '); sp > 0 {
				m.cseqMethod = bytes.TrimSpace(val[sp+1:])
			}
		case eqFold(name, "contact") || eqFold(name, "m"):
			if m.contactURI == nil {
				m.contactURI = val
				if lt := bytes.IndexByte(val, '<'); lt >= 0 {
					if gt := bytes.IndexByte(val[lt:], '>'); gt > 0 {
						m.contactURI = val[lt+1 : lt+gt]
					}
				}
			}
		case eqFold(name, "identity") || eqFold(name, "y"):
			if m.nIdentity == 0 {
				m.identity = val
			}
			m.nIdentity++
		}
	}
	if m.nvia == 0 || m.callID == nil || m.cseqLine == nil || m.fromLine == nil || m.toLine == nil {
		return ErrMalformed
	}
	return nil
}

var crlf = []byte("\r\n")

func (m *sipMsg) startLine(l []byte) error {
	if bytes.HasPrefix(l, []byte("SIP/2.0 ")) {
		if len(l) < 11 {
			return ErrMalformed
		}
		code := 0
		for _, c := range l[8:11] {
			if c < '0' || c > '9' {
				return ErrMalformed
			}
			code = code*10 + int(c-'0')
		}
		m.status = code
		return nil
	}
	sp := bytes.IndexByte(l, ' ')
	if sp <= 0 || !bytes.HasSuffix(l, []byte(" SIP/2.0")) {
		return ErrMalformed
	}
	m.request = true
	m.method = l[:sp]
	return nil
}

// trimWS trims spaces and tabs on both ends.
func trimWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// eqFold reports whether b equals the lower-case ASCII s, ignoring case.
func eqFold(b []byte, s string) bool {
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

// viaTarget is where a response to a request goes: the top Via's sent-by,
// overridden by its received and rport parameters (RFC 3261 section
// 18.2.2, RFC 3581 section 4).
type viaTarget struct {
	host []byte
	port int
}

// parseVia reads "SIP/2.0/UDP host[:port][;params]".
func parseVia(v []byte) (viaTarget, error) {
	var t viaTarget
	sp := bytes.IndexAny(v, " \t")
	if sp < 0 || !bytes.HasPrefix(v, []byte("SIP/2.0/")) {
		return t, ErrMalformed
	}
	v = bytes.TrimLeft(v[sp:], " \t")
	end := bytes.IndexByte(v, ';')
	sentBy, params := v, []byte(nil)
	if end >= 0 {
		sentBy, params = v[:end], v[end+1:]
	}
	sentBy = bytes.TrimSpace(sentBy)
	t.port = 5060
	if len(sentBy) > 0 && sentBy[0] == '[' {
		rb := bytes.IndexByte(sentBy, ']')
		if rb < 0 {
			return t, ErrMalformed
		}
		t.host = sentBy[1:rb]
		rest := sentBy[rb+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return t, ErrMalformed
			}
			p, ok := atoiPort(rest[1:])
			if !ok {
				return t, ErrMalformed
			}
			t.port = p
		}
	} else if c := bytes.LastIndexByte(sentBy, ':'); c >= 0 {
		p, ok := atoiPort(sentBy[c+1:])
		if !ok {
			return t, ErrMalformed
		}
		t.host, t.port = sentBy[:c], p
	} else {
		t.host = sentBy
	}
	if len(t.host) == 0 {
		return t, ErrMalformed
	}
	for len(params) > 0 {
		var p []byte
		if i := bytes.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			p, params = params, nil
		}
		p = bytes.TrimSpace(p)
		switch {
		case len(p) > 9 && eqFold(p[:9], "received="):
			t.host = p[9:]
			if len(t.host) > 1 && t.host[0] == '[' && t.host[len(t.host)-1] == ']' {
				t.host = t.host[1 : len(t.host)-1]
			}
		case len(p) > 6 && eqFold(p[:6], "rport="):
			if port, ok := atoiPort(p[6:]); ok {
				t.port = port
			}
		}
	}
	return t, nil
}

func atoiPort(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n > 0 && n < 65536
}

// parseIPv4 parses dotted-quad bytes without allocating.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var a [4]byte
	part, n, digits := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || part > 3 {
				return netip.Addr{}, false
			}
			a[part] = byte(n)
			part, n, digits = part+1, 0, 0
			continue
		}
		c := b[i]
		if c < '0' || c > '9' || digits == 3 {
			return netip.Addr{}, false
		}
		n = n*10 + int(c-'0')
		digits++
		if n > 255 {
			return netip.Addr{}, false
		}
	}
	if part != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}

// addrCache resolves Via hosts to addresses; IPv4 is parsed in place, other
// literals go through netip once and are remembered (one entry: a benchmark
// answers one previous hop).
type addrCache struct {
	host [64]byte
	n    int
	addr netip.Addr
}

func (c *addrCache) resolve(host []byte) (netip.Addr, bool) {
	if a, ok := parseIPv4(host); ok {
		return a, true
	}
	if c.n > 0 && bytes.Equal(c.host[:c.n], host) {
		return c.addr, true
	}
	a, err := netip.ParseAddr(string(host))
	if err != nil || len(host) > len(c.host) {
		return netip.Addr{}, false
	}
	c.n = copy(c.host[:], host)
	c.addr = a
	return a, true
}
