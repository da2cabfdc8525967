package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/shakenline/shakenline/api"
	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/bpf"
	"github.com/shakenline/shakenline/certmgr"
	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/fastpath"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/verify"
)

// serveFlags are serve's flags: the configuration's (package config, one
// per YAML key that has a flag; docs/CLI.md) and the command's own. A flag
// that is given overrides the config file.
type serveFlags struct {
	fs         *flag.FlagSet
	cfg        *config.Flags
	cfgFile    string
	check      bool
	cpuprofile string
}

func newServeFlags(e env) *serveFlags {
	f := &serveFlags{fs: flag.NewFlagSet("serve", flag.ContinueOnError)}
	fs := f.fs
	fs.SetOutput(e.stderr)
	setUsage(fs, "appliance serve [--config FILE] [flags]   (flags override the config file)")
	fs.StringVar(&f.cfgFile, "config", "", "YAML config `FILE`; flags override it")
	f.cfg = config.AddFlags(fs)
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "diagnostics: write a CPU profile of the whole run to `FILE` (go tool pprof)")
	fs.BoolVar(&f.check, "check", false, "validate the configuration, open the keys and check them against the certificate, then exit (0 ok, 2 with the reason)")
	return f
}

// config loads the file and applies the flags that were given.
func (f *serveFlags) config() (config.Config, error) {
	c, err := config.Load(f.cfgFile)
	if err != nil {
		return c, err
	}
	if err := f.cfg.Apply(&c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func cmdServe(ctx context.Context, args []string, e env) error {
	f := newServeFlags(e)
	if err := parseFlags(f.fs, args, e); err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	log := newLogger(e, cfg.LogLevel)
	app, err := newAppliance(ctx, cfg, e.now(), log, f.check)
	if f.check && errors.Is(err, errNoCertificateYet) {
		fmt.Fprintf(e.stdout, "configuration ok: mode %s, acme: no certificate yet (serve obtains one from %s before it opens the SIP port)\n",
			cfg.Mode, cfg.ACME.Directory)
		return nil
	}
	if err != nil {
		return err
	}
	defer app.close()
	if f.cpuprofile != "" && !f.check {
		pf, err := os.Create(f.cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = pf.Close() }()
	}
	if f.check {
		fmt.Fprintf(e.stdout, "configuration ok: mode %s, %d signer(s), %d policy rule(s)\n",
			cfg.Mode, len(app.chain().Health()), app.policy.Load().Rules())
		return nil
	}
	errc := make(chan error, 2)
	go func() { errc <- app.fp.Run(ctx) }()
	select {
	case <-app.fp.Booted():
	case err := <-errc:
		return fmt.Errorf("sip: %w", err)
	}
	defer app.fp.Stop() // on every way out, the API failing included
	if s, ok := app.api.(*api.Server); ok {
		// One reload path for SIGHUP and POST /admin/reload.
		s.SetReload(func() error { return app.reload(f) })
	}
	if app.api != nil {
		// Bound before "appliance serving" is logged: whoever waits for
		// that line (an operator, a supervisor, a test) can use the API.
		ln, err := net.Listen("tcp", cfg.API)
		if err != nil {
			return fmt.Errorf("api: %w", err)
		}
		defer app.observe()()
		go app.status.Run(ctx)
		go func() { errc <- app.api.Serve(ctx, ln) }()
	}
	if app.acme != nil {
		go app.acme.Run(ctx, app.cred)
	}
	log.Info("appliance serving", "mode", cfg.Mode, "sip", cfg.SIP, "sip_tls", cfg.SIPTLS, "next_hop", cfg.NextHop, "api", cfg.API,
		"signers", len(app.chain().Health()), "x5u", app.cred.Load().X5U(), "policy_rules", app.policy.Load().Rules())
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if err != nil && ctx.Err() == nil {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
		case <-e.signals:
			if err := app.reloadAll(f); err != nil {
				log.Error("reload refused; the running configuration stays", "err", err)
			} else {
				log.Info("configuration reloaded", "policy_rules", app.policy.Load().Rules())
			}
		}
	}
}

// appliance is everything serve runs.
type appliance struct {
	cfg     config.Config
	log     *slog.Logger
	policy  *policy.Holder
	fp      *fastpath.Server
	api     apiServer
	cred    *credential.Holder // key + certificate + x5u in use; a renewal swaps it (acme.go)
	acme    *certmgr.Manager   // nil without acme:
	cert    certInUse          // the leaf signing now (observe.go), stored at start and at each switch
	closers []func()
	ready   []api.Check // /readyz conditions besides the policy (signerReady)
	status  *api.Status // GET /status; nil without --api

	lastReady atomic.Pointer[[]api.CheckResult] // readiness as last evaluated (observe.go)

	verifier  *verify.Verifier // nil without --trust
	audit     *audit.Log       // nil without audit_log
	steering  *bpf.Steering    // inline mode
	sipTLS    *sipTLSCert      // the SIP TLS certificate (nil without tls_cert); reload re-reads it
	checkOnly bool             // serve --check: build and validate, attach nothing
}

// apiServer is the HTTP side (package api).
type apiServer interface {
	Serve(context.Context, net.Listener) error
}

func newAppliance(ctx context.Context, cfg config.Config, now time.Time, log *slog.Logger, checkOnly bool) (*appliance, error) {
	a := &appliance{cfg: cfg, log: log, checkOnly: checkOnly}
	cred, err := a.startCredential(ctx, cfg, now, log)
	if err != nil {
		a.close()
		return nil, err
	}
	a.cred = credential.NewHolder(cred)
	if !checkOnly {
		a.onSwitch(nil, cred)
	}
	a.closers = append(a.closers, func() {
		if c := a.cred.Load(); c != nil && c.Close != nil {
			c.Close()
		}
	})
	tbl, err := policy.Build(cfg.Policy, cfg.Attest)
	if err != nil {
		return nil, err
	}
	if err := resolveRCD(ctx, tbl, cfg); err != nil {
		return nil, err
	}
	a.policy = policy.NewHolder(tbl)
	numbers, err := e164.New(cfg.DefaultCountry)
	if err != nil {
		return nil, fmt.Errorf("default-country: %w", err)
	}
	if cfg.AuditLog != "" && !checkOnly {
		if a.audit, err = audit.Open(cfg.AuditLog, audit.Options{MaxBytes: cfg.AuditMaxBytes, Keep: cfg.AuditKeep}); err != nil {
			return nil, fmt.Errorf("audit_log: %w", err)
		}
		al := a.audit
		a.closers = append(a.closers, func() { _ = al.Close() })
	}
	verifier, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	a.verifier = verifier
	if verifier != nil {
		a.closers = append(a.closers, func() { _ = verifier.Close() })
	}
	mode, err := fastpath.ParseMode(cfg.Mode)
	if err != nil {
		return nil, err
	}
	staleDate, err := claims.ParseStaleDate(cfg.StaleDate)
	if err != nil {
		return nil, err
	}
	loops := cfg.Loops
	if loops <= 0 {
		loops = runtime.NumCPU()
	}
	if !checkOnly && os.Getenv("GOMAXPROCS") == "" {
		// gnet's loops wait in epoll_wait(2) through a plain syscall and
		// keep their P until sysmon takes it back (20 us to 10 ms later).
		// With one P per core, the signer and sender goroutines would queue
		// behind idle loops; one P per loop on top of one per core keeps
		// them running. One more for the software signer's nonce refill
		// worker, which holds its P through a batch on an idle-priority
		// thread (es256): the loops and senders never wait for it at the Go
		// level either. (GOMAXPROCS in the environment wins.)
		runtime.GOMAXPROCS(runtime.NumCPU() + loops + 1)
	}
	fc := fastpath.Config{
		Mode: mode, Loops: loops, Credential: a.cred, Policy: a.policy, Numbers: numbers,
		Freshness: cfg.Freshness, StaleDate: staleDate, Budget: cfg.SignBudget, ResignSigned: cfg.ResignSigned,
		MaxInFlight: cfg.MaxInFlight, RecvBuffer: cfg.RecvBuffer, Logger: log,
	}
	if verifier != nil {
		fc.Verifier = sipVerifier{verifier}
	}
	if a.audit != nil {
		fc.Audit = a.audit // with each call's certificate fingerprint (fc.Credential)
	}
	fc.Listen, _ = netip.ParseAddrPort(cfg.SIP)
	if mode == fastpath.Inline {
		if err := a.attachXDP(cfg, &fc); err != nil {
			return nil, err
		}
	}
	if a.sipTLS, err = streamConfig(cfg, &fc); err != nil {
		return nil, err
	}
	fc.Advertise, _ = netip.ParseAddrPort(cfg.Advertise)
	if a.fp, err = fastpath.New(fc); err != nil {
		return nil, err
	}
	if cfg.API != "" {
		a.ready = signerReady(a)
		a.status = newStatus(a, now)
		if a.api, err = newAPI(cfg, a, log); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// attachXDP attaches the steering program to the configured interfaces and
// points the loops at the steering socket. Detached again by close (and by
// the kernel if the process dies: fail-open).
func (a *appliance) attachXDP(cfg config.Config, fc *fastpath.Config) error {
	if a.checkOnly {
		for _, name := range cfg.Ifaces {
			if _, err := net.InterfaceByName(name); err != nil {
				return fmt.Errorf("inline: interface %q: %w", name, err)
			}
		}
		fc.Steering, fc.Reinjector = &bpf.Steering{}, &bpf.Reinjector{}
		return nil
	}
	st, err := bpf.Attach(bpf.Config{Ifaces: cfg.Ifaces, SIPPorts: cfg.SIPPorts, SteerPort: cfg.SteerPort, Logger: a.log})
	if err != nil {
		return fmt.Errorf("inline: %w", err)
	}
	a.closers = append(a.closers, func() { _ = st.Close() })
	rj := bpf.NewReinjector(0)
	a.closers = append(a.closers, func() { _ = rj.Close() })
	metrics.RegisterMetricsWriter(st.WritePrometheus)
	fc.Steering, fc.Reinjector = st, rj
	fc.Listen = netip.AddrPortFrom(netip.IPv6Unspecified(), cfg.SteerPort)
	a.steering = st
	return nil
}

// reloadAll is SIGHUP: the API's token file (when the API runs) and then
// everything reload covers, each validated before anything is swapped.
func (a *appliance) reloadAll(f *serveFlags) error {
	if s, ok := a.api.(*api.Server); ok {
		return s.Reload() // tokens, then a.reload through SetReload
	}
	return a.reload(f)
}

// reload re-reads the configuration and swaps the policy and the trust
// stores. Signer settings that need new sessions (keys, PKCS#11 URIs) are
// applied by a restart; reload refuses a change of them rather than
// pretending.
func (a *appliance) reload(f *serveFlags) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if cfg.Key != a.cfg.Key || cfg.PKCS11 != a.cfg.PKCS11 || cfg.Cert != a.cfg.Cert || cfg.X5U != a.cfg.X5U ||
		fmt.Sprint(cfg.Signers) != fmt.Sprint(a.cfg.Signers) || !reflect.DeepEqual(cfg.ACME, a.cfg.ACME) {
		return errors.New("signer, certificate, x5u or acme changes need a restart; nothing was reloaded")
	}
	tbl, err := policy.Build(cfg.Policy, cfg.Attest)
	if err != nil {
		return err
	}
	if err := resolveRCD(context.Background(), tbl, cfg); err != nil {
		return err
	}
	// Trust stores: validated completely before anything is swapped.
	var pools map[string]*x509.CertPool
	if a.verifier != nil {
		if pools, err = verify.LoadTrust(cfg.Trust); err != nil {
			return err
		}
	}
	// The SIP TLS certificate: read (and refused when broken) before
	// anything is swapped; in use from the next handshake.
	var tlsKeys *sipTLSCert
	if (cfg.TLSCert != "") != (a.sipTLS != nil) {
		return errors.New("adding or removing tls_cert needs a restart; nothing was reloaded")
	}
	if a.sipTLS != nil {
		tlsKeys = &sipTLSCert{}
		if err := tlsKeys.load(cfg); err != nil {
			return err
		}
	}
	if pools != nil {
		if err := a.verifier.SetTrust(pools); err != nil {
			return err
		}
		go func() { _ = a.verifier.RefreshCRLs(context.Background()) }()
	}
	a.policy.Store(tbl)
	if tlsKeys != nil {
		a.sipTLS.p.Store(tlsKeys.p.Load())
	}
	a.cfg.Policy, a.cfg.Trust = cfg.Policy, cfg.Trust
	a.cfg.TLSCert, a.cfg.TLSKey = cfg.TLSCert, cfg.TLSKey
	return nil
}

// startCredential is the credential to start with: without acme: the
// operator's certificate and keys; with acme: the one in the state
// directory, else the operator's starting certificate, else one obtained
// now (retried until ctx ends). With acme the renewal manager is kept in
// a.acme (Run starts it once serving).
func (a *appliance) startCredential(ctx context.Context, cfg config.Config, now time.Time, log *slog.Logger) (*credential.Credential, error) {
	if cfg.ACME == nil {
		return operatorCredential(ctx, cfg, now, log, a.checkOnly)
	}
	if a.checkOnly {
		// --check touches nothing: no state written, no key made, nobody
		// contacted. The chain must be able to follow a rotation, and a
		// starting certificate must match the keys.
		if err := certmgr.CheckChain(chainTemplate(cfg)); err != nil {
			return nil, fmt.Errorf("acme: %w", err)
		}
		if cfg.Cert != "" {
			return operatorCredential(ctx, cfg, now, log, a.checkOnly)
		}
		return nil, errNoCertificateYet
	}
	alog := log // certmgr adds component=acme
	m, repo, closeACME, err := acmeManager(cfg, alog, a.onSwitch)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, closeACME)
	if repo != nil {
		if err := repo.start(); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, repo.close)
	}
	a.acme = m
	cred, err := m.Load(ctx)
	if err != nil {
		return nil, err
	}
	if cred != nil {
		log.Info("acme: certificate from the state directory", "x5u", cred.X5U(), "not_after", cred.Leaf().NotAfter.UTC().Format(time.RFC3339))
		return cred, nil
	}
	if cfg.Cert != "" {
		return operatorCredential(ctx, cfg, now, log, a.checkOnly)
	}
	log.Info("acme: no certificate yet; obtaining one before serving", "directory", cfg.ACME.Directory)
	return m.Obtain(ctx)
}

// onSwitch runs at start and after each renewal switched the credential:
// the certificate gauges and GET /status follow (a.cert).
func (a *appliance) onSwitch(old, cur *credential.Credential) {
	leaf := cur.Leaf()
	a.cert.Store(leaf)
	a.log.Info("certificate in use", "x5u", cur.X5U(), "serial", leaf.SerialNumber.Text(16),
		"not_before", leaf.NotBefore.UTC().Format(time.RFC3339), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}

// errNoCertificateYet is --check of an acme: configuration with no
// starting certificate: valid, nothing to check the keys against yet.
var errNoCertificateYet = errors.New("acme: no certificate yet")

// chain is the signer chain of the credential in use.
func (a *appliance) chain() *hsm.Chain {
	if c := a.cred.Load(); c != nil {
		if ch, ok := c.Signer.(*hsm.Chain); ok {
			return ch
		}
	}
	return nil
}

func (a *appliance) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if a.closers[i] != nil {
			a.closers[i]()
		}
	}
}

func newLogger(e env, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: l}))
}
