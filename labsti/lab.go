package labsti

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/verify"
)

// Faults the lab can be told to simulate (POST /lab/fault).
const (
	FaultNone        = ""               // normal service
	FaultDown        = "down"           // STI-PA or STI-CA: every request answered 503
	FaultRefuse      = "refuse"         // STI-PA: token requests refused (403)
	FaultChallenge   = "challenge-fail" // STI-CA: every tkauth-01 answer judged invalid
	FaultWrongTNAuth = "wrong-tnauth"   // STI-CA: certificates issued with TNAuthList {SPC 9999}
	FaultUntrusted   = "untrusted"      // STI-CA: certificates issued by a rogue root not in root.pem
)

// Roles.
const (
	RoleBoth = "both"
	RolePA   = "pa"
	RoleCA   = "ca"
)

// Config configures a lab STI-PA and STI-CA.
type Config struct {
	// Dir keeps the lab's keys and certificates across runs (created with
	// mode 0700): see the package documentation for the files.
	Dir string
	// Listen is the https ADDR:PORT of the ACME server, the STI-PA API and
	// /lab (required).
	Listen string
	// CRLListen is the plain http ADDR:PORT serving the CRLs and the CA
	// certificates; default Listen's host with port+1.
	CRLListen string
	// URL is the public https base of Listen; default https://Listen.
	URL string
	// Role: RoleBoth (default), RolePA or RoleCA. A CA alone trusts the
	// STI-PA whose certificate is Dir/sti-pa.pem (start the PA first).
	Role string
	// PAURL is the STI-PA base named as token authority in challenges;
	// default URL + "/sti-pa".
	PAURL string
	// SPCs are the service provider codes the STI-PA admits, one account
	// each; default ["1234"].
	SPCs []string
	// Lifetime of issued certificates; default 10 minutes.
	Lifetime time.Duration
	// TokenTTL of SPC tokens; default 1 hour.
	TokenTTL time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// Server is a running lab.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ca    *acmeCA
	pa    *stiPA
	root  *labpki.CA
	inter *labpki.CA
	tls   *tls.Certificate
	rogue atomic.Pointer[labpki.CA]

	faultPA, faultCA atomic.Pointer[string]
	mux, crlMux      *http.ServeMux
}

