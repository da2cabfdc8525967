package fastpath

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/sip"
)

// Server runs the event loops.
type Server struct {
	cfg       Config
	advertise netip.AddrPort
	tlsPort   uint16              // the port of our Via when a request leaves over TLS
	viaHost   []byte              // host part of our Via sent-by, as written
	viaPrefix [nTransports][]byte // "Via: SIP/2.0/<transport> host:port;branch=", by transport
	log       *slog.Logger
	limit     logLimiter

	mu    sync.Mutex // guards loop creation only (once per loop)
	loops map[int]*loop
	byEL  map[gnet.EventLoop]*loop
	all   []*loop // every loop, gnet's and the TLS ones
	byFD  [1024]atomic.Pointer[loop]
	wg    sync.WaitGroup // sender, verifier, sweeper, TLS and dial goroutines

	eg        egress   // the mode's, chosen in New
	verifier  Verifier // cfg.Verifier where the mode carries a verification result, else nil
	heartbeat bool     // the loops tick (inline mode: the XDP heartbeat)
	streams   bool     // SIP over TCP and TLS (proxy and redirect modes)

	conns     *connTable
	bufs      *bufPool
	tlsServer *tls.Config // nil: no TLS listener
	tlsClient *tls.Config
	tlsLoops  chan *loop
	tlsOnce   sync.Once
	udpOut    int  // a UDP socket of the SIP address for loops that have none of their own (-1: none)
	udpOutV6  bool // it is AF_INET6
	nh        atomic.Pointer[hopStatus]
	tlsLn     net.Listener
	udpHost   string          // the SIP address as gnet was given it (DupListener)
	ctx       context.Context // ends when the server stops (dials)
	cancel    context.CancelFunc

	verifyq     chan *job                  // verification jobs of every loop (verification is rarer and slower than signing)
	bset        atomic.Pointer[builderSet] // the div and rcd builders for the credential's x5u (divert.go)
	eng         gnet.Engine
	booted      chan struct{}
	stopSenders chan struct{}
	stopped     atomic.Bool
}

