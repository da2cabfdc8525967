package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/shakenline/shakenline/tnauth"
)

// ACME is the acme: block: the appliance obtains and renews its own STI
// certificate (docs/KEYS.md, "Certificates through ACME").
type ACME struct {
	Directory        string        `yaml:"directory"`          // the STI-CA's ACME directory URL
	AccountKey       string        `yaml:"account_key"`        // PEM file; generated 0600 when missing; default <state_dir>/account.key
	AccountKeyPKCS11 string        `yaml:"account_key_pkcs11"` // or an RFC 7512 URI (object= required; generated when missing)
	Contact          []string      `yaml:"contact"`            // ACME account contact URLs (mailto:...)
	SPC              string        `yaml:"spc"`                // service provider code: the certificate's TNAuthList {SPC}
	TNRanges         []TNRange     `yaml:"tn_ranges"`          // optional: the TNAuthList is these TN ranges instead of {SPC}
	Organization     string        `yaml:"organization"`       // CSR subject O
	Country          string        `yaml:"country"`            // CSR subject C
	SPCToken         SPCToken      `yaml:"spc_token"`
	TLSRoots         string        `yaml:"tls_roots"` // PEM anchors for the STI-CA's and STI-PA's https (default: the system's)
	Trust            []string      `yaml:"trust"`     // trust: stores the issued chain must end in (default: every store)
	Publish          Publish       `yaml:"publish"`
	StateDir         string        `yaml:"state_dir"`      // default /var/lib/shakenline/acme
	KeyLabel         string        `yaml:"key_label"`      // CKA_LABEL of keys generated in a token, default shakenline-sti
	RenewBefore      time.Duration `yaml:"renew_before"`   // default: a third of the lifetime
	RetryMin         time.Duration `yaml:"retry_min"`      // default 30s
	RetryMax         time.Duration `yaml:"retry_max"`      // default 1h
	UnreadyBefore    time.Duration `yaml:"unready_before"` // /readyz: unready when less is left; default min(1h, lifetime/10)
}

// TNRange is count numbers from start (E.164 digits), a TNAuthList entry.
type TNRange struct {
	Start string `yaml:"start"`
	Count int64  `yaml:"count"`
}

// TNAuthList is the certificate's TNAuthList: the TN ranges when given,
// else {SPC}.
func (a *ACME) TNAuthList() tnauth.List {
	if len(a.TNRanges) == 0 {
		return tnauth.List{SPCs: []string{a.SPC}}
	}
	var l tnauth.List
	for _, r := range a.TNRanges {
		l.Ranges = append(l.Ranges, tnauth.Range{Start: r.Start, Count: r.Count})
	}
	return l
}

// SPCToken says where SPC tokens come from: the STI-PA's token API, or a
// file another tool keeps fresh.
type SPCToken struct {
	API         string `yaml:"api"`         // token API base URL
	Account     string `yaml:"account"`     // account id in the API path, default the SPC
	Credentials string `yaml:"credentials"` // JSON file {"user_id","password"}, mode 0600
	File        string `yaml:"file"`        // or: a file holding the token
}

// Publish says where the certificate is published (the x5u).
type Publish struct {
	URL     string        `yaml:"url"`      // base: a certificate's x5u is url + <name>.pem
	Dir     string        `yaml:"dir"`      // write there; another web server serves it at url
	Listen  string        `yaml:"listen"`   // or: the built-in https repository listens here
	TLSCert string        `yaml:"tls_cert"` // its server certificate (PEM chain) ...
	TLSKey  string        `yaml:"tls_key"`  // ... and key; without them (lab only) it serves http
	Timeout time.Duration `yaml:"timeout"`  // wait for the published copy, default 2m
}

// DefaultACMEStateDir is where acme state lives when state_dir is unset.
const DefaultACMEStateDir = "/var/lib/shakenline/acme"

// validate checks the acme block against the rest of c.
func (a *ACME) validate(c *Config) error {
	bad := func(f string, x ...any) error { return fmt.Errorf("%w: acme: %s", ErrInvalid, fmt.Sprintf(f, x...)) }
	httpsOK := func(u string) bool {
		return strings.HasPrefix(u, "https://") || c.Lab && strings.HasPrefix(u, "http://")
	}
	if !httpsOK(a.Directory) {
		return bad("directory %q: want the STI-CA's https ACME directory URL (http only with lab)", a.Directory)
	}
	if a.AccountKey != "" && a.AccountKeyPKCS11 != "" {
		return bad("give account_key or account_key_pkcs11, not both")
	}
	if a.SPC == "" {
		return bad("spc is required (the service provider code the certificate is for)")
	}
	if _, err := tnauth.Marshal(tnauth.List{SPCs: []string{a.SPC}}); err != nil {
		return bad("spc %q: %v", a.SPC, err)
	}
	if _, err := tnauth.Marshal(a.TNAuthList()); err != nil {
		return bad("tn_ranges: %v", err)
	}
	t := a.SPCToken
	switch {
	case (t.API == "") == (t.File == ""):
		return bad("spc_token: set exactly one of api (the STI-PA token API) and file")
	case t.API != "" && !httpsOK(t.API):
		return bad("spc_token.api %q: want https (http only with lab)", t.API)
	case t.API != "" && t.Credentials == "":
		return bad("spc_token.credentials is required with spc_token.api")
	}
	p := a.Publish
	if !httpsOK(p.URL) {
		return bad("publish.url %q: want https (http only with lab)", p.URL)
	}
	if (p.Dir == "") == (p.Listen == "") {
		return bad("publish: set exactly one of dir (another web server serves it) and listen (the built-in repository)")
	}
	if p.Listen != "" {
		if _, err := netip.ParseAddrPort(p.Listen); err != nil {
			return bad("publish.listen %q: want ADDR:PORT", p.Listen)
		}
		if (p.TLSCert == "") != (p.TLSKey == "") {
			return bad("publish: give tls_cert and tls_key together")
		}
		if p.TLSCert == "" && !c.Lab {
			return bad("publish.listen needs tls_cert and tls_key (plain http only with lab)")
		}
	}
	if len(c.Trust) == 0 {
		return bad("at least one trust: store is required: the issued chain is checked against it")
	}
	for _, n := range a.Trust {
		if _, ok := c.Trust[n]; !ok {
			return bad("trust %q: no such trust: store", n)
		}
	}
	for name, d := range map[string]time.Duration{"renew_before": a.RenewBefore, "retry_min": a.RetryMin, "retry_max": a.RetryMax,
		"unready_before": a.UnreadyBefore, "publish.timeout": p.Timeout} {
		if d < 0 {
			return bad("%s %v: want a positive duration (or none for the default)", name, d)
		}
	}
	return nil
}