// New loads the lab from cfg.Dir, creating what is missing, and writes
// the STI-PA credential files.
func New(cfg Config) (*Server, error) {
	if cfg.Dir == "" || cfg.Listen == "" {
		return nil, errors.New("labsti: Dir and Listen are required")
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("labsti: listen %q: %w", cfg.Listen, err)
	}
	if cfg.CRLListen == "" {
		var p int
		if _, err := fmt.Sscan(port, &p); err != nil || p == 0 || p >= 65535 {
			return nil, fmt.Errorf("labsti: listen %q: give a port (and CRLListen when it is 65535)", cfg.Listen)
		}
		cfg.CRLListen = net.JoinHostPort(host, fmt.Sprint(p+1))
	}
	if cfg.URL == "" {
		cfg.URL = "https://" + cfg.Listen
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	if cfg.PAURL == "" {
		cfg.PAURL = cfg.URL + "/sti-pa"
	}
	if cfg.Role == "" {
		cfg.Role = RoleBoth
	}
	if cfg.Role != RoleBoth && cfg.Role != RolePA && cfg.Role != RoleCA {
		return nil, fmt.Errorf("labsti: role %q: want both, pa or ca", cfg.Role)
	}
	if len(cfg.SPCs) == 0 {
		cfg.SPCs = []string{"1234"}
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = 10 * time.Minute
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("labsti: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), crlMux: http.NewServeMux()}
	none := FaultNone
	s.faultPA.Store(&none)
	s.faultCA.Store(&none)
	if s.tls, err = s.loadTLS(host); err != nil {
		return nil, err
	}
	if cfg.Role != RoleCA {
		if err := s.setupPA(); err != nil {
			return nil, err
		}
	}
	if cfg.Role != RolePA {
		if err := s.setupCA(); err != nil {
			return nil, err
		}
	}
	s.mux.HandleFunc("GET /lab/fault", s.getFault)
	s.mux.HandleFunc("POST /lab/fault", s.postFault)
	s.mux.HandleFunc("GET /lab/stats", s.stats)
	return s, nil
}

// Handler serves the ACME server, the STI-PA API and /lab (over TLS).
func (s *Server) Handler() http.Handler { return s.mux }

// CRLHandler serves /ca/*.crl and /ca/*.pem (plain http).
func (s *Server) CRLHandler() http.Handler { return s.crlMux }

// TLSCertificate is the server certificate for Listen, issued by the lab
// TLS root (Dir/tls-root.pem).
func (s *Server) TLSCertificate() *tls.Certificate { return s.tls }

// DirectoryURL is the ACME directory.
func (s *Server) DirectoryURL() string { return s.cfg.URL + "/acme/directory" }

// PAURL is the STI-PA token API base (spctoken.APISource.BaseURL).
func (s *Server) PAURL() string { return s.cfg.PAURL }

// CredentialsFile is the STI-PA credentials file of spc.
func (s *Server) CredentialsFile(spc string) string {
	return filepath.Join(s.cfg.Dir, "stipa-"+spc+".json")
}

// Issued counts the certificates issued since start.
func (s *Server) Issued() int {
	if s.ca == nil {
		return 0
	}
	s.ca.mu.Lock()
	defer s.ca.mu.Unlock()
	return s.ca.issued
}

// SetFault sets the fault of component "pa" or "ca" (FaultNone clears it).
func (s *Server) SetFault(component, fault string) error {
	var valid []string
	var p *atomic.Pointer[string]
	switch component {
	case "pa":
		valid, p = []string{FaultNone, FaultDown, FaultRefuse}, &s.faultPA
	case "ca":
		valid, p = []string{FaultNone, FaultDown, FaultChallenge, FaultWrongTNAuth, FaultUntrusted}, &s.faultCA
	default:
		return fmt.Errorf("labsti: component %q: want pa or ca", component)
	}
	if fault == "ok" {
		fault = FaultNone
	}
	for _, v := range valid {
		if v == fault {
			p.Store(&fault)
			s.log.Info("lab-sti: fault set", "component", component, "fault", fault)
			return nil
		}
	}
	return fmt.Errorf("labsti: %s fault %q: want one of %q (or ok)", component, fault, valid[1:])
}

func (s *Server) getFault(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"pa": *s.faultPA.Load(), "ca": *s.faultCA.Load()})
}

func (s *Server) postFault(w http.ResponseWriter, r *http.Request) {
	var in map[string]string
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil {
		http.Error(w, `want {"pa":"...","ca":"..."}`, http.StatusBadRequest)
		return
	}
	for k, v := range in {
		if err := s.SetFault(k, v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	s.getFault(w, r)
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	out := map[string]int{"issued": s.Issued()}
	if s.pa != nil {
		s.pa.mu.Lock()
		out["tokens"] = s.pa.tokens
		s.pa.mu.Unlock()
	}
	writeJSON(w, http.StatusOK, out)
}

// Run serves Listen (https) and CRLListen (http) until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("labsti: %w", err)
	}
	cln, err := net.Listen("tcp", s.cfg.CRLListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("labsti: %w", err)
	}
	return s.Serve(ctx, ln, cln)
}

// Serve is Run on listeners the caller made.
func (s *Server) Serve(ctx context.Context, ln, crlLn net.Listener) error {
	hs := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{*s.tls}, MinVersion: tls.VersionTLS12},
		ErrorLog:  slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	cs := &http.Server{Handler: s.crlMux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	go func() { errc <- cs.Serve(crlLn) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		_ = hs.Close()
		_ = cs.Close()
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	_ = cs.Shutdown(sctx)
	return nil
}

func (s *Server) path(name string) string { return filepath.Join(s.cfg.Dir, name) }

// setupPA loads or makes the STI-PA's signing key and certificate and
// writes one credentials file per SPC (a fresh password each start).
func (s *Server) setupPA() error {
	key, cert, err := s.loadOrMake("sti-pa", func(key *ecdsa.PrivateKey) (*x509.Certificate, error) {
		return selfSigned(key, "Shakenline Lab STI-PA", false, nil)
	})
	if err != nil {
		return err
	}
	s.pa = &stiPA{key: key, cert: cert, x5u: s.cfg.PAURL + "/cert.pem", ttl: s.cfg.TokenTTL,
		accounts: map[string]paAccount{}, access: map[string]accessGrant{}, now: s.cfg.Now, log: s.log,
		fault: func() string { return *s.faultPA.Load() }}
	for _, spc := range s.cfg.SPCs {
		pw := randID()
		s.pa.accounts[spc] = paAccount{account: spc, password: pw, spc: spc}
		b, _ := json.Marshal(spctoken.Credentials{UserID: spc, Password: pw})
		if err := writeFile(s.CredentialsFile(spc), b, 0o600); err != nil {
			return err
		}
	}
	s.pa.routes(s.mux)
	return nil
}

// setupCA loads or makes the root and the issuing intermediate (with the
// CRL distribution points on CRLListen) and starts the ACME server.
func (s *Server) setupCA() error {
	crlBase := "http://" + s.cfg.CRLListen + "/ca/"
	rkey, rcert, err := s.loadOrMake("root", func(key *ecdsa.PrivateKey) (*x509.Certificate, error) {
		return selfSigned(key, "Shakenline Lab STI Root CA", true, nil)
	})
	if err != nil {
		return err
	}
	if s.root, err = labpki.LoadCA(rcert, rkey, nil, crlBase+"root.crl"); err != nil {
		return err
	}
	ikey, icert, err := s.loadOrMake("intermediate", func(key *ecdsa.PrivateKey) (*x509.Certificate, error) {
		return issueCA(key, "Shakenline Lab STI Issuing CA", s.root, crlBase+"root.crl")
	})
	if err != nil {
		return err
	}
	if s.inter, err = labpki.LoadCA(icert, ikey, s.root, crlBase+"intermediate.crl"); err != nil {
		return err
	}
	if len(icert.CRLDistributionPoints) > 0 && icert.CRLDistributionPoints[0] != crlBase+"root.crl" {
		s.log.Warn("lab-sti: the intermediate in Dir names another CRL address; use a fresh --out to move the lab",
			"intermediate_crl", icert.CRLDistributionPoints[0], "now", crlBase+"root.crl")
	}
	var paKey atomic.Pointer[ecdsa.PublicKey]
	if s.pa != nil {
		paKey.Store(&s.pa.key.PublicKey)
	} else {
		b, err := os.ReadFile(s.path("sti-pa.pem"))
		if err != nil {
			return fmt.Errorf("labsti: a CA alone trusts the STI-PA of sti-pa.pem in --out (start the PA first): %w", err)
		}
		chain, err := verify.ParseChain(b)
		if err != nil {
			return fmt.Errorf("labsti: sti-pa.pem: %w", err)
		}
		pk, ok := chain[0].PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return errors.New("labsti: sti-pa.pem: not an ECDSA key")
		}
		paKey.Store(pk)
	}
	ca := newACMECA()
	ca.base, ca.paURL, ca.inter, ca.lifetime, ca.now, ca.log = s.cfg.URL, s.cfg.PAURL, s.inter, s.cfg.Lifetime, s.cfg.Now, s.log
	ca.paKey = func() *ecdsa.PublicKey { return paKey.Load() }
	ca.fault = func() string { return *s.faultCA.Load() }
	ca.rogue = s.rogueCA
	ca.routes(s.mux)
	s.ca = ca
	for _, m := range []*http.ServeMux{s.mux, s.crlMux} {
		m.HandleFunc("GET /ca/root.pem", s.servePEM(s.root.Cert))
		m.HandleFunc("GET /ca/intermediate.pem", s.servePEM(s.inter.Cert))
	}
	s.crlMux.HandleFunc("GET /ca/root.crl", s.serveCRL(func() ([]byte, error) { return s.root.CRL(nil) }))
	s.crlMux.HandleFunc("GET /ca/intermediate.crl", s.serveCRL(ca.crl))
	return nil
}

func (s *Server) servePEM(c *x509.Certificate) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(labpki.EncodeCerts(c))
	}
}

