package loadgen

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
)

// SIP over TCP and TLS (Config.Transport, SinkConfig.Transport): each of
// the generator's Sockets is a persistent connection to the target; the
// sink accepts connections and answers on the one a request came on. Reads
// are framed by Content-Length (RFC 3261 section 18.3); a connection's
// buffers are allocated when it opens, so framing and answering allocate
// nothing per message.

func isStream(tr string) bool { return tr == "tcp" || tr == "tls" }

// streamConn is one connection with its read buffer and the output of one
// round (answers, or ACKs and BYEs), written at once.
type streamConn struct {
	c    net.Conn
	rbuf []byte
	n    int    // bytes in rbuf
	wbuf []byte // answers of one read, written at once
	out  []byte // the generator's INVITE batch, written at once
}

func newStreamConn(c net.Conn) *streamConn {
	return &streamConn{c: c, rbuf: make([]byte, 4*maxMessage), wbuf: make([]byte, 0, 64<<10), out: make([]byte, 0, 64<<10)}
}

// writeBatch writes the INVITEs of one batch in one write.
func (st *streamConn) writeBatch(bufs [][]byte) error {
	b := st.out[:0]
	for _, m := range bufs {
		b = append(b, m...)
	}
	st.out = b
	_, err := st.c.Write(b)
	return err
}

// readMessages reads once and calls fn for each whole message now in the
// buffer (CRLF keep-alives skipped); the rest waits for the next read. It
// returns the read's error.
func (st *streamConn) readMessages(fn func(msg []byte)) error {
	if st.n == len(st.rbuf) { // a message larger than the buffer: give up on it
		st.n = 0
	}
	k, err := st.c.Read(st.rbuf[st.n:])
	st.n += k
	p := 0
	for p < st.n {
		for p < st.n && (st.rbuf[p] == '\r' || st.rbuf[p] == '\n') {
			p++
		}
		l := frameLen(st.rbuf[p:st.n])
		if l <= 0 {
			if l < 0 { // not SIP: drop what is buffered
				p = st.n
			}
			break
		}
		fn(st.rbuf[p : p+l])
		p += l
	}
	st.n = copy(st.rbuf, st.rbuf[p:st.n])
	return err
}

// frameLen is the length of the message at the start of b: its headers
// through the empty line plus its Content-Length; 0 when b does not hold
// all of it yet, -1 when it has no Content-Length.
func frameLen(b []byte) int {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0
	}
	head := b[:end+2]
	cl := -1
	for p := 0; p < len(head); {
		e := bytes.Index(head[p:], crlf)
		if e < 0 {
			break
		}
		line := head[p : p+e]
		p += e + 2
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		name := trimWS(line[:c])
		if eqFold(name, "content-length") || eqFold(name, "l") {
			n, err := strconv.Atoi(string(trimWS(line[c+1:])))
			if err != nil || n < 0 {
				return -1
			}
			cl = n
		}
	}
	if cl < 0 {
		return -1
	}
	if len(b) < end+4+cl {
		return 0
	}
	return end + 4 + cl
}

// dialStreams opens the generator's connections.
func (g *Generator) dialStreams() error {
	cfg := g.cfg
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(cfg.Local, 0))}
	token := "TCP"
	if cfg.Transport == "tls" {
		token = "TLS"
	}
	for i := 0; i < cfg.Sockets; i++ {
		c, err := d.Dial("tcp", cfg.Target.String())
		if err != nil {
			return fmt.Errorf("loadgen: connect %s: %w", cfg.Target, err)
		}
		if cfg.Transport == "tls" {
			tcfg := &tls.Config{}
			if cfg.TLS != nil {
				tcfg = cfg.TLS.Clone()
			}
			if tcfg.ServerName == "" { // the target's certificate names its address
				tcfg.ServerName = cfg.Target.Addr().String()
			}
			tc := tls.Client(c, tcfg)
			if err := tc.Handshake(); err != nil {
				_ = c.Close()
				return fmt.Errorf("loadgen: TLS to %s: %w", cfg.Target, err)
			}
			c = tc
		}
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		s := &genSock{st: newStreamConn(c), tmpl: buildInvite(local, cfg.Target, g.run)}
		setTransport(s.tmpl.b, token)
		s.sbufs = make([][]byte, cfg.Batch)
		for j := range s.sbufs {
			s.sbufs[j] = append(make([]byte, 0, len(s.tmpl.b)), s.tmpl.b...)
		}
		s.via = []byte("Via: SIP/2.0/" + token + " " + hostString(local.Addr()) + ":" + strconv.Itoa(int(local.Port())) + ";branch=z9hG4bK-")
		s.defRURI = []byte("sip:sink@" + hostString(cfg.Target.Addr()) + ":" + strconv.Itoa(int(cfg.Target.Port())) +
			";transport=" + cfg.Transport)
		g.socks = append(g.socks, s)
	}
	return nil
}

