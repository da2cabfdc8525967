package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/verify"
)

// Defaults for Config.
const (
	DefaultMaxBody   = 64 << 10
	DefaultTimeout   = 2 * time.Second
	DefaultBudget    = 100 * time.Millisecond
	DefaultFreshness = 60 * time.Second
)

// Check is one readiness condition; it returns nil when ready.
type Check struct {
	Name string
	Fn   func() error
}

// Config configures the HTTP server. Zero fields take the defaults noted.
type Config struct {
	Addr string // listen ADDR:PORT for Run

	// Builder, Signer and Policy serve signing and attestation requests;
	// they are the SIP path's own (same signer chain, batching and budget).
	// A nil Signer answers signing requests with POL5000 (503).
	Builder *passport.Builder
	Signer  hsm.Dispatcher
	Policy  *policy.Holder
	// Credential, when set, replaces Builder, Signer and CertFingerprint,
	// read once per request (a renewal swaps it; see package credential).
	Credential *credential.Holder
	// Verifier serves verification requests; nil answers them with POL5000
	// (503). SetVerifier swaps it (trust store reload).
	Verifier *verify.Verifier

	// Tokens are the accepted bearer tokens. Nil is refused (ErrNoTokens)
	// unless Lab is set, in which case the API is open.
	Tokens *TokenSet
	Lab    bool
	// MonitorOnly serves only /healthz, /readyz and /metrics (no STIR or
	// admin routes); it needs no tokens.
	MonitorOnly bool

	// Ready are the /readyz conditions; a "policy" check is always added.
	Ready []Check
	// Reload is run by POST /admin/reload (and Server.Reload) after the
	// token file was re-read and validated; an error refuses the reload
	// and the new tokens are not installed.
	Reload func() error
	// Health returns the signer chain state for /healthz (JSON-encoded).
	Health func() any
	// Status serves GET /status (status.go); nil: no status page.
	Status *Status

	// Audit receives one record per HTTP-signed call; nil: no audit.
	Audit *audit.Log
	// CertFingerprint is the signing certificate's fingerprint for audit
	// records (audit.Fingerprint).
	CertFingerprint string

	Logger    *slog.Logger
	MaxBody   int64         // request body limit; default 64 KiB
	Timeout   time.Duration // per-request limit; default 2s
	Budget    time.Duration // signing budget per request (the SIP path's); default 100ms
	Freshness time.Duration // accepted |iat - now| in signing requests; default 60s
	Now       func() time.Time
}

// Server serves the API. Create it with New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	srv      *http.Server
	verifier atomic.Pointer[verify.Verifier]
	jobs     sync.Pool // *signJob
	bodies   sync.Pool // *[]byte of cap MaxBody

	reloadMu sync.Mutex
	reloadFn func() error
}

// New checks cfg, fills defaults and builds a Server.
func New(cfg Config) (*Server, error) {
	if !cfg.MonitorOnly {
		if cfg.Tokens == nil && !cfg.Lab {
			return nil, ErrNoTokens
		}
		if cfg.Credential == nil && cfg.Builder != nil {
			cfg.Credential = credential.NewHolder(&credential.Credential{Signer: cfg.Signer, Builder: cfg.Builder, Fingerprint: cfg.CertFingerprint})
		}
		if cfg.Credential == nil || cfg.Credential.Load() == nil || cfg.Policy == nil {
			return nil, fmt.Errorf("%w: Builder (or Credential) and Policy are required", ErrConfig)
		}
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.Freshness <= 0 {
		cfg.Freshness = DefaultFreshness
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Policy != nil {
		cfg.Ready = append([]Check{{Name: "policy", Fn: func() error {
			if cfg.Policy.Load() == nil {
				return errors.New("api: no policy loaded")
			}
			return nil
		}}}, cfg.Ready...)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, reloadFn: cfg.Reload}
	s.verifier.Store(cfg.Verifier)
	s.jobs.New = func() any { return newSignJob() }
	s.bodies.New = func() any { b := make([]byte, 0, cfg.MaxBody); return &b }
	s.srv = &http.Server{
		Addr: cfg.Addr, Handler: s,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: cfg.Timeout + 5*time.Second,
		WriteTimeout: cfg.Timeout + 5*time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// SetVerifier installs v for the verification requests that start after it
// returns (trust store reload).
func (s *Server) SetVerifier(v *verify.Verifier) { s.verifier.Store(v) }

// SetReload replaces Config.Reload.
func (s *Server) SetReload(fn func() error) {
	s.reloadMu.Lock()
	s.reloadFn = fn
	s.reloadMu.Unlock()
}

// Reload re-reads the token file and runs the configured reload; it is what
// POST /admin/reload does (call it from SIGHUP handling too). It is atomic
// as far as the API goes: when the token file or the reload function fails,
// the running tokens stay and the error says why.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var toks [][32]byte
	if s.cfg.Tokens != nil {
		var err error
		if toks, err = s.cfg.Tokens.read(); err != nil {
			mReloadFailed.Inc()
			return err
		}
	}
	if s.reloadFn != nil {
		if err := s.reloadFn(); err != nil {
			mReloadFailed.Inc()
			return err
		}
	}
	if s.cfg.Tokens != nil {
		s.cfg.Tokens.install(toks)
	}
	mReloadOK.Inc()
	return nil
}

// Handler is the API's http.Handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s }

// Run listens on Config.Addr and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then shuts down gracefully (5s).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	err := s.srv.Serve(ln)
	close(stopped)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: %w", err)
	}
	return nil
}

// respWriter remembers the status for the request counter.
type respWriter struct {
	http.ResponseWriter
	code int
}

func (w *respWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP routes a request. The routes are a fixed set, matched here so
// that unknown paths and wrong methods get ATIS-style errors.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &respWriter{ResponseWriter: w}
	if id := r.Header.Get("X-RequestID"); id != "" && len(id) <= 256 && printable(id) {
		w.Header()["X-RequestID"] = []string{id}
	}
	rt := s.route(rw, r)
	if rw.code == 0 {
		rw.code = http.StatusOK
	}
	countRequest(rt, rw.code)
	mDuration[rt].UpdateDuration(start)
}

func (s *Server) route(w *respWriter, r *http.Request) route {
	var rt route
	var post bool // STIR and admin routes take POST and a token
	switch r.URL.Path {
	case "/healthz":
		rt = rHealthz
	case "/readyz":
		rt = rReadyz
	case "/metrics":
		rt = rMetrics
	case "/status":
		if s.cfg.Status == nil {
			s.fail(w, r, newErr(svc4003))
			return rOther
		}
		rt = rStatus
	case "/stir/v1/signing":
		rt, post = rSigning, true
	case "/stir/v1/verification":
		rt, post = rVerification, true
	case "/stir/v1/attestation":
		rt, post = rAttestation, true
	case "/admin/reload":
		rt, post = rReload, true
	default:
		s.fail(w, r, newErr(svc4003))
		return rOther
	}
	if post && s.cfg.MonitorOnly {
		s.fail(w, r, newErr(svc4003))
		return rOther
	}
	if post {
		if e := s.authorize(w, r); e != nil {
			s.fail(w, r, e)
			return rt
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			s.fail(w, r, newErr(pol4050))
			return rt
		}
	} else if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.fail(w, r, newErr(pol4050))
		return rt
	}
	switch rt {
	case rHealthz:
		s.healthz(w)
	case rReadyz:
		s.readyz(w)
	case rMetrics:
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		writeExposition(w)
	case rStatus:
		s.status(w, r)
	case rReload:
		s.reload(w, r)
	default:
		s.stir(w, r, rt)
	}
	return rt
}

