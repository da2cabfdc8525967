package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors; every error from this package wraps one of them or a
// system error.
var (
	ErrConfig    = errors.New("loadgen: bad configuration")
	ErrNumber    = errors.New("loadgen: number is not +1 followed by a 10-digit NANP number")
	ErrMalformed = errors.New("loadgen: malformed SIP message")
	ErrIdentity  = errors.New("loadgen: Identity header does not verify")
	ErrKey       = errors.New("loadgen: unusable key")
	ErrClosed    = errors.New("loadgen: closed")
	ErrBusy      = errors.New("loadgen: a run is already in progress")
)

// Config is the static part of a Generator.
type Config struct {
	// Target receives the INVITEs (the proxy under test, or the sink).
	Target netip.AddrPort
	// Local is the address the sockets bind (default 127.0.0.1, or ::1 for
	// an IPv6 target).
	Local netip.Addr
	// Sockets is how many UDP sockets (source ports) calls are spread over
	// (default 16).
	Sockets int
	// Workers is the number of sending goroutines; each paces Rate/Workers
	// over its share of the sockets (default 1).
	Workers int
	// Batch is the most INVITEs one sendmmsg call carries (default 32).
	Batch int
	// FullCall sends ACK and BYE on each 2xx to INVITE (to Target, as a
	// UAC behind a stateless proxy does).
	FullCall bool
	// FromNumbers and ToNumbers are the pools of calling and called
	// numbers, each "+1" and ten NANP digits; calls cycle through them.
	// Defaults: 1000 generated numbers each.
	FromNumbers, ToNumbers []string
	// Drain is how long a run waits after its last send for arrivals and
	// answers (default 1s; the wait ends early when all are in).
	Drain time.Duration
	// MaxCalls bounds the calls of a run whose size is not otherwise
	// bounded (open loop without Count) and so its ledger memory, 8 bytes
	// per call (default 10,000,000).
	MaxCalls int
	// Sink, when set, is the in-process next hop whose arrivals give
	// latency and loss; without it loss is counted from final answers.
	Sink *Sink
	// Transport is "udp" (default), "tcp" or "tls": on a stream each of the
	// Sockets is one persistent connection to Target (TLS with the client
	// configuration TLS), INVITEs of a batch leave in one write, and the
	// responses, ACKs and BYEs travel on the same connection. INVITEs are
	// then timed by the wall clock (Call-ID) and the sink's read time.
	Transport string
	TLS       *tls.Config
	// UserSendTime times each INVITE by the wall clock read just before the
	// sendmmsg that carries it only, without the kernel's per-datagram
	// transmit timestamps (SO_TIMESTAMPING, read from the error queue after
	// each batch). For measuring what the transmit stamps cost and change.
	UserSendTime bool
}

// Load is one run: a rate (calls/s; 0 = open loop, as fast as the
// generator can), bounded by Duration (default 10s) and, if set, Count.
type Load struct {
	Rate     float64
	Duration time.Duration
	Count    int
}

// Generator sends INVITEs from many source ports in sendmmsg batches and
// counts what comes back. Run may be called repeatedly, one at a time.
type Generator struct {
	cfg     Config
	run     uint32
	socks   []*genSock
	from    []byte // 11 digits per number
	to      []byte
	cur     atomic.Pointer[ledger]
	nextSeq uint64
	busy    atomic.Bool
	wg      sync.WaitGroup
	once    sync.Once

	stray, malformed atomic.Uint64
}

// genSock is one source port: the INVITE batch (prebuilt copies of the
// template, patched in place), the receive batch and the ACK/BYE batch.
type genSock struct {
	c       *mmsgConn   // UDP
	st      *streamConn // TCP or TLS
	sbufs   [][]byte    // a stream's INVITE batch
	tmpl    *template
	out     *sendBatch // owned by the sending worker
	rb      *recvBatch // owned by the receive goroutine
	resp    *sendBatch // owned by the receive goroutine
	via     []byte     // "Via: SIP/2.0/UDP host:port;branch=z9hG4bK-"
	defRURI []byte
	m       sipMsg
	nResp   int
	// Transmit timestamps (nil with Config.UserSendTime): txNext is the
	// OPT_ID the kernel gives the next stamped INVITE on this socket, and
	// txRing the last batches sent, to map IDs back to sequence numbers.
	tx     *txStamper
	txNext uint32
	txRing [txRingLen]txBatch
	txPos  int
}

