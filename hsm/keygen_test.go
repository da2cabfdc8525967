package hsm_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

// A key generated in the token signs a CSR through PKCS#11 that
// crypto/x509 accepts, a chain opens on it by object and id, and after
// DestroyKey it is gone.
func TestGenerateKeyInToken(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("gen", nil)
	u, err := hsm.ParseURI(tk.URI())
	if err != nil {
		t.Fatal(err)
	}
	id := hsm.NewKeyID()
	pub, err := hsm.GenerateKey(u, "sti-2", id)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Equal(&tk.Key.PublicKey) {
		t.Fatal("generated key equals the imported one")
	}
	if _, err := hsm.GenerateKey(u, "sti-2", id); !errors.Is(err, hsm.ErrKeyExists) {
		t.Fatalf("second GenerateKey with the same label and id: %v", err)
	}
	nu := u
	nu.Object, nu.ID = "sti-2", id
	p, err := hsm.OpenPKCS11(nu, hsm.PKCS11Options{Want: pub, Sessions: 1})
	if err != nil {
		t.Fatalf("open the generated key: %v", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "SHAKEN 1234"}}, hsm.CryptoSigner(p))
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signed through PKCS#11 does not verify: %v", err)
	}
	if !csr.PublicKey.(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("CSR key is not the generated key")
	}
	if ok, err := hsm.HasKey(u, "sti-2", id); err != nil || !ok {
		t.Fatalf("HasKey = %v, %v", ok, err)
	}
	if err := hsm.DestroyKey(u, "sti-2", id); err != nil {
		t.Fatal(err)
	}
	if ok, err := hsm.HasKey(u, "sti-2", id); err != nil || ok {
		t.Fatalf("HasKey after DestroyKey = %v, %v", ok, err)
	}
	if _, err := hsm.OpenPKCS11(nu, hsm.PKCS11Options{Want: pub, Sessions: 1}); !errors.Is(err, hsm.ErrObjectNotFound) {
		t.Fatalf("open after DestroyKey: %v", err)
	}
	// The imported key is untouched.
	if ok, err := hsm.HasKey(u, softhsmtest.KeyLabel, tk.KeyID); err != nil || !ok {
		t.Fatalf("the token's first key: %v, %v", ok, err)
	}
}

func TestRawToDER(t *testing.T) {
	k := newKey(t)
	d := sha256.Sum256([]byte("x"))
	der, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	var raw [64]byte
	if err := hsm.DERToRaw(der, &raw); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hsm.RawToDER(&raw), der) {
		t.Fatal("RawToDER(DERToRaw(der)) != der")
	}
}

// Two chains with links of one name (the old and the new key during a
// renewal) expose each series once; the series stay while either is open.
func TestChainsShareSignerSeries(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	c1cert, _ := softhsmtest.SelfSigned(k1, "a")
	c2cert, _ := softhsmtest.SelfSigned(k2, "b")
	s1, _ := hsm.NewSoftware("renewing", k1)
	s2, _ := hsm.NewSoftware("renewing", k2)
	defer s1.Close()
	defer s2.Close()
	c1, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{Signer: s1}}}, c1cert)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{Signer: s2}}}, c2cert)
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var b bytes.Buffer
		metrics.WritePrometheus(&b, false)
		return strings.Count(b.String(), "\nshakenline_hsm_ready{signer=\"renewing\"}")
	}
	if n := count(); n != 1 {
		t.Fatalf("two live chains: the ready series appears %d times, want 1", n)
	}
	c1.Close()
	if n := count(); n != 1 {
		t.Fatalf("one chain left: %d series, want 1", n)
	}
	c2.Close()
	if n := count(); n != 0 {
		t.Fatalf("no chain left: %d series, want 0", n)
	}
}
