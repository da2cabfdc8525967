package signertest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

func TestSoftware(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := hsm.NewSoftware("soft", key)
	if err != nil {
		t.Fatal(err)
	}
	signertest.Run(t, s)
}

// TestCryptoSigner runs the suite on the reference signer other packages'
// tests use.
func TestCryptoSigner(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signertest.Run(t, signertest.CryptoSigner{Key: key})
}

func TestSoftHSM(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("conformance", nil)
	u, err := hsm.ParseURI(tk.URI())
	if err != nil {
		t.Fatal(err)
	}
	p, err := hsm.OpenPKCS11(u, hsm.PKCS11Options{Sessions: 4, Want: &tk.Key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	signertest.Run(t, p)
}