// authorize checks the bearer token (RFC 6750).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) *apiError {
	if s.cfg.Tokens == nil && s.cfg.Lab {
		return nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shakenline"`)
		return newErr(svc4001, "Authorization").withStatus(http.StatusUnauthorized)
	}
	scheme, tok, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") || !s.cfg.Tokens.Valid(strings.TrimSpace(tok)) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shakenline", error="invalid_token"`)
		return newErr(svc4005, "Authorization", "unknown bearer token").withStatus(http.StatusUnauthorized)
	}
	return nil
}

// fail writes e in the ATIS requestError form.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	s.log.Debug("api request refused", "path", r.URL.Path, "status", e.httpStatus(), "err", e.Error())
	bp := s.bodies.Get().(*[]byte)
	b := e.appendBody((*bp)[:0])
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.httpStatus())
	_, _ = w.Write(b)
	*bp = b[:0]
	s.bodies.Put(bp)
}

// stir runs the checks common to the three STIR routes, reads the body and
// hands it to the route's handler.
func (s *Server) stir(w *respWriter, r *http.Request, rt route) {
	if a := r.Header.Get("Accept"); a != "" && !acceptsJSON(a) {
		s.fail(w, r, newErr(svc4002, a))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			s.fail(w, r, newErr(svc4004, "application/json"))
			return
		}
	}
	switch {
	case r.ContentLength < 0:
		s.fail(w, r, newErr(svc4007))
		return
	case r.ContentLength == 0:
		s.fail(w, r, newErr(svc4000))
		return
	case r.ContentLength > s.cfg.MaxBody:
		s.fail(w, r, newErr(svc4006, fmt.Sprintf("body of %d bytes exceeds the %d byte limit", r.ContentLength, s.cfg.MaxBody)).
			withStatus(http.StatusRequestEntityTooLarge))
		return
	}
	bp := s.bodies.Get().(*[]byte)
	defer s.bodies.Put(bp)
	body := (*bp)[:r.ContentLength]
	if _, err := io.ReadFull(r.Body, body); err != nil {
		s.fail(w, r, newErr(svc4006, "body shorter than Content-Length"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	switch rt {
	case rSigning:
		s.signing(ctx, w, r, body)
	case rVerification:
		s.verification(ctx, w, r, body)
	case rAttestation:
		s.attestation(w, r, body)
	}
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if err := s.Reload(); err != nil {
		s.log.Warn("reload refused; the running configuration stays", "err", err)
		s.fail(w, r, newErr(svc4005, "configuration", err.Error()))
		return
	}
	s.log.Info("configuration reloaded (POST /admin/reload)")
	writeJSON(w, http.StatusOK, map[string]string{"reload": "ok"})
}

func (s *Server) healthz(w http.ResponseWriter) {
	out := struct {
		Status  string `json:"status"`
		Signers any    `json:"signers,omitempty"`
	}{Status: "ok"}
	if s.cfg.Health != nil {
		out.Signers = s.cfg.Health()
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) readyz(w http.ResponseWriter) {
	out := struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}{Ready: true, Checks: map[string]string{}}
	for _, c := range s.cfg.Ready {
		if err := c.Fn(); err != nil {
			out.Ready = false
			out.Checks[c.Name] = err.Error()
		} else {
			out.Checks[c.Name] = "ok"
		}
	}
	code := http.StatusOK
	if !out.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, newErr(pol5000).appendBody(nil)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// acceptsJSON reports whether an Accept header admits application/json.
func acceptsJSON(a string) bool {
	for part := range strings.SplitSeq(a, ",") {
		mt, _, _ := strings.Cut(part, ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "application/json", "application/*", "*/*":
			return true
		}
	}
	return false
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
