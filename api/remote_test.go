package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/stias"
)

// A signing request whose chain signs through a remote STI-AS link
// (package stias, here another API server of this package): the answer
// carries the Identity header value the remote made, as it is (its x5u,
// its signature over our claims), and the audit line names the link and
// no certificate fingerprint of ours.
func TestSignThroughRemoteLink(t *testing.T) {
	const remoteX5U = "https://sti-as.example.org/sp.pem"
	remote := newEnv(t, func(c *Config) {
		b, err := passport.NewBuilder(remoteX5U)
		if err != nil {
			t.Fatal(err)
		}
		c.Builder = b
	})
	cl, err := stias.New(stias.Config{Name: "sti-as", URL: remote.base + "/stir/v1/signing", Token: testToken, Lab: true,
		Timeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	chain, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{Remote: cl, Workers: 4, Timeout: 5 * time.Second}}},
		remote.h.SP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chain.Close() })
	path := filepath.Join(t.TempDir(), "audit.log")
	al, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Signer, c.Audit, c.Ready = chain, al, nil })
	now := time.Now().Unix()
	r := e.do(t, "POST", "/stir/v1/signing", signBody("A", "12155550100", []string{"12155550199"}, now, ""))
	if r.status != 200 {
		t.Fatalf("signing: %d %s", r.status, r.body)
	}
	var out struct {
		R struct {
			Identity string `json:"identity"`
		} `json:"signingResponse"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	id, err := passport.ParseIdentity(out.R.Identity)
	if err != nil {
		t.Fatal(err)
	}
	if id.Header.X5U != remoteX5U || id.Info != remoteX5U {
		t.Fatalf("x5u %q info %q: want the remote's %q", id.Header.X5U, id.Info, remoteX5U)
	}
	if err := passport.VerifySignature(&remote.h.SPKey.PublicKey, id); err != nil {
		t.Fatal(err)
	}
	if p := id.Payload; p.Attest != "A" || p.Orig.TN != "12155550100" || p.IAT != now {
		t.Fatalf("claims %+v", p)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if line := strings.TrimSpace(string(b)); !strings.Contains(line, " signer=sti-as cert=-") {
		t.Fatalf("audit line %q: want signer=sti-as cert=-", line)
	}
}
