package labsti

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/tnauth"
)

// CAOptions configure an STI-CA's ACME server embedded in another lab
// (bench/interop runs one per jurisdiction with its own CA hierarchy).
type CAOptions struct {
	Issuer   *labpki.CA       // issues the provider certificates
	PAKey    *ecdsa.PublicKey // the STI-PA whose SPC tokens are accepted
	URL      string           // public base of the handler (https://host:port), no trailing slash
	PAURL    string           // token authority named in challenges
	Lifetime time.Duration    // default 10 minutes
	Logger   *slog.Logger
	// OnIssue, when set, is called with each certificate issued.
	OnIssue func(leaf *x509.Certificate)
}

// NewCA returns the ACME server of CAOptions as an http.Handler serving
// /acme/...; Revoked lists what it revoked (for the embedding lab's CRL).
func NewCA(o CAOptions) (*CA, error) {
	if o.Issuer == nil || o.PAKey == nil || o.URL == "" {
		return nil, fmt.Errorf("labsti: Issuer, PAKey and URL are required")
	}
	if o.Lifetime <= 0 {
		o.Lifetime = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ca := newACMECA()
	ca.base, ca.paURL, ca.inter, ca.lifetime, ca.now, ca.log = strings.TrimSuffix(o.URL, "/"), o.PAURL, o.Issuer, o.Lifetime, time.Now, o.Logger
	ca.paKey = func() *ecdsa.PublicKey { return o.PAKey }
	ca.fault = func() string { return FaultNone }
	ca.rogue = func() (*labpki.CA, error) { return nil, fmt.Errorf("labsti: no rogue CA here") }
	ca.onIssue = o.OnIssue
	c := &CA{ca: ca, mux: http.NewServeMux()}
	ca.routes(c.mux)
	return c, nil
}

// CA is an embedded STI-CA ACME server.
type CA struct {
	ca  *acmeCA
	mux *http.ServeMux
}

func (c *CA) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }

// DirectoryURL is the ACME directory.
func (c *CA) DirectoryURL() string { return c.ca.base + "/acme/directory" }

// Account is an STI-PA account: the credentials of its token API and the
// TNAuthList it may obtain tokens for ({SPC} when empty).
type Account struct {
	UserID, Password string
	ID               string // the account id in the token path
	SPC              string
	TNAuthList       tnauth.List
}

// WriteCredentials writes a's credentials file for spctoken.APISource
// (mode 0600).
func (a Account) WriteCredentials(path string) error {
	b, _ := json.Marshal(spctoken.Credentials{UserID: a.UserID, Password: a.Password})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("labsti: %w", err)
	}
	return nil
}

// PAOptions configure an embedded STI-PA token API.
type PAOptions struct {
	Key      *ecdsa.PrivateKey // signs the tokens
	X5U      string            // x5u of the tokens
	TTL      time.Duration     // default 1 hour
	Accounts []Account
	Logger   *slog.Logger
}

// NewPA returns the STI-PA token API of PAOptions (serving /sti-pa/...).
func NewPA(o PAOptions) http.Handler {
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	pa := &stiPA{key: o.Key, x5u: o.X5U, ttl: o.TTL, accounts: map[string]paAccount{}, access: map[string]accessGrant{},
		now: time.Now, log: o.Logger, fault: func() string { return FaultNone }}
	for _, a := range o.Accounts {
		pa.accounts[a.UserID] = paAccount{account: a.ID, password: a.Password, spc: a.SPC, tn: a.TNAuthList}
	}
	mux := http.NewServeMux()
	pa.routes(mux)
	return mux
}

// ServerTLS returns an https certificate for host (an IP or a DNS name)
// issued by the lab TLS root dir/tls-root.pem; both are made when missing
// and kept in dir.
func ServerTLS(dir, host string) (*tls.Certificate, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("labsti: %w", err)
	}
	s := &Server{cfg: Config{Dir: dir}}
	return s.loadTLS(host)
}
