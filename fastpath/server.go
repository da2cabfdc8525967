package fastpath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/sip"
)

// Server runs the event loops.
type Server struct {
	cfg       Config
	advertise netip.AddrPort
	viaHost   []byte // host part of our Via sent-by, as written
	viaPrefix []byte // "Via: SIP/2.0/UDP host:port;branch="
	log       *slog.Logger
	limit     logLimiter

	mu    sync.Mutex // guards loops creation only (once per loop)
	loops map[int]*loop
	byFD  [1024]atomic.Pointer[loop]
	wg    sync.WaitGroup // sender goroutines

	eg        egress   // the mode's, chosen in New
	verifier  Verifier // cfg.Verifier where the mode carries a verification result, else nil
	heartbeat bool     // the loops tick (inline mode: the XDP heartbeat)

	verifyq     chan *job // verification jobs of every loop (verification is rarer and slower than signing)
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
	s := &Server{cfg: cfg, advertise: adv, log: cfg.Logger, loops: map[int]*loop{},
		booted: make(chan struct{}), stopSenders: make(chan struct{})}
	// The mode is chosen here, once: the loops call its egress and never
	// test it (route.go).
	needAdvertise := true // an address for our Via; inline adds none
	switch cfg.Mode {
	case Proxy:
		s.eg, s.verifier = proxyEgress{}, cfg.Verifier
	case Redirect:
		// A 302 carries no verification result: no verifier.
		s.eg = redirectEgress{}
	case Inline:
		if cfg.Steering == nil || cfg.Reinjector == nil {
			return nil, errors.New("fastpath: inline mode needs the XDP steering and a reinjector")
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
	host := adv.Addr().Unmap().String()
	if adv.Addr().Is6() && !adv.Addr().Is4In6() {
		host = "[" + host + "]"
	}
	s.viaHost = []byte(host)
	s.viaPrefix = fmt.Appendf(nil, "Via: SIP/2.0/UDP %s:%d;branch=", host, adv.Port())
	if cfg.VerifyWorkers <= 0 {
		s.cfg.VerifyWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.VerifyBudget <= 0 {
		s.cfg.VerifyBudget = time.Second
	}
	s.verifyq = make(chan *job, cfg.MaxInFlight)
	return s, nil
}

// Run serves until ctx is cancelled or Stop is called.
func (s *Server) Run(ctx context.Context) error {
	addr := "udp4://" + s.cfg.Listen.String()
	switch a := s.cfg.Listen.Addr(); {
	case a.Is6() && a.IsUnspecified():
		// gnet makes "::" an IPv6-only socket; an empty host is the
		// dual-stack wildcard (IPv4 peers arrive v4-mapped).
		addr = "udp://:" + strconv.Itoa(int(s.cfg.Listen.Port()))
	case a.Is6() && !a.Is4In6():
		addr = "udp6://" + s.cfg.Listen.String()
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
	err := gnet.Run(&handler{s: s}, addr,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithReusePort(true),
		gnet.WithLockOSThread(false),
		gnet.WithReadBufferCap(sip.MaxMessage+1),
		gnet.WithSocketRecvBuffer(s.cfg.RecvBuffer),
		gnet.WithSocketSendBuffer(s.cfg.SocketBuffer),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithTicker(s.heartbeat),
	)
	close(s.stopSenders)
	s.wg.Wait()
	s.mu.Lock()
	for _, l := range s.loops { // the loops have ended with gnet.Run
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
