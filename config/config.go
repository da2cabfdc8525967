package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/sip"
)

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("config: invalid")

// Config is the whole appliance configuration. A key that has a
// command-line flag (flags.go) is that flag with '_' for '-'.
type Config struct {
	Mode           string            `yaml:"mode"`            // proxy | redirect | inline
	SIP            string            `yaml:"sip"`             // UDP and TCP listen ADDR:PORT
	Advertise      string            `yaml:"advertise"`       // ADDR:PORT in our Via when SIP listens on 0.0.0.0/::
	NextHop        string            `yaml:"next_hop"`        // proxy mode: ADDR:PORT or sip:ADDR:PORT;transport=udp|tcp|tls; empty: route by Request-URI
	Key            string            `yaml:"key"`             // PEM private key file (PKCS#8 or SEC 1)
	PKCS11         string            `yaml:"pkcs11"`          // RFC 7512 URI
	Signers        []Signer          `yaml:"signers"`         // signer chain; --key/--pkcs11 make a one-element chain
	Cert           string            `yaml:"cert"`            // provider certificate (PEM, chain allowed)
	X5U            string            `yaml:"x5u"`             // URL in info= and the x5u claim
	Attest         string            `yaml:"attest"`          // default attestation
	DefaultCountry string            `yaml:"default_country"` // ISO 3166 alpha-2 for national numbers
	API            string            `yaml:"api"`             // HTTP API ADDR:PORT
	Ifaces         []string          `yaml:"iface"`           // inline mode interfaces
	SIPPorts       []uint16          `yaml:"sip_ports"`       // inline mode: UDP ports whose INVITEs XDP steers (default 5060)
	SteerPort      uint16            `yaml:"steer_port"`      // inline mode: local UDP port steered INVITEs arrive on (default 5099)
	Trust          map[string]string `yaml:"trust"`           // name -> PEM bundle of trust anchors
	APITokenFile   string            `yaml:"api_token_file"`
	Lab            bool              `yaml:"lab"`

	AuditLog      string `yaml:"audit_log"`       // one line per signed call (FCC own-certificate rule); see audit/doc.go
	AuditMaxBytes int64  `yaml:"audit_max_bytes"` // rotate at this size
	AuditKeep     int    `yaml:"audit_keep"`      // rotated files kept
	X5UCacheDir   string `yaml:"x5u_cache_dir"`   // verification: persist fetched certificates here across restarts
	X5UPreload    string `yaml:"x5u_preload"`     // verification: file of x5u URLs fetched at start
	CRLFailClosed bool   `yaml:"crl_fail_closed"` // verification: refuse when a CRL cannot be had (default: pass, counted)

	// SIP over TCP and TLS (docs/ARCHITECTURE.md, "SIP over TCP and TLS").
	SIPTLS                  string        `yaml:"sip_tls"`                    // SIP over TLS listen ADDR:PORT; empty: none
	TLSCert                 string        `yaml:"tls_cert"`                   // the SIP TLS certificate, PEM (not the STI certificate)
	TLSKey                  string        `yaml:"tls_key"`                    // its key, PEM
	TLSCA                   string        `yaml:"tls_ca"`                     // trust anchors for TLS peers, PEM; empty: the system's (next hops only)
	TLSClientAuth           string        `yaml:"tls_client_auth"`            // none | request | require
	UDPMTU                  int           `yaml:"udp_mtu"`                    // requests larger than this over UDP go over TCP; 0: off
	MaxConnections          int           `yaml:"max_connections"`            // inbound TCP and TLS connections at most
	MaxConnectionsPerSource int           `yaml:"max_connections_per_source"` // from one address
	ConnectionIdleTimeout   time.Duration `yaml:"connection_idle_timeout"`    // close connections idle this long

	Loops        int           `yaml:"loops"`              // event loops, default one per core
	Freshness    time.Duration `yaml:"freshness"`          // iat window, default 60s
	StaleDate    string        `yaml:"stale_date"`         // a Date outside freshness: refuse (forward unsigned, RFC 8224 4.1) | replace (deviation: Date replaced by now, signed)
	SignBudget   time.Duration `yaml:"sign_budget"`        // per-call budget before P-Identity-Bypass, default 100ms
	ResignSigned bool          `yaml:"resign_signed"`      // sign INVITEs already carrying a SHAKEN Identity
	MaxInFlight  int           `yaml:"max_in_flight"`      // signing jobs per loop
	RecvBuffer   int           `yaml:"sip_receive_buffer"` // SO_RCVBUF bytes of each loop's UDP socket; 0: fastpath's default (4 MiB)
	LogLevel     string        `yaml:"log_level"`          // debug | info | warn | error

	Policy policy.Config `yaml:"policy"`

	// ACME, when set, makes the appliance obtain and renew its certificate
	// (acme.go); cert and x5u then only name a starting certificate.
	ACME *ACME `yaml:"acme"`
}

