package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
)

// A renewal swaps the credential: the next HTTP signing carries the new
// x5u and the new key's signature.
func TestSigningFollowsCredential(t *testing.T) {
	holder := new(credential.Holder)
	e := newEnv(t, func(c *Config) {
		roomyBudget(c)
		holder.Swap(&credential.Credential{Signer: c.Signer, Builder: c.Builder, Fingerprint: c.CertFingerprint})
		c.Credential = holder
	})
	iat := time.Now().Unix()
	first, err := passport.ParseIdentity(e.sign(t, "12155550100", []string{"12155550123"}, iat))
	if err != nil || first.Info != testX5U {
		t.Fatalf("before: %q %v", first.Info, err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	soft, _ := hsm.NewSoftware("new", k)
	defer soft.Close()
	b, _ := passport.NewBuilder("https://cert.example.org/renewed.pem")
	holder.Swap(&credential.Credential{Signer: hsm.NewPool(t.Context(), soft, 1, 16), Builder: b, Fingerprint: "renewed"})
	id, err := passport.ParseIdentity(e.sign(t, "12155550100", []string{"12155550123"}, iat))
	if err != nil {
		t.Fatal(err)
	}
	if id.Info != "https://cert.example.org/renewed.pem" || id.Header.X5U != id.Info {
		t.Fatalf("after the swap: info %q x5u %q", id.Info, id.Header.X5U)
	}
	if err := passport.VerifySignature(&k.PublicKey, id); err != nil {
		t.Fatalf("not signed with the new key: %v", err)
	}
}