// txBatch is one sent batch: IDs [id, id+k) carried sequence numbers
// [seq, seq+k), sent at user-space wall time ts.
type txBatch struct {
	id   uint32
	k    uint32
	seq  uint64
	ts   int64
	led  *ledger
	used bool
}

const txRingLen = 8

// NewGenerator opens the sockets and starts their receive goroutines.
func NewGenerator(cfg Config) (*Generator, error) {
	if !cfg.Target.IsValid() {
		return nil, fmt.Errorf("%w: target address", ErrConfig)
	}
	if !cfg.Local.IsValid() {
		cfg.Local = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if cfg.Target.Addr().Is6() && !cfg.Target.Addr().Is4In6() {
			cfg.Local = netip.IPv6Loopback()
		}
	}
	if cfg.Sockets <= 0 {
		cfg.Sockets = 16
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Workers > cfg.Sockets {
		cfg.Workers = cfg.Sockets
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 32
	}
	if cfg.Drain <= 0 {
		cfg.Drain = time.Second
	}
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = 10_000_000
	}
	g := &Generator{cfg: cfg}
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	g.run = binary.BigEndian.Uint32(rb[:])
	var err error
	if g.from, err = numberPool(cfg.FromNumbers, 1); err != nil {
		return nil, err
	}
	if g.to, err = numberPool(cfg.ToNumbers, 2); err != nil {
		return nil, err
	}
	if isStream(cfg.Transport) {
		if err := g.dialStreams(); err != nil {
			g.closeSocks()
			return nil, err
		}
		for _, s := range g.socks {
			g.wg.Add(1)
			go g.receiveStream(s)
		}
		return g, nil
	}
	if cfg.Transport != "" && cfg.Transport != "udp" {
		return nil, fmt.Errorf("%w: transport %q", ErrConfig, cfg.Transport)
	}
	network := "udp4"
	if cfg.Local.Is6() && !cfg.Local.Is4In6() {
		network = "udp6"
	}
	for i := 0; i < cfg.Sockets; i++ {
		uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.Local, 0)))
		if err != nil {
			g.closeSocks()
			return nil, fmt.Errorf("loadgen: generator socket: %w", err)
		}
		mc, err := newMmsgConn(uc)
		if err != nil {
			_ = uc.Close()
			g.closeSocks()
			return nil, err
		}
		local := uc.LocalAddr().(*net.UDPAddr).AddrPort()
		s := &genSock{c: mc, tmpl: buildInvite(local, cfg.Target, g.run)}
		s.out = newSendBatch(mc, cfg.Batch, len(s.tmpl.b))
		for j := range s.out.bufs {
			copy(s.out.bufs[j], s.tmpl.b)
			s.out.setLen(j, len(s.tmpl.b))
			s.out.setDest(j, cfg.Target)
		}
		if !cfg.UserSendTime {
			if s.tx, err = enableTxStamps(s.out); err != nil {
				_ = uc.Close()
				g.closeSocks()
				return nil, err
			}
		}
		s.rb = newRecvBatch(mc, 64, maxMessage)
		s.resp = newSendBatch(mc, 128, maxMessage+512)
		s.via = []byte("Via: SIP/2.0/UDP " + hostString(local.Addr()) + ":" + strconv.Itoa(int(local.Port())) + ";branch=z9hG4bK-")
		s.defRURI = []byte("sip:sink@" + hostString(cfg.Target.Addr()) + ":" + strconv.Itoa(int(cfg.Target.Port())))
		g.socks = append(g.socks, s)
	}
	for _, s := range g.socks {
		g.wg.Add(1)
		go g.receive(s)
	}
	return g, nil
}

