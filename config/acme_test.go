package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const acmeYAML = `
mode: proxy
sip: 127.0.0.1:5060
next_hop: 127.0.0.1:5070
pkcs11: "pkcs11:token=sti;object=shaken?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin"
trust: {US: /etc/shakenline/us-roots.pem}
acme:
  directory: https://sti-ca.example.net/acme/directory
  spc: "1234"
  organization: Example Telecom
  country: US
  spc_token:
    api: https://sti-pa.example.net
    credentials: /etc/shakenline/sti-pa.json
  publish:
    url: https://cert.example.net/sti/
    dir: /var/www/sti
  renew_before: 720h
  unready_before: 1h
`

func TestACMEBlock(t *testing.T) {
	c, err := Load(write(t, acmeYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("acme without cert/x5u: %v", err)
	}
	a := c.ACME
	if a.SPC != "1234" || a.SPCToken.API == "" || a.Publish.Dir != "/var/www/sti" || a.RenewBefore != 720*time.Hour || a.UnreadyBefore != time.Hour {
		t.Fatalf("%+v", a)
	}
	for name, mod := range map[string]func(c *Config){
		"http directory":     func(c *Config) { c.ACME.Directory = "http://ca/dir" },
		"no spc":             func(c *Config) { c.ACME.SPC = "" },
		"bad spc":            func(c *Config) { c.ACME.SPC = "12 34" },
		"two token sources":  func(c *Config) { c.ACME.SPCToken.File = "/t.jwt" },
		"no token source":    func(c *Config) { c.ACME.SPCToken = SPCToken{} },
		"api no credentials": func(c *Config) { c.ACME.SPCToken.Credentials = "" },
		"two publishers":     func(c *Config) { c.ACME.Publish.Listen = "0.0.0.0:8443" },
		"no publisher":       func(c *Config) { c.ACME.Publish.Dir = "" },
		"listen without tls": func(c *Config) { c.ACME.Publish.Dir, c.ACME.Publish.Listen = "", "0.0.0.0:8443" },
		"http publish url":   func(c *Config) { c.ACME.Publish.URL = "http://cert/" },
		"unknown store":      func(c *Config) { c.ACME.Trust = []string{"FR"} },
		"no trust store":     func(c *Config) { c.Trust = nil },
		"two account keys":   func(c *Config) { c.ACME.AccountKey, c.ACME.AccountKeyPKCS11 = "/a", "pkcs11:x" },
		"cert without x5u":   func(c *Config) { c.Cert = "/c.pem" },
		"negative retry":     func(c *Config) { c.ACME.RetryMin = -time.Second },
		"bad tn range":       func(c *Config) { c.ACME.TNRanges = []TNRange{{Start: "1215555", Count: 1}} },
	} {
		c, _ := Load(write(t, acmeYAML))
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "") {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	// The lab allows http and the built-in repository without TLS.
	c, _ = Load(write(t, acmeYAML))
	c.Lab = true
	c.ACME.Directory, c.ACME.Publish.URL = "http://127.0.0.1:9/dir", "http://127.0.0.1:8080/x5u/"
	c.ACME.Publish.Dir, c.ACME.Publish.Listen = "", "127.0.0.1:8080"
	if err := c.Validate(); err != nil {
		t.Fatalf("lab: %v", err)
	}
	// A remote STI-AS link cannot follow a renewal (certmgr moves key
	// links only): refused with acme, accepted without the link.
	c, _ = Load(write(t, acmeYAML))
	c.Signers = []Signer{{PKCS11: c.PKCS11}, {Name: "fallback", StiAS: "https://sti-as.example.net/stir/v1/signing"}}
	c.PKCS11 = ""
	if err := c.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "sti_as") {
		t.Fatalf("acme with an sti_as link: %v", err)
	}
	c.Signers = c.Signers[:1]
	if err := c.Validate(); err != nil {
		t.Fatalf("acme with a signers: chain: %v", err)
	}
	// Without acme, cert and x5u stay required.
	c, _ = Load(write(t, acmeYAML))
	c.ACME = nil
	if err := c.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no acme, no cert: %v", err)
	}
	if _, err := Load(write(t, acmeYAML+"  renw_before: 1h\n")); err == nil {
		t.Fatal("typo in the acme block accepted")
	}
}
