package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/stias"
	"github.com/shakenline/shakenline/tnauth"
	"github.com/shakenline/shakenline/verify"
)

// buildSigner opens the signer chain of cfg (signers:, or the one --key or
// --pkcs11 names), after checking that the certificate is valid now. hsm.New
// checks that every link's key is the certificate's (the FCC own-certificate
// rule: a fallback signs with the provider's own key too, see docs/KEYS.md).
//
// An sti_as link is a remote STI-AS (package stias): it signs with its own
// certificate, which the own-certificate rule checks at its first answers
// (docs/KEYS.md, "A remote STI-AS in the chain").
//
// The returned close stops the chain, then the software signers it was
// given (their nonce pools are wiped) and the remote links' connections;
// remotes are the chain's sti_as links (checkRemotesAtStart).
func buildSigner(ctx context.Context, cfg config.Config, leaf *x509.Certificate, now time.Time, log *slog.Logger) (_ *hsm.Chain, _ func(), remotes []*stias.Client, _ error) {
	if err := checkValidity(leaf, now); err != nil {
		return nil, nil, nil, fmt.Errorf("cert %s: %w", cfg.Cert, err)
	}
	var soft []*hsm.Software
	closeSoft := func() {
		for _, s := range soft {
			_ = s.Close()
		}
		for _, r := range remotes {
			r.Close()
		}
	}
	hc := hsm.Config{Budget: cfg.SignBudget}
	for i, l := range cfg.SignerChain() {
		sc := hsm.SignerConfig{Name: l.Name, PKCS11: l.PKCS11, Timeout: l.Timeout, Workers: l.Workers}
		if l.StiAS != "" {
			r, err := newRemote(cfg, l, leaf, log)
			if err != nil {
				closeSoft()
				return nil, nil, nil, fmt.Errorf("signer %d: %w", i+1, err)
			}
			remotes = append(remotes, r)
			sc.Remote, sc.Workers = r, r.MaxInFlight()
		}
		if l.Key != "" {
			key, err := credential.ReadKeyFile(l.Key)
			if err != nil {
				closeSoft()
				return nil, nil, nil, fmt.Errorf("signer %d: key: %w", i+1, err)
			}
			name := l.Name
			if name == "" {
				name = "soft"
			}
			sw, err := hsm.NewSoftware(name, key)
			if err != nil {
				closeSoft()
				return nil, nil, nil, fmt.Errorf("signer %d: %w", i+1, err)
			}
			soft = append(soft, sw)
			sc.Signer = sw
		}
		hc.Signers = append(hc.Signers, sc)
	}
	chain, err := hsm.New(ctx, hc, leaf)
	if err != nil {
		closeSoft()
		return nil, nil, nil, err
	}
	for _, h := range chain.Health() {
		log.Info("signer ready", "name", h.Name, "state", h.State, "sessions", h.Sessions)
	}
	return chain, func() { _ = chain.Close(); closeSoft() }, remotes, nil
}

// checkRemotesAtStart has each sti_as link apply the own-certificate rule
// now, in the background (stias.Client.CheckAtStart: one probe PASSporT
// signed by the remote, its x5u fetched and its SPCs compared with ours),
// so that a remote signing with another provider's certificate is warned
// about at start, not at the first call a fallback link signs. Serving
// does not wait for it. serve --check contacts nobody and skips it.
func checkRemotesAtStart(remotes []*stias.Client) {
	for _, r := range remotes {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), remoteCheckTimeout)
			defer cancel()
			_, _ = r.CheckAtStart(ctx) // it logs the outcome
		}()
	}
}

// remoteCheckTimeout bounds checkRemotesAtStart: the probe's round trip and
// the x5u fetch (the hardened client's own limit is 3 s).
const remoteCheckTimeout = 15 * time.Second

// newRemote makes the client of an sti_as link. The own-certificate rule
// compares the SPCs of the remote's certificate with those of ours (leaf);
// the remote's x5u is fetched through verify's hardened client, which
// allows http and private targets only with lab.
func newRemote(cfg config.Config, l config.Signer, leaf *x509.Certificate, log *slog.Logger) (*stias.Client, error) {
	var token string
	if l.TokenFile != "" {
		var err error
		if token, err = stias.LoadToken(l.TokenFile); err != nil {
			return nil, err
		}
	}
	var ours []string
	if tl, ok, err := tnauth.FromCertificate(leaf); err == nil && ok {
		ours = tl.SPCs
	}
	if len(ours) == 0 {
		log.Warn("the certificate has no SPC in its TNAuthList: every sti_as link's certificate counts as not ours (FCC own-certificate rule)",
			"signer", l.Name, "own_cert", l.OwnCert)
	}
	name := l.Name
	if name == "" {
		name = "sti-as"
	}
	timeout := l.Timeout
	if timeout <= 0 {
		timeout = 50 * time.Millisecond // the chain's default per-call timeout
	}
	var roots *x509.CertPool // nil: the system's
	if l.TLSRoots != "" {
		if roots, _ = x509.SystemCertPool(); roots == nil {
			roots = x509.NewCertPool()
		}
		b, err := os.ReadFile(l.TLSRoots)
		if err != nil || !roots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls_roots %s: no PEM certificate (%v)", l.TLSRoots, err)
		}
	}
	return stias.New(stias.Config{Name: name, URL: l.StiAS, Token: token, Timeout: timeout, MaxInFlight: l.MaxInFlight,
		TLSRootCAs: roots, Lab: cfg.Lab, OwnCert: l.OwnCert, OwnSPCs: ours,
		Fetch: &verify.Config{AllowHTTP: cfg.Lab, AllowPrivate: cfg.Lab}, Logger: log})
}
