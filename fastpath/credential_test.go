package fastpath

import (
	"context"
	"crypto/ecdsa"
	"net"
	"testing"

	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
)

// heldSigner keeps each request until the test signs it with key.
type heldSigner struct {
	s    hsm.Signer
	held chan *hsm.Request
}

func (h heldSigner) Submit(r *hsm.Request) error { h.held <- r; return nil }

// A renewal swaps the credential while a call is being signed: that call
// leaves with the old x5u and a signature by the old key; the next call
// carries the new x5u and the new key's signature.
func TestCredentialSwitchMidCall(t *testing.T) {
	oldKey, newKeyPair := newKey(t), newKey(t)
	oldSoft, _ := hsm.NewSoftware("old", oldKey)
	newSoft, _ := hsm.NewSoftware("new", newKeyPair)
	defer oldSoft.Close()
	defer newSoft.Close()
	held := heldSigner{s: oldSoft, held: make(chan *hsm.Request, 1)}
	oldB, _ := passport.NewBuilder("https://cert.example/old.pem")
	newB, _ := passport.NewBuilder("https://cert.example/new.pem")
	holder := credential.NewHolder(&credential.Credential{Signer: held, Builder: oldB})
	te := start(t, Proxy, func(c *Config, _ *testEnv) { c.Credential = holder })
	from := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	te.send(t, invite(from, "inflight", ""))
	r := <-held.held // the call is at the old signer
	holder.Swap(&credential.Credential{Signer: hsm.NewPool(t.Context(), newSoft, 1, 16), Builder: newB})
	te.send(t, invite(from, "after", ""))
	check := func(wantX5U string, key *ecdsa.PublicKey) {
		t.Helper()
		got, _ := recv(t, te.next)
		m := parse(t, got)
		if m.NumIdentity != 1 {
			t.Fatalf("unsigned:\n%s", got)
		}
		id, err := passport.ParseIdentity(string(m.Identity[0].In(got)))
		if err != nil {
			t.Fatal(err)
		}
		if id.Info != wantX5U || id.Header.X5U != wantX5U {
			t.Fatalf("info %q x5u %q, want %q", id.Info, id.Header.X5U, wantX5U)
		}
		if err := passport.VerifySignature(key, id); err != nil {
			t.Fatalf("%s: signature: %v", wantX5U, err)
		}
	}
	check("https://cert.example/new.pem", &newKeyPair.PublicKey)
	if err := oldSoft.SignDigest(context.Background(), &r.Digest, &r.Sig); err != nil {
		t.Fatal(err)
	}
	r.Done(r)
	check("https://cert.example/old.pem", &oldKey.PublicKey)
}
