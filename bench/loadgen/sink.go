package loadgen

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// SinkConfig configures a Sink, the next hop that answers calls.
type SinkConfig struct {
	// Listen is the UDP address to bind (required), e.g. 127.0.0.1:5070.
	Listen netip.AddrPort
	// Transport is "udp" (default), "tcp" or "tls" (with TLS, a server
	// configuration with the sink's certificate): on a stream the sink
	// accepts connections and answers on the one a request came on.
	Transport string
	TLS       *tls.Config
	// Readers is the number of SO_REUSEPORT sockets, each with its own
	// goroutine (default 1; the kernel spreads peers by 4-tuple, so one
	// proxy is served by one reader).
	Readers int
	// Batch is the recvmmsg batch size (default 64).
	Batch int
	// Provisional answers every INVITE with 100 Trying and 180 Ringing
	// before the 200 OK, instead of a lone 200 OK.
	Provisional bool
	// VerifyKey, when set, checks the signature and claims of a sample of
	// Identity headers: one in VerifyEvery (default 100) INVITEs that carry
	// one. Checks run off the receive path and are skipped, counted, when
	// the checker falls behind.
	VerifyKey   *ecdsa.PublicKey
	VerifyEvery int
}

// SinkStats are a Sink's cumulative counters.
type SinkStats struct {
	Invites      uint64 `json:"invites"`
	WithIdentity uint64 `json:"with_identity"`
	Acks         uint64 `json:"acks"`
	Byes         uint64 `json:"byes"`
	Other        uint64 `json:"other"`     // other requests (answered 200)
	Responses    uint64 `json:"responses"` // responses received (ignored)
	Malformed    uint64 `json:"malformed"`
	Unroutable   uint64 `json:"unroutable"` // no usable top Via
	VerifyOK     uint64 `json:"verify_ok"`
	VerifyFailed uint64 `json:"verify_failed"`
	VerifySkip   uint64 `json:"verify_skipped"`
	// StampKernel and StampUser count the INVITEs of a run timed by their
	// kernel receive timestamp and by the sink's read time (fallback).
	StampKernel uint64 `json:"stamp_kernel"`
	StampUser   uint64 `json:"stamp_user"`
}

// Sink plays the next hop: it receives requests in recvmmsg batches, records
// INVITE arrivals in the current run's ledger (when a Generator in the same
// process drives it), and answers by the top Via with sendmmsg batches.
type Sink struct {
	cfg   SinkConfig
	conns []*mmsgConn
	addr  netip.AddrPort
	led   atomic.Pointer[ledger]
	rwg   sync.WaitGroup // readers
	cwg   sync.WaitGroup // checker
	once  sync.Once

	invites, withIdentity, acks, byes, other, responses, malformed, unroutable atomic.Uint64
	verifyOK, verifyFailed, verifySkip                                         atomic.Uint64
	stampKernel, stampUser                                                     atomic.Uint64

	free  chan *[]byte // identity copies for the checker
	check chan *[]byte

	ln      net.Listener // a stream sink's
	streams streamSet
}

// maxIdentity bounds a sampled Identity header copy.
const maxIdentity = 4096

