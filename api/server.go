package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Check is one readiness condition; it returns nil when ready.
type Check struct {
	Name string
	Fn   func() error
}

// Config configures the HTTP server.
type Config struct {
	Addr  string
	Ready []Check
	// Handlers adds routes (the STIR routes are registered by the caller
	// through this until they live here).
	Handlers map[string]http.Handler
}

// Server serves the API.
type Server struct {
	cfg Config
	srv *http.Server
}

// New builds a Server.
func New(cfg Config) *Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		code, body := http.StatusOK, []byte{}
		for _, c := range cfg.Ready {
			if err := c.Fn(); err != nil {
				code = http.StatusServiceUnavailable
				body = append(body, c.Name+": "+err.Error()+"\n"...)
			} else {
				body = append(body, c.Name+": ok\n"...)
			}
		}
		w.WriteHeader(code)
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		metrics.WritePrometheus(w, true)
	})
	for p, h := range cfg.Handlers {
		mux.Handle(p, h)
	}
	return &Server{cfg: cfg, srv: &http.Server{
		Addr: cfg.Addr, Handler: mux,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 16 << 10,
	}}
}

// Run listens and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