// New checks cfg and returns a Server; Run starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Credential == nil && cfg.Builder != nil && cfg.Signer != nil {
		cfg.Credential = credential.NewHolder(&credential.Credential{Signer: cfg.Signer, Builder: cfg.Builder, Fingerprint: cfg.CertFingerprint})
	}
	if cfg.Credential == nil || cfg.Credential.Load() == nil || cfg.Policy == nil || cfg.Numbers == nil {
		return nil, errors.New("fastpath: Builder, Signer, Policy and Numbers are required")
	}
	if !cfg.Listen.IsValid() {
		return nil, errors.New("fastpath: a listen address is required")
	}
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	if cfg.Freshness <= 0 {
		cfg.Freshness = 60 * time.Second
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 100 * time.Millisecond
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.SocketBuffer <= 0 {
		cfg.SocketBuffer = 4 << 20
	}
	if cfg.RecvBuffer <= 0 {
		cfg.RecvBuffer = DefaultRecvBuffer
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxPerSource <= 0 {
		cfg.MaxPerSource = DefaultMaxPerSource
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MessageTimeout <= 0 {
		cfg.MessageTimeout = DefaultMessageTimeout
	}
	if cfg.UDPMTU < 0 {
		return nil, errors.New("fastpath: udp_mtu must be 0 (off) or a size in bytes")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	adv := cfg.Advertise
	if !adv.IsValid() {
		adv = cfg.Listen
	}
	s := &Server{cfg: cfg, advertise: adv, log: cfg.Logger, loops: map[int]*loop{}, byEL: map[gnet.EventLoop]*loop{},
		booted: make(chan struct{}), stopSenders: make(chan struct{}), udpOut: -1}
	// The mode is chosen here, once: the loops call its egress and never
	// test it (route.go).
	needAdvertise := true // an address for our Via; inline adds none
	switch cfg.Mode {
	case Proxy:
		s.eg, s.verifier, s.streams = proxyEgress{}, cfg.Verifier, true
	case Redirect:
		// A 302 carries no verification result: no verifier.
		s.eg, s.streams = redirectEgress{}, true
	case Inline:
		if cfg.Steering == nil || cfg.Reinjector == nil {
			return nil, errors.New("fastpath: inline mode needs the XDP steering and a reinjector")
		}
		if cfg.TLSServer != nil || cfg.NextHopTransport != UDP {
			return nil, errors.New("fastpath: inline mode carries UDP only (SIP over TCP passes the wire unchanged)")
		}
		// The loops tick to keep the XDP program's view of them fresh
		// (handler.go).
		s.eg, s.verifier, s.heartbeat, needAdvertise = inlineEgress{}, cfg.Verifier, true, false
	default:
		return nil, fmt.Errorf("fastpath: unknown mode %v", cfg.Mode)
	}
	if needAdvertise && adv.Addr().IsUnspecified() {
		return nil, errors.New("fastpath: listening on an unspecified address needs an advertised address for Via")
	}
	if cfg.NextHopTransport >= nTransports || cfg.NextHopTransport != UDP && !cfg.NextHop.IsValid() {
		return nil, errors.New("fastpath: a next-hop transport needs a next hop")
	}
	if cfg.TLSServer != nil {
		if !cfg.ListenTLS.IsValid() {
			return nil, errors.New("fastpath: a TLS listener needs its address")
		}
		s.tlsServer = cfg.TLSServer.Clone()
		s.tlsServer.MinVersion = max(s.tlsServer.MinVersion, tls.VersionTLS12)
	}
	s.tlsClient = &tls.Config{}
	if cfg.TLSClient != nil {
		s.tlsClient = cfg.TLSClient.Clone()
	}
	s.tlsClient.MinVersion = max(s.tlsClient.MinVersion, tls.VersionTLS12)
	s.tlsClient.InsecureSkipVerify = false // the next hop's certificate is always verified
	host := adv.Addr().Unmap().String()
	if adv.Addr().Is6() && !adv.Addr().Is4In6() {
		host = "[" + host + "]"
	}
	s.viaHost = []byte(host)
	s.tlsPort = adv.Port()
	if cfg.ListenTLS.IsValid() {
		s.tlsPort = cfg.ListenTLS.Port()
	}
	for t := range nTransports {
		port := adv.Port()
		if t == TLS {
			port = s.tlsPort
		}
		s.viaPrefix[t] = fmt.Appendf(nil, "Via: SIP/2.0/%s %s:%d;branch=", viaTokens[t], host, port)
	}
	if cfg.VerifyWorkers <= 0 {
		s.cfg.VerifyWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.VerifyBudget <= 0 {
		s.cfg.VerifyBudget = time.Second
	}
	s.verifyq = make(chan *job, cfg.MaxInFlight)
	s.conns = newConnTable(s.cfg.MaxConnections, s.cfg.MaxPerSource)
	s.bufs = newBufPool(streamBufferBudget)
	s.tlsLoops = make(chan *loop, s.cfg.Loops)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Run serves until ctx is cancelled or Stop is called.
func (s *Server) Run(ctx context.Context) error {
	host := s.cfg.Listen.String()
	udp, tcp := "udp4://"+host, "tcp4://"+host
	switch a := s.cfg.Listen.Addr(); {
	case a.Is6() && a.IsUnspecified():
		// gnet makes "::" an IPv6-only socket; an empty host is the
		// dual-stack wildcard (IPv4 peers arrive v4-mapped).
		host = ":" + strconv.Itoa(int(s.cfg.Listen.Port()))
		udp, tcp = "udp://"+host, "tcp://"+host
	case a.Is6() && !a.Is4In6():
		udp, tcp = "udp6://"+host, "tcp6://"+host
	}
	s.udpHost = host
	addrs := []string{udp}
	if s.streams {
		if err := probeTCP(tcp); err != nil {
			return fmt.Errorf("fastpath: SIP over TCP: %w", err)
		}
		addrs = append(addrs, tcp)
	}
	defer s.cancel()
	if s.tlsServer != nil {
		lc := net.ListenConfig{}
		ln, err := lc.Listen(ctx, "tcp", s.cfg.ListenTLS.String())
		if err != nil {
			return fmt.Errorf("fastpath: SIP over TLS: %w", err)
		}
		s.wg.Add(1)
		go s.acceptTLS(ln)
		defer ln.Close()
		s.tlsLn = ln
	}
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	if s.verifier != nil {
		for range s.cfg.VerifyWorkers {
			s.wg.Add(1)
			go s.verifyWorker(ctx)
		}
	}
	if s.streams {
		s.wg.Add(1)
		go s.sweep(s.stopSenders)
	}
	err := gnet.Rotate(&handler{s: s}, addrs,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithReusePort(true),
		gnet.WithLockOSThread(false),
		gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithReadBufferCap(sip.MaxMessage+1),
		gnet.WithSocketRecvBuffer(s.cfg.RecvBuffer),
		gnet.WithSocketSendBuffer(s.cfg.SocketBuffer),
		gnet.WithTCPKeepAlive(time.Minute),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithTicker(s.heartbeat),
	)
	// gnet has closed its connections; the TLS ones and the attempts
	// under way end here.
	s.stopped.Store(true)
	s.cancel()
	if s.tlsLn != nil {
		_ = s.tlsLn.Close()
	}
	s.conns.each(func(c *conn) { c.shut(closeShutdown) })
	close(s.stopSenders)
	s.wg.Wait()
	if s.udpOut >= 0 {
		_ = unix.Close(s.udpOut)
	}
	s.mu.Lock()
	for _, l := range s.all { // the loops have ended with gnet.Run
		if l.idle != nil {
			l.idle.Close()
		}
	}
	s.mu.Unlock()
	return err
}

// Booted is closed once the loops listen.
func (s *Server) Booted() <-chan struct{} { return s.booted }

// Stop stops the loops; Run returns.
func (s *Server) Stop() {
	if s.stopped.Swap(true) {
		return
	}
	<-s.booted
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.eng.Stop(ctx)
}

// probeTCP binds and closes a TCP listener on proto://host as gnet will
// (SO_REUSEPORT), so that an address in use is reported as such: gnet
// v2.10 closes a listener whose bind failed and then sets an option on it,
// and reports "setsockopt: bad file descriptor" instead.
func probeTCP(addr string) error {
	network, host, _ := strings.Cut(addr, "://")
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), network, host)
	if err != nil {
		return err
	}
	return ln.Close()
}