// Signer is one link of the signer chain, in order of preference: a
// PKCS#11 key, a software key, or a remote STI-AS (docs/KEYS.md).
type Signer struct {
	Name    string        `yaml:"name"`
	PKCS11  string        `yaml:"pkcs11"`  // RFC 7512 URI with pin-source=file:...
	Key     string        `yaml:"key"`     // or a PEM key file (software signer)
	Timeout time.Duration `yaml:"timeout"` // per-signature timeout
	Workers int           `yaml:"workers"` // PKCS#11 sessions (signing goroutines); 0: GOMAXPROCS clamped to 4..8

	// Or a remote STI-AS: its ATIS-1000082 signing endpoint (https; http
	// only with lab), the file of its bearer token, the requests in
	// flight (keep-alive connections; default 16) and the FCC
	// own-certificate rule for its certificate: warn (default) or enforce.
	// TLSRoots is a PEM file of extra anchors for the STI-AS's https
	// certificate (a private CA), added to the system's.
	StiAS       string `yaml:"sti_as"`
	TokenFile   string `yaml:"token_file"`
	MaxInFlight int    `yaml:"max_in_flight"`
	OwnCert     string `yaml:"own_cert"`
	TLSRoots    string `yaml:"tls_roots"`
}

// SignerChain is the signer chain c configures, in order of preference:
// signers:, or else the one link pkcs11 or key names.
func (c Config) SignerChain() []Signer {
	switch {
	case len(c.Signers) > 0:
		return c.Signers
	case c.PKCS11 != "":
		return []Signer{{PKCS11: c.PKCS11}}
	default:
		return []Signer{{Key: c.Key}}
	}
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		Mode:           "proxy",
		SIP:            "127.0.0.1:5060",
		Attest:         "C",
		DefaultCountry: "US",
		Freshness:      60 * time.Second,
		StaleDate:      "refuse",
		SignBudget:     100 * time.Millisecond,
		LogLevel:       "info",
		SteerPort:      5099,

		TLSClientAuth:           "none",
		MaxConnections:          16384,
		MaxConnectionsPerSource: 256,
		ConnectionIdleTimeout:   120 * time.Second,
	}
}

// Load reads a YAML file over the defaults. Unknown keys are errors, so a
// typo cannot silently leave a setting at its default.
func Load(path string) (Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

// Validate checks what can be checked without opening files or keys.
func (c *Config) Validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(f, a...)) }
	switch c.Mode {
	case "proxy", "redirect", "inline":
	default:
		return bad("mode %q: want proxy, redirect or inline", c.Mode)
	}
	if _, err := netip.ParseAddrPort(c.SIP); err != nil && c.Mode != "inline" {
		return bad("sip %q: want ADDR:PORT", c.SIP)
	}
	if c.NextHop != "" {
		_, tr, err := sip.ParseHop(c.NextHop)
		if err != nil {
			return bad("next_hop %q: want ADDR:PORT or sip:ADDR:PORT;transport=udp|tcp|tls (or leave it out to route by Request-URI)", c.NextHop)
		}
		if tr != "udp" && c.Mode == "inline" {
			return bad("next_hop %q: inline mode carries UDP only", c.NextHop)
		}
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if c.Mode == "inline" && len(c.Ifaces) == 0 {
		return bad("inline mode needs iface")
	}
	if c.Advertise != "" {
		if _, err := netip.ParseAddrPort(c.Advertise); err != nil {
			return bad("advertise %q: want ADDR:PORT", c.Advertise)
		}
	}
	if c.API != "" {
		if _, err := netip.ParseAddrPort(c.API); err != nil {
			return bad("api %q: want ADDR:PORT", c.API)
		}
	}
	if c.Key == "" && c.PKCS11 == "" && len(c.Signers) == 0 {
		return bad("a signing key is required: key, pkcs11 or signers")
	}
	for i, s := range c.Signers {
		n := 0
		for _, v := range []string{s.Key, s.PKCS11, s.StiAS} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return bad("signers[%d]: set exactly one of key, pkcs11 and sti_as", i)
		}
		if s.StiAS == "" && (s.TokenFile != "" || s.MaxInFlight != 0 || s.OwnCert != "" || s.TLSRoots != "") {
			return bad("signers[%d]: token_file, max_in_flight, own_cert and tls_roots are for an sti_as link", i)
		}
		if s.StiAS != "" {
			if !strings.HasPrefix(s.StiAS, "https://") && !(c.Lab && strings.HasPrefix(s.StiAS, "http://")) {
				return bad("signers[%d]: sti_as %q: must be an https URL (http only with lab)", i, s.StiAS)
			}
			if s.MaxInFlight < 0 || s.MaxInFlight > 1024 {
				return bad("signers[%d]: max_in_flight %d: want 0 (default 16) to 1024", i, s.MaxInFlight)
			}
			if s.Workers != 0 {
				return bad("signers[%d]: an sti_as link has max_in_flight, not workers", i)
			}
			if c.ACME != nil {
				// certmgr moves the key links of the chain to each renewed
				// key; it does not carry remote links (docs/KEYS.md).
				return bad("signers[%d]: an sti_as link cannot be combined with acme", i)
			}
			switch s.OwnCert {
			case "", "warn", "enforce":
			default:
				return bad("signers[%d]: own_cert %q: want warn (the default) or enforce", i, s.OwnCert)
			}
		}
		if s.Workers < 0 || s.Workers > 256 {
			return bad("signers[%d]: workers %d: want 0 (default) to 256", i, s.Workers)
		}
		if s.Timeout < 0 {
			return bad("signers[%d]: timeout %v: want a positive duration (or none for the default)", i, s.Timeout)
		}
	}
	switch {
	case c.ACME != nil:
		if err := c.ACME.validate(c); err != nil {
			return err
		}
		if (c.Cert == "") != (c.X5U == "") {
			return bad("with acme, cert and x5u name a starting certificate: give both or neither")
		}
	case c.Cert == "":
		return bad("cert is required (the provider's certificate), or an acme: block")
	}
	if c.X5U != "" && !strings.HasPrefix(c.X5U, "https://") && !(c.Lab && strings.HasPrefix(c.X5U, "http://")) {
		return bad("x5u %q: must be an https URL (http only with lab)", c.X5U)
	}
	if c.ACME == nil && c.X5U == "" {
		return bad("x5u %q: must be an https URL (http only with lab)", c.X5U)
	}
	if _, err := policy.Build(c.Policy, c.Attest); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(c.DefaultCountry) != 2 {
		return bad("default_country %q: want an ISO 3166 alpha-2 code", c.DefaultCountry)
	}
	if c.RecvBuffer < 0 || c.RecvBuffer > 64<<20 {
		return bad("sip_receive_buffer %d: want 0 (the default) to 64 MiB", c.RecvBuffer)
	}
	if c.Freshness <= 0 || c.SignBudget <= 0 {
		return bad("freshness and sign_budget must be positive")
	}
	switch c.StaleDate {
	case "", "refuse", "replace":
	default:
		return bad("stale_date %q: want refuse (RFC 8224 section 4.1, the default) or replace", c.StaleDate)
	}
	return nil
}