func (s *Server) serveCRL(f func() ([]byte, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		der, err := f()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(der)
	}
}

// rogueCA is the issuer of the untrusted fault: a root and intermediate
// made in memory, never written to Dir.
func (s *Server) rogueCA() (*labpki.CA, error) {
	if c := s.rogue.Load(); c != nil {
		return c, nil
	}
	root, err := labpki.NewCA("Rogue Root CA", nil)
	if err != nil {
		return nil, err
	}
	inter, err := labpki.NewCA("Rogue Issuing CA", root)
	if err != nil {
		return nil, err
	}
	s.rogue.CompareAndSwap(nil, inter)
	return s.rogue.Load(), nil
}

// loadOrMake reads Dir/<name>.key and Dir/<name>.pem, or makes both.
func (s *Server) loadOrMake(name string, mk func(*ecdsa.PrivateKey) (*x509.Certificate, error)) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	kp, cp := s.path(name+".key"), s.path(name+".pem")
	if kb, err := os.ReadFile(kp); err == nil {
		key, err := parseKey(kb)
		if err != nil {
			return nil, nil, fmt.Errorf("labsti: %s: %w", kp, err)
		}
		cb, err := os.ReadFile(cp)
		if err != nil {
			return nil, nil, fmt.Errorf("labsti: %w", err)
		}
		chain, err := verify.ParseChain(cb)
		if err != nil {
			return nil, nil, fmt.Errorf("labsti: %s: %w", cp, err)
		}
		return key, chain[0], nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("labsti: %w", err)
	}
	cert, err := mk(key)
	if err != nil {
		return nil, nil, err
	}
	if err := labpki.WriteKey(kp, key); err != nil {
		return nil, nil, err
	}
	if err := labpki.WriteCerts(cp, cert); err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}

