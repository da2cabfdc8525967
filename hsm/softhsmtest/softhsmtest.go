// Package softhsmtest creates real SoftHSMv2 tokens for tests, benchmarks and
// lab tooling: a private token directory with its own softhsm2.conf, tokens
// initialised with softhsm2-util, and P-256 keys generated in Go and imported
// as PKCS#8.
//
// SOFTHSM2_CONF is process-wide and SoftHSM reads it when the module is
// initialised, so an Env sets it (t.Setenv) and every token of one test lives
// in the same Env. Tests using an Env cannot run in parallel with each other.
//
// Env.Serve (p11kit.go) exports a token through `p11-kit server` in its own
// process, reached with p11-kit-client.so: the layout of a network HSM.
//
// When softhsm2-util or the module (or p11-kit, for Serve) is missing the
// test is skipped, unless the environment has CI=true, where a missing
// prerequisite fails the test.
package softhsmtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
)

// DefaultModule is where Debian's softhsm2 package installs the module.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// Default credentials of tokens made by Env.NewToken. Test values only.
const (
	PIN      = "1234"
	SOPIN    = "5678"
	KeyLabel = "shaken"
	KeyIDHex = "01"
)

// Env is one private SoftHSM token directory.
type Env struct {
	Dir    string // token directory
	Conf   string // softhsm2.conf path (also in SOFTHSM2_CONF)
	Module string // PKCS#11 module path
	t      testing.TB
}

// Token is an initialised token holding one imported P-256 key pair.
type Token struct {
	Label    string
	PIN      string
	KeyLabel string
	KeyID    []byte
	Key      *ecdsa.PrivateKey
	PINFile  string            // file holding PIN (no trailing newline handling needed by readers)
	Cert     *x509.Certificate // self-signed certificate for Key
	env      *Env
}

// Available reports whether softhsm2-util and the module are installed.
func Available() error {
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return fmt.Errorf("softhsmtest: softhsm2-util not installed: %w", err)
	}
	if _, err := os.Stat(DefaultModule); err != nil {
		return fmt.Errorf("softhsmtest: module missing: %w", err)
	}
	return nil
}

// Require skips t when SoftHSM is missing, or fails it when CI=true.
func Require(t testing.TB) {
	t.Helper()
	prereq.Need(t, Available())
}

// New makes a token directory in t.TempDir, writes its softhsm2.conf and
// points SOFTHSM2_CONF at it for the rest of the test.
func New(t testing.TB) *Env {
	t.Helper()
	Require(t)
	base := t.TempDir()
	e, err := NewEnv(base)
	if err != nil {
		t.Fatal(err)
	}
	e.t = t
	t.Setenv("SOFTHSM2_CONF", e.Conf)
	return e
}

// NewEnv is New without testing: it creates base/tokens and base/softhsm2.conf.
// The caller sets SOFTHSM2_CONF to e.Conf before loading the module.
func NewEnv(base string) (*Env, error) {
	dir := filepath.Join(base, "tokens")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("softhsmtest: %w", err)
	}
	conf := filepath.Join(base, "softhsm2.conf")
	body := "directories.tokendir = " + dir + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("softhsmtest: %w", err)
	}
	return &Env{Dir: dir, Conf: conf, Module: DefaultModule}, nil
}

// NewToken initialises a token labelled label and imports key (a fresh P-256
// key when nil) under KeyLabel / KeyIDHex with PIN.
func (e *Env) NewToken(label string, key *ecdsa.PrivateKey) *Token {
	if e.t != nil {
		e.t.Helper()
	}
	tk, err := e.CreateToken(label, key)
	if err != nil {
		e.fatal(err)
	}
	return tk
}

// CreateToken is NewToken returning an error instead of failing a test.
func (e *Env) CreateToken(label string, key *ecdsa.PrivateKey) (*Token, error) {
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("softhsmtest: %w", err)
		}
	}
	id, _ := hex.DecodeString(KeyIDHex)
	tk := &Token{Label: label, PIN: PIN, KeyLabel: KeyLabel, KeyID: id, Key: key, env: e}
	base := filepath.Dir(e.Dir)
	tk.PINFile = filepath.Join(base, label+".pin")
	if err := os.WriteFile(tk.PINFile, []byte(PIN+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("softhsmtest: %w", err)
	}
	cert, err := SelfSigned(key, label)
	if err != nil {
		return nil, err
	}
	tk.Cert = cert
	if err := tk.create(); err != nil {
		return nil, err
	}
	return tk, nil
}

// create initialises the token and imports the key (again, after Delete).
func (tk *Token) create() error {
	e := tk.env
	if err := e.run("--init-token", "--free", "--label", tk.Label, "--pin", tk.PIN, "--so-pin", SOPIN); err != nil {
		return err
	}
	return tk.importKey()
}

