package ansible

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shakenline/shakenline/internal/prereq"
)

// TestConfigRendersEveryFeature applies the role's preflight and configure
// tasks on this machine (connection local, files under a temporary
// directory) with the second wave's settings: SIP over TLS with mutual
// TLS, udp_mtu, a remote STI-AS link with its token, policy rules with div
// and Rich Call Data, a forward rule, extra keys, and in a second
// configuration an acme: block with no certificate. The configure tasks
// validate the rendered config with the real binary (`serve --check`), so
// a key the role renders wrong fails here; the test then reads the file
// back. A second run changes nothing, and an extra key the role renders
// itself fails the preflight.
func TestConfigRendersEveryFeature(t *testing.T) {
	prereq.Tools(t, "ansible-playbook", "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "appliance")
	buildAppliance(t, bin, "config-test")
	pki := filepath.Join(dir, "pki")
	if b, err := exec.Command(bin, "lab-pki", "--out", pki).CombinedOutput(); err != nil {
		t.Fatalf("lab-pki: %v\n%s", err, b)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(pki, name))
		must(t, err)
		return string(b)
	}
	tlsCert, tlsKey := selfSignedTLS(t)
	etc := filepath.Join(dir, "etc")
	for _, d := range []string{"keys", "trust", "tls", "sti-as"} {
		must(t, os.MkdirAll(filepath.Join(etc, d), 0o750))
	}
	role := filepath.Join(repoRoot(t), "deploy", "ansible", "roles")
	pb := filepath.Join(dir, "configure.yml")
	must(t, os.WriteFile(pb, []byte(`- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: appliance, tasks_from: preflight}
    - ansible.builtin.include_role: {name: appliance, tasks_from: configure}
`), 0o600))
	base := map[string]any{
		"appliance_config_dir":       etc,
		"appliance_binary_src":       bin,
		"appliance_group":            "root",
		"appliance_supervisor":       "pidfile",
		"appliance_supervise_script": "/bin/true",
		"appliance_validate_cmd":     bin + " serve --config %s --check",
		"appliance_sip":              "198.18.0.1:5060",
		"appliance_next_hop":         "sip:198.18.0.2:5061;transport=tls",
		"appliance_keys":             map[string]string{"sp": read("sp.key")},
		"appliance_trust_stores":     map[string]string{"US": read("root.pem")},
	}
	with := func(extra map[string]any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	playbook := func(vars map[string]any) *play {
		t.Helper()
		varsFile := filepath.Join(dir, "vars.json")
		writeJSON(t, varsFile, vars)
		cmd := exec.Command("ansible-playbook", "-i", "localhost,", "-c", "local", pb, "-e", "@"+varsFile)
		cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_ROLES_PATH="+role,
			"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"), "ANSIBLE_RETRY_FILES_ENABLED=0")
		p := runPlay(cmd, 3*time.Minute, "the configure tasks on localhost")
		for _, secret := range []string{"PRIVATE KEY", testToken} {
			if strings.Contains(p.out, secret) {
				t.Errorf("ansible output contains secret material %q", secret)
			}
		}
		return p
	}

	// 1. SIP over TLS, a remote STI-AS link, div and rcd rules, extras.
	stiVars := with(map[string]any{
		"appliance_cert_pem":        read("sp.pem"),
		"appliance_x5u":             "https://cert.example.net/sp.pem",
		"appliance_sip_tls":         "198.18.0.1:5061",
		"appliance_tls_cert_pem":    tlsCert,
		"appliance_tls_key_pem":     tlsKey,
		"appliance_tls_ca_pem":      tlsCert,
		"appliance_tls_client_auth": "require",
		"appliance_udp_mtu":         1300,
		"appliance_signers": []map[string]any{
			{"name": "soft", "key": "sp", "workers": 2},
			{"name": "remote", "sti_as": "https://198.18.0.9/stir/v1/signing", "timeout": "200ms", "max_in_flight": 8, "own_cert": "enforce"},
		},
		"appliance_sti_as_tokens": map[string]string{"remote": testToken},
		"appliance_policy": map[string]any{"default": "B", "rules": []map[string]any{
			{"name": "retail", "attest": "A", "sources": []string{"198.18.0.0/24"}, "div": true, "div_unverified": "sign",
				"rcd": map[string]any{"nam": "Example Telecom", "crn": "Billing"}, "rcd_ppt": "shaken"},
			{"name": "transit", "action": "forward", "sources": []string{"198.18.1.0/24"}},
		}},
		"appliance_config_extra": map[string]any{"audit_log": filepath.Join(dir, "audit.log"), "stale_date": "refuse",
			"max_connections": 1000},
	})
	p := playbook(stiVars)
	if p.err != nil {
		t.Fatalf("configure: %v\n%s", p.err, tail(p.out, 60))
	}
	var cfg struct {
		SIPTLS        string `yaml:"sip_tls"`
		TLSCert       string `yaml:"tls_cert"`
		TLSKey        string `yaml:"tls_key"`
		TLSCA         string `yaml:"tls_ca"`
		TLSClientAuth string `yaml:"tls_client_auth"`
		UDPMTU        int    `yaml:"udp_mtu"`
		AuditLog      string `yaml:"audit_log"`
		MaxConns      int    `yaml:"max_connections"`
		Signers       []map[string]any
		Policy        struct {
			Rules []map[string]any
		}
	}
	readYAML(t, filepath.Join(etc, "appliance.yml"), &cfg)
	if cfg.SIPTLS != "198.18.0.1:5061" || cfg.TLSCert != etc+"/tls/sip.pem" || cfg.TLSKey != etc+"/tls/sip.key" ||
		cfg.TLSCA != etc+"/tls/ca.pem" || cfg.TLSClientAuth != "require" || cfg.UDPMTU != 1300 || cfg.MaxConns != 1000 ||
		cfg.AuditLog == "" {
		t.Errorf("rendered top-level keys: %+v", cfg)
	}
	if len(cfg.Signers) != 2 || cfg.Signers[0]["workers"] != 2 || cfg.Signers[1]["token_file"] != etc+"/sti-as/remote.token" ||
		cfg.Signers[1]["own_cert"] != "enforce" || cfg.Signers[1]["max_in_flight"] != 8 {
		t.Errorf("rendered signers: %v", cfg.Signers)
	}
	if r := cfg.Policy.Rules; len(r) != 2 || r[0]["div"] != true || fmt.Sprint(r[0]["rcd"]) != "map[crn:Billing nam:Example Telecom]" ||
		r[1]["action"] != "forward" || r[1]["attest"] != nil {
		t.Errorf("rendered policy rules: %v", r)
	}
	for path, want := range map[string]string{"tls/sip.key": "440", "tls/sip.pem": "644", "sti-as/remote.token": "440"} {
		if st, err := os.Stat(filepath.Join(etc, path)); err != nil || fmt.Sprintf("%o", st.Mode().Perm()) != want {
			t.Errorf("%s: %v, want mode %s", path, st, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(etc, "sti-as", "remote.token")); string(b) != testToken+"\n" {
		t.Errorf("token file holds %d bytes, not the token", len(b))
	}
	if p := playbook(stiVars); p.err != nil || p.recap["localhost"].changed != 0 {
		t.Errorf("second run: %v, changed=%d\n%s", p.err, p.recap["localhost"].changed, steps(p.out))
	}

	// 2. ACME: no certificate, no x5u; the appliance obtains them.
	acmeVars := with(map[string]any{
		"appliance_signers": []map[string]any{{"name": "soft", "key": "sp"}},
		"appliance_acme": map[string]any{
			"directory": "https://198.18.0.10/acme/directory", "spc": "1234",
			"account_key": filepath.Join(dir, "acme", "account.key"), "state_dir": filepath.Join(dir, "acme"),
			"spc_token": map[string]any{"file": filepath.Join(dir, "spc-token.jwt")},
			"publish":   map[string]any{"url": "https://198.18.0.11/sti/", "dir": filepath.Join(dir, "www")},
			"trust":     []string{"US"},
		},
	})
	p = playbook(acmeVars)
	if p.err != nil {
		t.Fatalf("configure with acme: %v\n%s", p.err, tail(p.out, 60))
	}
	var acmeCfg map[string]any
	readYAML(t, filepath.Join(etc, "appliance.yml"), &acmeCfg)
	if _, ok := acmeCfg["cert"]; ok || acmeCfg["x5u"] != nil || acmeCfg["acme"] == nil {
		t.Errorf("with acme: cert %v, x5u %v, acme %v", acmeCfg["cert"], acmeCfg["x5u"], acmeCfg["acme"])
	}

	// 3. An extra key the role renders itself is refused before anything
	// is written.
	bad := with(map[string]any{"appliance_cert_pem": read("sp.pem"), "appliance_x5u": "https://cert.example.net/sp.pem",
		"appliance_signers": []map[string]any{{"name": "soft", "key": "sp"}}, "appliance_config_extra": map[string]any{"mode": "redirect"}})
	before, _ := os.ReadFile(filepath.Join(etc, "appliance.yml"))
	p = playbook(bad)
	if p.err == nil || !strings.Contains(p.out, "naming no key the role renders: mode") {
		t.Errorf("appliance_config_extra {mode: ...} was not refused: %v\n%s", p.err, tail(p.out, 20))
	}
	if after, _ := os.ReadFile(filepath.Join(etc, "appliance.yml")); string(after) != string(before) {
		t.Error("the refused run changed appliance.yml")
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
}

// selfSignedTLS is a SIP TLS certificate for 198.18.0.1 and its key, PEM.
func selfSignedTLS(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sip.example.net"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("198.18.0.1")}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	must(t, err)
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	must(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}