// loadTLS returns the https certificate for host, issued by the lab TLS
// root Dir/tls-root.pem (made when missing).
func (s *Server) loadTLS(host string) (*tls.Certificate, error) {
	rkey, rcert, err := s.loadOrMake("tls-root", func(key *ecdsa.PrivateKey) (*x509.Certificate, error) {
		return selfSigned(key, "Shakenline Lab TLS Root", true, nil)
	})
	if err != nil {
		return nil, err
	}
	name := "tls-" + strings.NewReplacer(":", "_", "/", "_").Replace(host)
	key, cert, err := s.loadOrMake(name, func(key *ecdsa.PrivateKey) (*x509.Certificate, error) {
		tmpl := &x509.Certificate{
			SerialNumber: serialNumber(),
			Subject:      pkix.Name{CommonName: host, Organization: []string{"Shakenline Lab"}},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(5 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		} else {
			tmpl.DNSNames = []string{host}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, rcert, &key.PublicKey, rkey)
		if err != nil {
			return nil, fmt.Errorf("labsti: TLS certificate: %w", err)
		}
		return x509.ParseCertificate(der)
	})
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{cert.Raw, rcert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

func serialNumber() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

func selfSigned(key *ecdsa.PrivateKey, cn string, isCA bool, _ *labpki.CA) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Shakenline Lab"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("labsti: %s: %w", cn, err)
	}
	return x509.ParseCertificate(der)
}

// issueCA makes an intermediate under parent (path length 0) with parent's
// CRL distribution point.
func issueCA(key *ecdsa.PrivateKey, cn string, parent *labpki.CA, crl string) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Shakenline Lab"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		AuthorityKeyId:        parent.Cert.SubjectKeyId,
		CRLDistributionPoints: []string{crl},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, &key.PublicKey, parent.Key)
	if err != nil {
		return nil, fmt.Errorf("labsti: %s: %w", cn, err)
	}
	return x509.ParseCertificate(der)
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return ec, nil
}

// writeFile writes b to path through a temporary file and a rename, with
// mode perm.
func writeFile(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, perm); err != nil {
		return fmt.Errorf("labsti: %w", err)
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return fmt.Errorf("labsti: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("labsti: %w", err)
	}
	return nil
}