// Close closes the sockets and waits for the receive goroutines.
func (g *Generator) Close() error {
	g.once.Do(g.closeSocks)
	g.wg.Wait()
	return nil
}

func (g *Generator) closeSocks() {
	for _, s := range g.socks {
		if s.st != nil {
			_ = s.st.c.Close()
			continue
		}
		_ = s.c.conn.Close()
	}
}

// Run sends one load and returns its result after the drain time.
func (g *Generator) Run(ctx context.Context, load Load) (Result, error) {
	if !g.busy.CompareAndSwap(false, true) {
		return Result{}, ErrBusy
	}
	defer g.busy.Store(false)
	if load.Rate < 0 || math.IsNaN(load.Rate) || math.IsInf(load.Rate, 0) || load.Count < 0 || load.Duration < 0 {
		return Result{}, fmt.Errorf("%w: rate %v count %d duration %v", ErrConfig, load.Rate, load.Count, load.Duration)
	}
	if load.Duration == 0 {
		load.Duration = 10 * time.Second
	}
	n := load.Count
	if n == 0 {
		n = g.cfg.MaxCalls
		if load.Rate > 0 {
			want := math.Ceil(load.Rate*load.Duration.Seconds()) + float64(g.cfg.Workers*g.cfg.Batch)
			if want < float64(n) {
				n = int(want)
			}
		}
	}
	led := newLedger(g.run, g.nextSeq, n)
	g.nextSeq += uint64(n)
	g.cur.Store(led)
	var before SinkStats
	if g.cfg.Sink != nil {
		before = g.cfg.Sink.Stats()
		g.cfg.Sink.led.Store(led)
	}

	start := time.Now()
	deadline := start.Add(load.Duration)
	errs := make(chan error, g.cfg.Workers)
	var wg sync.WaitGroup
	for w := 0; w < g.cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.send(ctx, w, led, load.Rate/float64(g.cfg.Workers), start, deadline); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	sendTime := time.Since(start)
	close(errs)
	var runErr error
	for err := range errs {
		runErr = errors.Join(runErr, err)
	}
	g.drain(ctx, led)
	res := led.result(load.Rate, sendTime, g.cfg.Sink != nil)
	if g.cfg.Sink != nil {
		after := g.cfg.Sink.Stats()
		res.VerifyOK = after.VerifyOK - before.VerifyOK
		res.VerifyFailed = after.VerifyFailed - before.VerifyFailed
	}
	return res, runErr
}