// NewSink binds the sink's sockets and starts answering.
func NewSink(cfg SinkConfig) (*Sink, error) {
	if !cfg.Listen.IsValid() {
		return nil, fmt.Errorf("%w: sink listen address", ErrConfig)
	}
	if cfg.Readers <= 0 {
		cfg.Readers = 1
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.VerifyKey != nil && cfg.VerifyEvery <= 0 {
		cfg.VerifyEvery = 100
	}
	s := &Sink{cfg: cfg}
	if isStream(cfg.Transport) {
		return s, s.listenStream()
	}
	if cfg.Transport != "" && cfg.Transport != "udp" {
		return nil, fmt.Errorf("%w: transport %q", ErrConfig, cfg.Transport)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	network := "udp4"
	if cfg.Listen.Addr().Is6() && !cfg.Listen.Addr().Is4In6() {
		network = "udp6"
	}
	addr := cfg.Listen
	for i := 0; i < cfg.Readers; i++ {
		pc, err := lc.ListenPacket(context.Background(), network, addr.String())
		if err != nil {
			s.closeConns()
			return nil, fmt.Errorf("loadgen: sink listen %s: %w", addr, err)
		}
		uc := pc.(*net.UDPConn)
		if i == 0 {
			addr = uc.LocalAddr().(*net.UDPAddr).AddrPort()
			s.addr = addr
		}
		mc, err := newMmsgConn(uc)
		if err != nil {
			_ = uc.Close()
			s.closeConns()
			return nil, err
		}
		s.conns = append(s.conns, mc)
		mc.stampedRecv = newRecvBatch(mc, cfg.Batch, maxMessage)
		if err := mc.stampedRecv.enableStamps(); err != nil {
			s.closeConns()
			return nil, err
		}
	}
	s.startChecker()
	for _, c := range s.conns {
		s.rwg.Add(1)
		go s.reader(c)
	}
	return s, nil
}

// startChecker starts the Identity checker when a key is configured.
func (s *Sink) startChecker() {
	cfg := s.cfg
	if cfg.VerifyKey != nil {
		s.free = make(chan *[]byte, 64)
		s.check = make(chan *[]byte, 64)
		for i := 0; i < cap(s.free); i++ {
			b := make([]byte, 0, maxIdentity)
			s.free <- &b
		}
		s.cwg.Add(1)
		go s.checker()
	}
}

// Addr is the bound address (useful when Listen had port 0).
func (s *Sink) Addr() netip.AddrPort { return s.addr }

// Stats returns the cumulative counters.
func (s *Sink) Stats() SinkStats {
	return SinkStats{
		Invites: s.invites.Load(), WithIdentity: s.withIdentity.Load(), Acks: s.acks.Load(),
		Byes: s.byes.Load(), Other: s.other.Load(), Responses: s.responses.Load(),
		Malformed: s.malformed.Load(), Unroutable: s.unroutable.Load(),
		VerifyOK: s.verifyOK.Load(), VerifyFailed: s.verifyFailed.Load(), VerifySkip: s.verifySkip.Load(),
		StampKernel: s.stampKernel.Load(), StampUser: s.stampUser.Load(),
	}
}

// Close stops the readers and the checker and waits for them.
func (s *Sink) Close() error {
	s.once.Do(func() {
		s.closeConns()
		s.rwg.Wait()
		if s.check != nil {
			close(s.check)
		}
		s.cwg.Wait()
	})
	return nil
}

func (s *Sink) closeConns() {
	for _, c := range s.conns {
		_ = c.conn.Close()
	}
	if s.ln != nil {
		_ = s.ln.Close()
		s.streams.closeAll()
	}
}

// sinkReader is one reader goroutine's preallocated state.
type sinkReader struct {
	s       *Sink
	stream  *streamConn // a stream's reader: answers go on it
	rb      *recvBatch
	sb      *sendBatch
	m       sipMsg
	ac      addrCache
	nIdent  uint64
	contact []byte
}

func (s *Sink) reader(c *mmsgConn) {
	defer s.rwg.Done()
	r := &sinkReader{
		s:       s,
		rb:      c.stampedRecv,
		sb:      newSendBatch(c, 3*s.cfg.Batch, maxMessage+1024),
		contact: []byte("Contact: <sip:sink@" + hostString(s.addr.Addr()) + ":" + fmt.Sprint(s.addr.Port()) + ";transport=udp>\r\n"),
	}
	for {
		n, err := r.rb.recv()
		if err != nil {
			return
		}
		out := r.process(n, wallNS())
		_ = r.sb.send(out) // a failed answer shows up as loss at the generator
	}
}

// process handles n received datagrams and queues the answers; it returns
// how many answers are queued. An INVITE's arrival time is its kernel
// receive timestamp, or now (the wall clock after recvmmsg returned) when it
// has none.
func (r *sinkReader) process(n int, now int64) int {
	out := 0
	for i := 0; i < n; i++ {
		out = r.handle(r.rb.msg(i), i, now, out)
	}
	return out
}

// handle handles one request or response, msg, the i-th of the receive
// batch (i < 0: a message framed on a stream, timed by now), and queues its
// answers from out on; it returns the new count of answers queued.
func (r *sinkReader) handle(msg []byte, i int, now int64, out int) int {
	s := r.s
	led := s.led.Load()
	m := &r.m
	if m.scan(msg) != nil {
		s.malformed.Add(1)
		return out
	}
	if !m.request {
		s.responses.Add(1)
		return out
	}
	var dst netip.AddrPort
	if r.stream == nil {
		if vt, err := parseVia(m.viaTop); err == nil {
			if a, ok := r.ac.resolve(vt.host); ok {
				dst = netip.AddrPortFrom(a, uint16(vt.port))
			}
		}
	}
	routable := r.stream != nil || dst.IsValid()
	switch {
	case bytes.Equal(m.method, []byte("INVITE")):
		s.invites.Add(1)
		identity := m.nIdentity > 0
		if identity {
			s.withIdentity.Add(1)
			r.sample(m.identity)
		}
		if led != nil {
			if seq, ts, run, ok := parseCallID(m.callID); ok && led.owns(seq, run) {
				at, kernel := now, false
				if i >= 0 {
					at, kernel = r.rb.stamp(i)
				}
				if kernel {
					s.stampKernel.Add(1)
				} else {
					at = now
					s.stampUser.Add(1)
				}
				led.arrive(seq, at-int64(ts), identity, kernel)
			}
		}
		if !routable {
			s.unroutable.Add(1)
			return out
		}
		if s.cfg.Provisional {
			out = r.answer(out, dst, 100, "Trying", false)
			out = r.answer(out, dst, 180, "Ringing", false)
		}
		out = r.answer(out, dst, 200, "OK", true)
	case bytes.Equal(m.method, []byte("ACK")):
		s.acks.Add(1)
	default:
		if bytes.Equal(m.method, []byte("BYE")) {
			s.byes.Add(1)
		} else {
			s.other.Add(1)
		}
		if !routable {
			s.unroutable.Add(1)
			return out
		}
		out = r.answer(out, dst, 200, "OK", false)
	}
	return out
}

// answerSDP is the body of a 200 OK to INVITE.
const answerSDP = "v=0\r\no=shakesink 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"

var answerSDPLen = []byte(fmt.Sprint(len(answerSDP)))

// answer appends a response to the current request as message out of the
// send batch. Buffers are maxMessage+1024 bytes and a response copies at
// most the scanned headers of a maxMessage request, so append never grows.
func (r *sinkReader) answer(out int, dst netip.AddrPort, code int, reason string, sdp bool) int {
	if r.stream != nil { // on the connection the request came on
		r.stream.wbuf = r.appendAnswer(r.stream.wbuf, code, reason, sdp)
		return out + 1
	}
	b := r.appendAnswer(r.sb.bufs[out][:0], code, reason, sdp)
	r.sb.setLen(out, len(b))
	r.sb.setDest(out, dst)
	return out + 1
}

// appendAnswer appends the response to the current request to b.
func (r *sinkReader) appendAnswer(b []byte, code int, reason string, sdp bool) []byte {
	m := &r.m
	b = append(b, "SIP/2.0 "...)
	b = append(b, byte('0'+code/100), byte('0'+code/10%10), byte('0'+code%10), ' ')
	b = append(b, reason...)
	b = append(b, crlf...)
	for i := 0; i < m.nvia; i++ {
		b = append(b, m.vias[i]...)
		b = append(b, crlf...)
	}
	b = append(b, m.fromLine...)
	b = append(b, crlf...)
	b = append(b, m.toLine...)
	if code > 100 && !bytes.Contains(m.toVal, []byte(";tag=")) {
		b = append(b, ";tag=shakesink"...)
	}
	b = append(b, crlf...)
	b = append(b, m.callIDLine...)
	b = append(b, crlf...)
	b = append(b, m.cseqLine...)
	b = append(b, crlf...)
	if code > 100 && bytes.Equal(m.method, []byte("INVITE")) {
		b = append(b, r.contact...)
	}
	if sdp {
		b = append(b, "Content-Type: application/sdp\r\nContent-Length: "...)
		b = append(b, answerSDPLen...)
		b = append(b, "\r\n\r\n"...)
		b = append(b, answerSDP...)
	} else {
		b = append(b, "Content-Length: 0\r\n\r\n"...)
	}
	return b
}

// sample hands one in VerifyEvery Identity values to the checker.
func (r *sinkReader) sample(v []byte) {
	s := r.s
	if s.check == nil {
		return
	}
	r.nIdent++
	if r.nIdent%uint64(s.cfg.VerifyEvery) != 1 && s.cfg.VerifyEvery > 1 {
		return
	}
	if len(v) > maxIdentity {
		s.verifyFailed.Add(1)
		return
	}
	select {
	case b := <-s.free:
		*b = append((*b)[:0], v...)
		s.check <- b
	default:
		s.verifySkip.Add(1)
	}
}

func (s *Sink) checker() {
	defer s.cwg.Done()
	for b := range s.check {
		if err := VerifyIdentity(s.cfg.VerifyKey, *b); err != nil {
			s.verifyFailed.Add(1)
		} else {
			s.verifyOK.Add(1)
		}
		s.free <- b
	}
}