// importKey imports tk.Key into the token as PKCS#8.
func (tk *Token) importKey() error {
	e := tk.env
	der, err := x509.MarshalPKCS8PrivateKey(tk.Key)
	if err != nil {
		return fmt.Errorf("softhsmtest: %w", err)
	}
	keyFile := filepath.Join(filepath.Dir(e.Dir), tk.Label+".key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("softhsmtest: %w", err)
	}
	defer os.Remove(keyFile)
	return e.run("--import", keyFile, "--token", tk.Label, "--label", tk.KeyLabel, "--id", hex.EncodeToString(tk.KeyID), "--pin", tk.PIN)
}

// URI is the RFC 7512 URI selecting this token's key, PIN from PINFile.
func (tk *Token) URI() string {
	return "pkcs11:token=" + escape(tk.Label) + ";object=" + escape(tk.KeyLabel) + ";id=" + pctBytes(tk.KeyID) +
		";type=private?module-path=" + escape(tk.env.Module) + "&pin-source=file:" + escape(tk.PINFile)
}

// Delete removes the token with softhsm2-util --delete-token, as if the
// device had been pulled while in use.
func (tk *Token) Delete() {
	if err := tk.env.run("--delete-token", "--token", tk.Label); err != nil {
		tk.env.fatal(err)
	}
}

// Restore re-creates a deleted token with the same label, PIN and key.
func (tk *Token) Restore() {
	if err := tk.create(); err != nil {
		tk.env.fatal(err)
	}
}

// InitWithoutPIN is the first half of re-provisioning a deleted token the
// way an operator's tool may do it (pkcs11-tool from OpenSC): C_InitToken
// only, so the token is present with this label and no user PIN yet.
// FinishInit sets the PIN (C_InitPIN) and imports the key.
func (tk *Token) InitWithoutPIN() {
	e := tk.env
	out, err := e.tool("-L")
	if err == nil {
		var idx int
		idx, err = freeSlotIndex(out)
		if err == nil {
			_, err = e.tool("--slot-index", strconv.Itoa(idx), "--init-token", "--label", tk.Label, "--so-pin", SOPIN)
		}
	}
	if err != nil {
		e.fatal(err)
	}
}

// FinishInit completes InitWithoutPIN: the user PIN, then the key.
func (tk *Token) FinishInit() {
	e := tk.env
	if _, err := e.tool("--token-label", tk.Label, "--init-pin", "--login", "--login-type", "so", "--so-pin", SOPIN, "--new-pin", tk.PIN); err != nil {
		e.fatal(err)
	}
	if err := tk.importKey(); err != nil {
		e.fatal(err)
	}
}

// freeSlotIndex finds the index of the first slot `pkcs11-tool -L` shows
// with an uninitialised token (SoftHSM always offers one).
func freeSlotIndex(list []byte) (int, error) {
	idx := -1
	for line := range bytes.Lines(list) {
		line = bytes.TrimSpace(line)
		if bytes.HasPrefix(line, []byte("Slot ")) {
			idx++
		}
		if idx >= 0 && bytes.HasPrefix(line, []byte("token state:")) && bytes.HasSuffix(line, []byte("uninitialized")) {
			return idx, nil
		}
	}
	return 0, fmt.Errorf("softhsmtest: no free slot in pkcs11-tool -L: %s", list)
}

// tool runs OpenSC's pkcs11-tool on the module with this Env's token
// directory.
func (e *Env) tool(args ...string) ([]byte, error) {
	cmd := exec.Command("pkcs11-tool", append([]string{"--module", e.Module}, args...)...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		// The arguments carry test PINs only; the output never holds a PIN.
		return out, fmt.Errorf("softhsmtest: pkcs11-tool %s: %w: %s", args[len(args)-1], err, bytes.TrimSpace(out))
	}
	return out, nil
}

func (e *Env) fatal(err error) {
	if e.t != nil {
		e.t.Helper()
		e.t.Fatal(err)
	}
	panic(err)
}

func (e *Env) run(args ...string) error {
	cmd := exec.Command("softhsm2-util", args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		// The arguments carry test PINs only; the output never holds a PIN.
		return fmt.Errorf("softhsmtest: softhsm2-util %s: %w: %s", args[0], err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// SelfSigned returns a self-signed certificate for key, enough for the
// key-matches-certificate check.
func SelfSigned(key *ecdsa.PrivateKey, cn string) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("softhsmtest: %w", err)
	}
	return x509.ParseCertificate(der)
}

// escape percent-encodes everything outside RFC 7512's unreserved set plus '/'.
func escape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '/' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
	}
	return string(b)
}

func pctBytes(v []byte) string {
	var b []byte
	for _, c := range v {
		b = append(b, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
	}
	return string(b)
}
