package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/shakenline/shakenline/certmgr"
	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/verify"
)

// operatorCredential is the credential of --cert/--key/--pkcs11/signers:
// the certificate the operator manages (checked valid now, every link's key
// the certificate's) and --x5u. Unless checkOnly, its sti_as links check
// the certificate they sign with in the background (checkRemotesAtStart).
func operatorCredential(ctx context.Context, cfg config.Config, now time.Time, log *slog.Logger, checkOnly bool) (*credential.Credential, error) {
	certs, err := loadCerts(cfg.Cert)
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	chain, closeChain, remotes, err := buildSigner(ctx, cfg, certs[0], now, log)
	if err != nil {
		return nil, err
	}
	builder, err := passport.NewBuilder(cfg.X5U)
	if err != nil {
		closeChain()
		return nil, fmt.Errorf("x5u: %w", err)
	}
	cred, err := credential.New(chain, builder, certs)
	if err != nil {
		closeChain()
		return nil, err
	}
	cred.Close = closeChain
	if !checkOnly {
		checkRemotesAtStart(remotes)
	}
	return cred, nil
}

// chainTemplate is the configured signer chain as certmgr moves it to each
// new key: PKCS#11 links by URI, software links by name (certmgr makes
// their key).
func chainTemplate(cfg config.Config) hsm.Config {
	hc := hsm.Config{Budget: cfg.SignBudget}
	for _, l := range cfg.SignerChain() {
		sc := hsm.SignerConfig{Name: l.Name, PKCS11: l.PKCS11, Timeout: l.Timeout, Workers: l.Workers}
		if l.Key != "" && sc.Name == "" {
			sc.Name = "soft"
		}
		hc.Signers = append(hc.Signers, sc)
	}
	return hc
}

// acmeManager builds the certificate manager of the acme: block and, for
// the built-in repository, the server that publishes (started by start).
func acmeManager(cfg config.Config, log *slog.Logger, onSwitch func(old, cur *credential.Credential)) (*certmgr.Manager, *repoServer, func(), error) {
	a := cfg.ACME
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*certmgr.Manager, *repoServer, func(), error) {
		closeAll()
		return nil, nil, nil, fmt.Errorf("acme: %w", err)
	}
	stateDir := a.StateDir
	if stateDir == "" {
		stateDir = config.DefaultACMEStateDir
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if a.TLSRoots != "" {
		b, err := os.ReadFile(a.TLSRoots)
		if err != nil || !roots.AppendCertsFromPEM(b) {
			return fail(fmt.Errorf("tls_roots %s: no certificate (%v)", a.TLSRoots, err))
		}
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second, MaxIdleConnsPerHost: 2}
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	var acct crypto.Signer
	if a.AccountKeyPKCS11 != "" {
		s, closeKey, err := certmgr.AccountKeyPKCS11(a.AccountKeyPKCS11)
		if err != nil {
			return fail(fmt.Errorf("account_key_pkcs11: %w", err))
		}
		acct = s
		closers = append(closers, closeKey)
	} else {
		path := a.AccountKey
		if path == "" {
			path = filepath.Join(stateDir, "account.key")
		}
		if acct, err = certmgr.AccountKeyFile(path); err != nil {
			return fail(fmt.Errorf("account_key: %w", err))
		}
	}
	var tokens spctoken.Source = spctoken.FileSource{Path: a.SPCToken.File}
	if a.SPCToken.API != "" {
		account := a.SPCToken.Account
		if account == "" {
			account = a.SPC
		}
		tokens = &spctoken.APISource{BaseURL: a.SPCToken.API, Account: account, CredentialsFile: a.SPCToken.Credentials, Client: hc}
	}
	trust := x509.NewCertPool()
	names := a.Trust
	if len(names) == 0 {
		for n := range cfg.Trust {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	for _, n := range names {
		b, err := os.ReadFile(cfg.Trust[n])
		if err != nil || !trust.AppendCertsFromPEM(b) {
			return fail(fmt.Errorf("trust store %q (%s): no certificate (%v)", n, cfg.Trust[n], err))
		}
	}
	var pub certmgr.Publisher
	var repo *repoServer
	if a.Publish.Dir != "" {
		pub = certmgr.DirPublisher{Dir: a.Publish.Dir}
	} else {
		u, err := url.Parse(a.Publish.URL)
		if err != nil {
			return fail(fmt.Errorf("publish.url: %w", err))
		}
		repo = &repoServer{Repository: certmgr.NewRepository(u.Path), addr: a.Publish.Listen, certFile: a.Publish.TLSCert, keyFile: a.Publish.TLSKey, log: log}
		pub = repo.Repository
	}
	m, err := certmgr.New(certmgr.Config{
		Directory: a.Directory, HTTPClient: hc, AccountKey: acct, Contact: a.Contact,
		SPC: a.SPC, TNAuthList: a.TNAuthList(), Organization: a.Organization, Country: a.Country, Tokens: tokens,
		Trust: trust, Publisher: pub, PublishURL: a.Publish.URL, PublishTimeout: a.Publish.Timeout,
		Fetch:       verify.Config{AllowHTTP: cfg.Lab, AllowPrivate: cfg.Lab},
		RenewBefore: a.RenewBefore, RetryMin: a.RetryMin, RetryMax: a.RetryMax,
		// Every PASSporT signed with the old certificate is past freshness
		// (iat at most the switch plus the signing budget) by then.
		RetireAfter: cfg.Freshness + cfg.SignBudget + 10*time.Second,
		StateDir:    stateDir, Chain: chainTemplate(cfg), KeyLabel: a.KeyLabel, Logger: log, OnSwitch: onSwitch,
	})
	if err != nil {
		return fail(err)
	}
	return m, repo, closeAll, nil
}

// repoServer is the built-in x5u repository's listener.
type repoServer struct {
	*certmgr.Repository
	addr, certFile, keyFile string
	log                     *slog.Logger
	srv                     *http.Server
}

// start listens (https, or http without a certificate: lab only) and
// serves until close.
func (r *repoServer) start() error {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("acme: publish.listen: %w", err)
	}
	r.srv = &http.Server{Handler: r.Repository, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug)}
	go func() {
		var err error
		if r.certFile != "" {
			err = r.srv.ServeTLS(ln, r.certFile, r.keyFile)
		} else {
			err = r.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("acme: x5u repository stopped", "err", err)
		}
	}()
	return nil
}

func (r *repoServer) close() {
	if r.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = r.srv.Shutdown(ctx)
	}
}

// certificateCheck is the /readyz condition on the certificate in use:
// unready when it has expired or has less than before left (with acme:
// unready_before, default min(1h, lifetime/10); without acme: 0).
func certificateCheck(h *credential.Holder, before time.Duration, auto bool) func() error {
	return func() error {
		c := h.Load()
		if c == nil || len(c.Chain) == 0 {
			return errors.New("no certificate")
		}
		leaf := c.Leaf()
		b := before
		if auto && b == 0 {
			b = min(time.Hour, leaf.NotAfter.Sub(leaf.NotBefore)/10)
		}
		now := time.Now()
		switch {
		case now.After(leaf.NotAfter):
			return fmt.Errorf("the certificate in use expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
		case now.Add(b).After(leaf.NotAfter):
			return fmt.Errorf("the certificate in use expires at %s, in less than %v", leaf.NotAfter.UTC().Format(time.RFC3339), b)
		case now.Before(leaf.NotBefore):
			return fmt.Errorf("the certificate in use is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
		}
		return nil
	}
}