// validateTLS checks the SIP over TCP and TLS keys.
func (c *Config) validateTLS() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(f, a...)) }
	if c.SIPTLS != "" {
		tls, err := netip.ParseAddrPort(c.SIPTLS)
		if err != nil {
			return bad("sip_tls %q: want ADDR:PORT", c.SIPTLS)
		}
		if c.Mode == "inline" {
			return bad("sip_tls: inline mode carries UDP only")
		}
		if c.TLSCert == "" || c.TLSKey == "" {
			return bad("sip_tls needs tls_cert and tls_key (the SIP TLS certificate, not the STI one)")
		}
		if sipAP, err := netip.ParseAddrPort(c.SIP); err == nil && sipAP.Port() == tls.Port() &&
			(sipAP.Addr() == tls.Addr() || sipAP.Addr().IsUnspecified() || tls.Addr().IsUnspecified()) {
			return bad("sip_tls %q: the sip address serves TCP on that port already", c.SIPTLS)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return bad("tls_cert and tls_key go together")
	}
	switch c.TLSClientAuth {
	case "", "none":
	case "request", "require":
		if c.TLSCA == "" {
			return bad("tls_client_auth %s needs tls_ca (the anchors client certificates are verified against)", c.TLSClientAuth)
		}
	default:
		return bad("tls_client_auth %q: want none, request or require", c.TLSClientAuth)
	}
	if c.UDPMTU != 0 && (c.UDPMTU < 256 || c.UDPMTU > 65535) {
		return bad("udp_mtu %d: want 0 (off) or 256 to 65535 bytes (RFC 3261 section 18.1.1 suggests 1300)", c.UDPMTU)
	}
	if c.UDPMTU != 0 && c.Mode == "inline" {
		return bad("udp_mtu: inline mode carries UDP only")
	}
	if c.MaxConnections < 0 || c.MaxConnectionsPerSource < 0 || c.ConnectionIdleTimeout < 0 {
		return bad("max_connections, max_connections_per_source and connection_idle_timeout may not be negative")
	}
	return nil
}

// ParseTrust parses the --trust flag: NAME=FILE[,NAME=FILE].
func ParseTrust(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, file, ok := strings.Cut(part, "=")
		if !ok || name == "" || file == "" {
			return nil, fmt.Errorf("%w: trust %q: want NAME=FILE", ErrInvalid, part)
		}
		out[name] = file
	}
	return out, nil
}
