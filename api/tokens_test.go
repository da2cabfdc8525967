package api

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shakenline/shakenline/passport"
)

func TestNewRefusesWithoutTokens(t *testing.T) {
	b, _ := passport.NewBuilder(testX5U)
	if _, err := New(Config{Builder: b, Policy: testPolicy(t)}); !errors.Is(err, ErrNoTokens) {
		t.Fatalf("New without tokens: %v", err)
	}
	if _, err := New(Config{MonitorOnly: true}); err != nil {
		t.Fatalf("monitor-only: %v", err)
	}
	// lab without tokens: open
	e := newEnv(t, func(c *Config) { c.Tokens, c.Lab = nil, true })
	if r := e.do(t, "POST", "/stir/v1/attestation", `{"attestationRequest":{"orig":{"tn":"12155550100"}}}`, "Authorization", ""); r.status != 200 {
		t.Fatalf("lab: %d %s", r.status, r.body)
	}
	// monitor only: STIR routes are not there, health is
	m := newEnv(t, func(c *Config) { c.MonitorOnly, c.Tokens = true, nil })
	checkErr(t, m.do(t, "POST", "/stir/v1/signing", `{}`), 404, "serviceException", "SVC4003")
	if r := m.do(t, "GET", "/healthz", ""); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	for _, bad := range []string{"", "# only a comment\n\n", "short\n", "has space inside-0123456789\n"} {
		writeFile(t, path, bad)
		if _, err := LoadTokens(path); !errors.Is(err, ErrTokenFile) {
			t.Fatalf("LoadTokens(%q): %v", bad, err)
		}
	}
	if _, err := LoadTokens(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrTokenFile) {
		t.Fatalf("missing file: %v", err)
	}
	writeFile(t, path, "# ops\n  aaaaaaaaaaaaaaaaaaaa  \n\nbbbbbbbbbbbbbbbbbbbb\n")
	ts, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Len() != 2 || !ts.Valid("aaaaaaaaaaaaaaaaaaaa") || !ts.Valid("bbbbbbbbbbbbbbbbbbbb") || ts.Valid("aaaaaaaaaaaaaaaaaaa") || ts.Valid("") {
		t.Fatal("token set")
	}
	writeFile(t, path, "short\n")
	if err := ts.Reload(); err == nil || !ts.Valid("aaaaaaaaaaaaaaaaaaaa") {
		t.Fatalf("bad reload: %v; running set must stay", err)
	}
}