// drain waits until everything sent was seen (or Drain passes).
func (g *Generator) drain(ctx context.Context, led *ledger) {
	end := time.Now().Add(g.cfg.Drain)
	for time.Now().Before(end) && ctx.Err() == nil {
		sent := led.sent.Load()
		done := led.answered.Load()+led.failed.Load() >= sent
		if g.cfg.Sink != nil {
			done = done && led.received.Load() >= sent
		}
		if g.cfg.FullCall {
			done = done && led.byeOK.Load() >= led.answered.Load()
		}
		if done {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// send is one pacing worker: token bucket at rate (0 = open loop), batches
// of up to Batch INVITEs, round robin over its sockets. No allocation per
// batch.
func (g *Generator) send(ctx context.Context, w int, led *ledger, rate float64, start, deadline time.Time) error {
	var mine []*genSock
	for i := w; i < len(g.socks); i += g.cfg.Workers {
		mine = append(mine, g.socks[i])
	}
	var dc dateCache
	pc := newPacer()
	sent := 0
	for si := 0; ; si++ {
		now := time.Now()
		if !now.Before(deadline) || ctx.Err() != nil {
			return nil
		}
		k := g.cfg.Batch
		if rate > 0 {
			due := int(rate*now.Sub(start).Seconds()) + 1 - sent
			if due <= 0 {
				next := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
				if d := next.Sub(now); d > pc.early {
					pc.sleep(d)
					si--
					continue
				}
				due = 1 // due within the pacer's resolution: send it now
			}
			k = min(k, due)
		}
		s := mine[si%len(mine)]
		n, err := g.sendBatch(s, led, k, now, &dc)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil // ledger full: Count reached
		}
		sent += n
	}
}

// sendBatch patches and sends up to k INVITEs on s.
func (g *Generator) sendBatch(s *genSock, led *ledger, k int, now time.Time, dc *dateCache) (int, error) {
	seq, k := led.take(k)
	if k == 0 {
		return 0, nil
	}
	f := callFields{date: dc.get(now)}
	nf, nt := uint64(len(g.from)/11), uint64(len(g.to)/11)
	bufs := s.sbufs
	if s.out != nil {
		bufs = s.out.bufs
	}
	for i := 0; i < k; i++ {
		f.seq = seq + uint64(i)
		fi := f.seq % nf
		ti := (f.seq/nf + f.seq) % nt
		f.from = g.from[fi*11 : fi*11+11]
		f.to = g.to[ti*11 : ti*11+11]
		s.tmpl.patch(bufs[i], &f)
	}
	// The send time goes in last, as close to the sendmmsg as it can be:
	// latency is the sink's kernel receive timestamp minus this, corrected
	// by the datagram's own kernel transmit timestamp when there is one.
	ts := wallNS()
	for i := 0; i < k; i++ {
		s.tmpl.patchTS(bufs[i], uint64(ts))
	}
	if s.st != nil {
		if err := s.st.writeBatch(bufs[:k]); err != nil {
			return 0, err
		}
		led.sent.Add(uint64(k))
		return k, nil
	}
	if s.tx != nil {
		s.txRing[s.txPos] = txBatch{id: s.txNext, k: uint32(k), seq: seq, ts: ts, led: led, used: true}
		s.txPos = (s.txPos + 1) % txRingLen
		s.txNext += uint32(k)
	}
	if err := s.out.send(k); err != nil {
		return 0, err
	}
	led.sent.Add(uint64(k))
	if s.tx != nil {
		g.readTxStamps(s)
	}
	return k, nil
}

// readTxStamps reads the transmit timestamps queued so far on s (on
// loopback, those of the batch just sent) and records, per INVITE, how long
// after the user-space send time the kernel handed it to the device.
func (g *Generator) readTxStamps(s *genSock) {
	for {
		n := s.tx.read()
		for j := 0; j < n; j++ {
			id, at := s.tx.ids[j], s.tx.at[j]
			for r := range s.txRing {
				b := &s.txRing[r]
				if d := id - b.id; b.used && d < b.k {
					b.led.sentStamp(b.seq+uint64(d), at-b.ts)
					break
				}
			}
		}
		if n < len(s.tx.hdrs) {
			return
		}
	}
}

// receive counts the responses arriving on one socket and, in full-call
// mode, answers each 2xx to INVITE with ACK and BYE.
func (g *Generator) receive(s *genSock) {
	defer g.wg.Done()
	for {
		n, err := s.rb.recv()
		if err != nil {
			return
		}
		out := g.handleResponses(s, n)
		_ = s.resp.send(out) // a failed ACK/BYE shows up as missing bye_ok
	}
}

func (g *Generator) handleResponses(s *genSock, n int) int {
	out := 0
	for i := 0; i < n; i++ {
		out = g.handleResponse(s, s.rb.msg(i), out)
	}
	return out
}

// handleResponse counts one response and, for a 2xx to INVITE in
// full-call mode, queues its ACK and BYE from out on; it returns the new
// count queued.
func (g *Generator) handleResponse(s *genSock, msg []byte, out int) int {
	led := g.cur.Load()
	m := &s.m
	if m.scan(msg) != nil || m.request {
		g.malformed.Add(1)
		return out
	}
	seq, _, run, ok := parseCallID(m.callID)
	if !ok || led == nil || !led.owns(seq, run) {
		g.stray.Add(1)
		return out
	}
	switch string(m.cseqMethod) { // string(b) in a switch does not allocate
	case "INVITE":
		switch {
		case m.status < 200:
			led.provisional.Add(1)
		case m.status < 300:
			led.answered.Add(1)
			if g.cfg.FullCall && (s.st != nil || out+2 <= len(s.resp.bufs)) {
				out = g.appendInDialog(s, out, "ACK", "1 ACK", "-ack")
				out = g.appendInDialog(s, out, "BYE", "2 BYE", "-bye")
			}
		default:
			led.failed.Add(1)
		}
	case "BYE":
		if m.status >= 200 && m.status < 300 {
			led.byeOK.Add(1)
		}
	}
	return out
}

// appendInDialog builds an ACK or BYE for the 2xx in s.m as message out of
// s.resp, sent to Target. Buffers hold maxMessage+512 bytes and the copied
// lines come from a message of at most maxMessage, so append never grows.
func (g *Generator) appendInDialog(s *genSock, out int, method, cseq, branchSuffix string) int {
	if s.st != nil { // on the connection, after the batch of reads
		s.st.wbuf = s.inDialog(s.st.wbuf, method, cseq, branchSuffix)
		return out + 1
	}
	b := s.inDialog(s.resp.bufs[out][:0], method, cseq, branchSuffix)
	s.resp.setLen(out, len(b))
	if s.nResp <= out {
		s.resp.setDest(out, g.cfg.Target)
		s.nResp = out + 1
	}
	return out + 1
}

// inDialog appends an ACK or BYE for the 2xx in s.m to b.
func (s *genSock) inDialog(b []byte, method, cseq, branchSuffix string) []byte {
	m := &s.m
	b = append(b, method...)
	b = append(b, ' ')
	if len(m.contactURI) > 0 {
		b = append(b, m.contactURI...)
	} else {
		b = append(b, s.defRURI...)
	}
	b = append(b, " SIP/2.0\r\n"...)
	b = append(b, s.via...)
	b = append(b, m.callID[:16]...)
	b = append(b, branchSuffix...)
	b = append(b, ";rport\r\nMax-Forwards: 70\r\n"...)
	b = append(b, m.fromLine...)
	b = append(b, crlf...)
	b = append(b, m.toLine...)
	b = append(b, crlf...)
	b = append(b, m.callIDLine...)
	b = append(b, "\r\nCSeq: "...)
	b = append(b, cseq...)
	b = append(b, "\r\nContent-Length: 0\r\n\r\n"...)
	return b
}

// Stray is the number of responses that matched no current call, and
// Malformed the number of datagrams that did not scan.
func (g *Generator) Stray() uint64     { return g.stray.Load() }
func (g *Generator) Malformed() uint64 { return g.malformed.Load() }

// numberPool validates numbers (or generates count defaults) and returns
// them as 11-digit runs.
func numberPool(nums []string, seed uint64) ([]byte, error) {
	if len(nums) == 0 {
		return defaultPool(1000, seed), nil
	}
	out := make([]byte, 0, 11*len(nums))
	for _, n := range nums {
		if !validNANP(n) {
			return nil, fmt.Errorf("%w: %q", ErrNumber, n)
		}
		out = append(out, n[1:]...)
	}
	return out, nil
}

// validNANP accepts +1NXXNXXXXXX (N = 2-9).
func validNANP(n string) bool {
	if len(n) != 12 || n[0] != '+' || n[1] != '1' {
		return false
	}
	for i := 2; i < 12; i++ {
		if n[i] < '0' || n[i] > '9' {
			return false
		}
	}
	return n[2] >= '2' && n[5] >= '2'
}

// defaultPool makes count plausible NANP numbers from a fixed seed.
func defaultPool(count int, seed uint64) []byte {
	npas := []string{"201", "212", "305", "312", "404", "415", "512", "617", "702", "808", "917", "972"}
	x := seed*0x9e3779b97f4a7c15 + 1
	out := make([]byte, 0, 11*count)
	for i := 0; i < count; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		npa := npas[x%uint64(len(npas))]
		nxx := 200 + (x>>8)%800
		if nxx%100 == 11 {
			nxx++
		}
		line := (x >> 20) % 10000
		out = fmt.Appendf(out, "1%s%03d%04d", npa, nxx, line)
	}
	return out
}
