package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadAndValidate(t *testing.T) {
	p := write(t, `
mode: proxy
sip: 127.0.0.1:5060
next_hop: 127.0.0.1:5070
key: /k.pem
cert: /c.pem
x5u: https://cert.example/sp.pem
sign_budget: 250ms
policy:
  default: B
  rules:
    - {name: retail, attest: A, sources: [198.18.1.0/24]}
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.SignBudget != 250*time.Millisecond || c.Freshness != 60*time.Second || c.DefaultCountry != "US" || c.StaleDate != "refuse" {
		t.Fatalf("defaults/overrides wrong: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestStaleDate(t *testing.T) {
	c, err := Load(write(t, "stale_date: replace\nfreshness: 30s\n"))
	if err != nil || c.StaleDate != "replace" || c.Freshness != 30*time.Second {
		t.Fatalf("stale_date: replace: %v %+v", err, c)
	}
}

func TestReceiveBufferKey(t *testing.T) {
	c, err := Load(write(t, "sip_receive_buffer: 1048576\n"))
	if err != nil || c.RecvBuffer != 1<<20 {
		t.Fatalf("sip_receive_buffer: %v %+v", err, c)
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	if _, err := Load(write(t, "next_hopp: 1.2.3.4:5\n")); err == nil || !strings.Contains(err.Error(), "next_hopp") {
		t.Fatalf("typo accepted: %v", err)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	c, err := Load(write(t, ""))
	if err != nil || c.Mode != "proxy" {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestValidateErrors(t *testing.T) {
	base := Config{Mode: "proxy", SIP: "127.0.0.1:5060", NextHop: "127.0.0.1:5070", Key: "k", Cert: "c",
		X5U: "https://x/y", Attest: "A", DefaultCountry: "US", Freshness: time.Minute, SignBudget: time.Second}
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"mode":        func(c *Config) { c.Mode = "bridge" },
		"next hop":    func(c *Config) { c.NextHop = "example.com" },
		"no key":      func(c *Config) { c.Key = "" },
		"no cert":     func(c *Config) { c.Cert = "" },
		"http x5u":    func(c *Config) { c.X5U = "http://x/y" },
		"attest":      func(c *Config) { c.Attest = "D" },
		"country":     func(c *Config) { c.DefaultCountry = "USA" },
		"inline":      func(c *Config) { c.Mode = "inline" },
		"both signer": func(c *Config) { c.Signers = []Signer{{Key: "a", PKCS11: "b"}} },
		"workers":     func(c *Config) { c.Signers = []Signer{{PKCS11: "b", Workers: -1}} },
		"timeout":     func(c *Config) { c.Signers = []Signer{{PKCS11: "b", Timeout: -time.Second}} },
		"bad rule":    func(c *Config) { c.Policy.Rules = append(c.Policy.Rules, c.Policy.Rules...); c.Policy.Default = "Z" },
		"stale date":  func(c *Config) { c.StaleDate = "ignore" },
		"sti_as+key":  func(c *Config) { c.Signers = []Signer{{Key: "a", StiAS: "https://sti-as.example/stir/v1/signing"}} },
		"http sti_as": func(c *Config) { c.Signers = []Signer{{StiAS: "http://sti-as.example/stir/v1/signing"}} },
		"own_cert":    func(c *Config) { c.Signers = []Signer{{StiAS: "https://s/", OwnCert: "strict"}} },
		"in flight":   func(c *Config) { c.Signers = []Signer{{StiAS: "https://s/", MaxInFlight: -1}} },
		"sti workers": func(c *Config) { c.Signers = []Signer{{StiAS: "https://s/", Workers: 4}} },
		"token, key":  func(c *Config) { c.Signers = []Signer{{Key: "a", TokenFile: "/t"}} },
		"roots, key":  func(c *Config) { c.Signers = []Signer{{Key: "a", TLSRoots: "/ca.pem"}} },
		"rcvbuf < 0":  func(c *Config) { c.RecvBuffer = -1 },
		"rcvbuf huge": func(c *Config) { c.RecvBuffer = 65 << 20 },
	} {
		c := base
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	ok := base
	ok.Signers = []Signer{{PKCS11: "b", Workers: 16, Timeout: 200 * time.Millisecond}}
	if err := ok.Validate(); err != nil {
		t.Errorf("signer with workers and timeout refused: %v", err)
	}
	remote := base
	remote.Signers = []Signer{{PKCS11: "b"}, {Name: "primary", StiAS: "https://sti-as.example/stir/v1/signing", TokenFile: "/t",
		Timeout: 300 * time.Millisecond, MaxInFlight: 32, OwnCert: "enforce", TLSRoots: "/etc/shakenline/sti-as-ca.pem"}}
	if err := remote.Validate(); err != nil {
		t.Errorf("sti_as link refused: %v", err)
	}
	lab := base
	lab.X5U, lab.Lab = "http://127.0.0.1/sp.pem", true
	lab.Signers = []Signer{{StiAS: "http://127.0.0.1:8080/stir/v1/signing"}}
	if err := lab.Validate(); err != nil {
		t.Errorf("lab http x5u refused: %v", err)
	}
}

func TestParseTrust(t *testing.T) {
	m, err := ParseTrust("us=/a.pem, global=/b.pem")
	if err != nil || m["us"] != "/a.pem" || m["global"] != "/b.pem" {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := ParseTrust("us"); err == nil {
		t.Fatal("missing = accepted")
	}
}

func TestStreamKeys(t *testing.T) {
	base := Default()
	base.Key, base.Cert, base.X5U = "/k.pem", "/c.pem", "https://cert.example/sp.pem"
	ok := map[string]func(*Config){
		"next hop tcp":  func(c *Config) { c.NextHop = "sip:198.18.0.1:5070;transport=tcp" },
		"next hop sips": func(c *Config) { c.NextHop = "sips:198.18.0.1" },
		"tls listener":  func(c *Config) { c.SIPTLS, c.TLSCert, c.TLSKey = "127.0.0.1:5061", "/t.pem", "/t.key" },
		"mutual TLS": func(c *Config) {
			c.SIPTLS, c.TLSCert, c.TLSKey, c.TLSCA, c.TLSClientAuth = "127.0.0.1:5061", "/t.pem", "/t.key", "/ca.pem", "require"
		},
		"udp_mtu": func(c *Config) { c.UDPMTU = 1300 },
		"limits": func(c *Config) {
			c.MaxConnections, c.MaxConnectionsPerSource, c.ConnectionIdleTimeout = 10, 2, time.Minute
		},
	}
	bad := map[string]func(*Config){
		"next hop sctp":       func(c *Config) { c.NextHop = "sip:198.18.0.1;transport=sctp" },
		"next hop name":       func(c *Config) { c.NextHop = "sip:sbc.example.net;transport=tcp" },
		"tls without cert":    func(c *Config) { c.SIPTLS = "127.0.0.1:5061" },
		"tls on the sip port": func(c *Config) { c.SIPTLS, c.TLSCert, c.TLSKey = "127.0.0.1:5060", "/t.pem", "/t.key" },
		"require without ca":  func(c *Config) { c.TLSClientAuth = "require" },
		"client auth typo":    func(c *Config) { c.TLSClientAuth = "mandatory" },
		"cert without key":    func(c *Config) { c.TLSCert = "/t.pem" },
		"udp_mtu tiny":        func(c *Config) { c.UDPMTU = 100 },
		"inline tls next hop": func(c *Config) {
			c.Mode, c.Ifaces, c.NextHop = "inline", []string{"eth0"}, "sip:198.18.0.1;transport=tls"
		},
		"inline udp_mtu":           func(c *Config) { c.Mode, c.Ifaces, c.UDPMTU = "inline", []string{"eth0"}, 1300 },
		"negative max_connections": func(c *Config) { c.MaxConnections = -1 },
	}
	for name, mut := range ok {
		c := base
		mut(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, mut := range bad {
		c := base
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}

// TestDivAndRCDKeys: the policy's div and rcd keys load from YAML (an
// inline jCard as a YAML sequence), and a bad one fails validation with
// the rule named.
func TestDivAndRCDKeys(t *testing.T) {
	base := "key: /k.pem\ncert: /c.pem\nx5u: https://cert.example/sp.pem\npolicy:\n  rules:\n"
	c, err := Load(write(t, base+`    - name: forwarding
      attest: A
      numbers: ["+1202555*"]
      div: true
      div_unverified: forward
    - name: bank
      attest: A
      numbers: ["+12155550100"]
      rcd:
        nam: Example Bank
        icn: https://brand.example/logo.png
        jcd: ["vcard", [["fn", {}, "text", "Example Bank"], ["logo", {}, "uri", "https://brand.example/l.png"]]]
        crn: Your card
      rcd_ppt: rcd
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := c.Policy.Rules
	if !r[0].Div || r[0].DivUnverified != "forward" || r[1].RCD == nil || r[1].RCD.Nam != "Example Bank" || r[1].RCDPPT != "rcd" || r[1].RCD.Jcd == nil {
		t.Fatalf("rules %+v", r)
	}
	for _, bad := range []string{
		"    - {name: x, attest: A, rcd: {icn: \"https://brand.example/l.png\"}}\n",
		"    - {name: x, attest: A, rcd: {nam: n, jcl: \"https://a/c.json\", jcd: [\"vcard\", []]}}\n",
		"    - {name: x, action: verify, div: true}\n",
		"    - {name: x, attest: A, rcd: {nam: n, logo: x}}\n",
	} {
		c, err := Load(write(t, base+bad))
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
}

// The chain is signers: when given, else the one link key or pkcs11 names.
func TestSignerChain(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want []Signer
	}{
		{Config{Key: "/k.pem"}, []Signer{{Key: "/k.pem"}}},
		{Config{PKCS11: "pkcs11:token=a"}, []Signer{{PKCS11: "pkcs11:token=a"}}},
		{Config{Key: "/k.pem", Signers: []Signer{{Name: "hsm", PKCS11: "pkcs11:token=b"}, {Name: "soft", Key: "/s.pem"}}},
			[]Signer{{Name: "hsm", PKCS11: "pkcs11:token=b"}, {Name: "soft", Key: "/s.pem"}}},
	} {
		if got := tc.c.SignerChain(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: chain %+v, want %+v", tc.c, got, tc.want)
		}
	}
}
