package credential_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
)

func TestHolderSwap(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	cert, _ := x509.ParseCertificate(der)
	pool := hsm.NewPool(t.Context(), nil, 0, 1)
	b1, _ := passport.NewBuilder("https://a/1.pem")
	b2, _ := passport.NewBuilder("https://a/2.pem")
	c1, err := credential.New(pool, b1, []*x509.Certificate{cert})
	if err != nil || c1.Fingerprint == "" || c1.X5U() != "https://a/1.pem" || c1.Leaf() != cert {
		t.Fatalf("%+v %v", c1, err)
	}
	c2, _ := credential.New(pool, b2, []*x509.Certificate{cert})
	h := credential.NewHolder(c1)
	if old := h.Swap(c2); old != c1 || h.Load() != c2 {
		t.Fatal("Swap")
	}
	if _, err := credential.New(nil, b1, []*x509.Certificate{cert}); err == nil {
		t.Fatal("no signer accepted")
	}
}