// setTransport makes a UDP template a stream's, in place (same lengths).
func setTransport(b []byte, token string) {
	for _, r := range [][2]string{{"SIP/2.0/UDP ", "SIP/2.0/" + token + " "}, {";transport=udp>", ";transport=" + lower3(token) + ">"}} {
		if i := bytes.Index(b, []byte(r[0])); i >= 0 {
			copy(b[i:], r[1])
		}
	}
}

func lower3(s string) string { return string([]byte{s[0] | 0x20, s[1] | 0x20, s[2] | 0x20}) }

// receiveStream counts the responses arriving on one connection and, in
// full-call mode, answers each 2xx to INVITE with ACK and BYE on it.
func (g *Generator) receiveStream(s *genSock) {
	defer g.wg.Done()
	st := s.st
	handle := func(msg []byte) { g.handleResponse(s, msg, 0) }
	for {
		st.wbuf = st.wbuf[:0]
		err := st.readMessages(handle)
		if len(st.wbuf) > 0 {
			_, _ = st.c.Write(st.wbuf) // a failed ACK/BYE shows up as missing bye_ok
		}
		if err != nil {
			return
		}
	}
}

// streamSet is a stream sink's open connections.
type streamSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (s *streamSet) add(c net.Conn) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *streamSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *streamSet) closeAll() {
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
}

// listenStream makes the sink accept TCP (or TLS) connections.
func (s *Sink) listenStream() error {
	cfg := s.cfg
	ln, err := net.Listen("tcp", cfg.Listen.String())
	if err != nil {
		return fmt.Errorf("loadgen: sink listen %s: %w", cfg.Listen, err)
	}
	s.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	if cfg.Transport == "tls" {
		if cfg.TLS == nil {
			_ = ln.Close()
			return fmt.Errorf("%w: a TLS sink needs its TLS configuration", ErrConfig)
		}
		ln = tls.NewListener(ln, cfg.TLS)
	}
	s.ln = ln
	s.startChecker()
	s.rwg.Add(1)
	go func() {
		defer s.rwg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			s.streams.add(c)
			s.rwg.Add(1)
			go s.streamReader(c)
		}
	}()
	return nil
}

// streamReader serves one connection: each read is framed, every message
// handled, and the answers of the read written at once.
func (s *Sink) streamReader(c net.Conn) {
	defer s.rwg.Done()
	defer s.streams.remove(c)
	defer c.Close()
	st := newStreamConn(c)
	r := &sinkReader{s: s, stream: st,
		contact: []byte("Contact: <sip:sink@" + hostString(s.addr.Addr()) + ":" + fmt.Sprint(s.addr.Port()) + ";transport=" + s.cfg.Transport + ">\r\n")}
	// A request's arrival is timed when the read that completed it
	// returned.
	var now int64
	handle := func(msg []byte) {
		if now == 0 {
			now = wallNS()
		}
		r.handle(msg, -1, now, 0)
	}
	for {
		st.wbuf = st.wbuf[:0]
		err := st.readMessages(handle)
		now = 0
		if len(st.wbuf) > 0 {
			if _, werr := c.Write(st.wbuf); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
