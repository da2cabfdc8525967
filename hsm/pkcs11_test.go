package hsm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPKCS11SignVerifiesWithCertificate(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("sign", nil)
	c, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{PKCS11: tk.URI(), Workers: 2}}}, tk.Cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := c.Health()
	if len(h) != 1 || h[0].Name != "pkcs11:sign" || h[0].State != hsm.StateClosed || !h[0].Ready {
		t.Fatalf("health %+v", h)
	}
	done := make(chan *hsm.Request, 1)
	r := &hsm.Request{Digest: sha256.Sum256([]byte("claims")), Done: func(r *hsm.Request) { done <- r }}
	if err := c.Submit(r); err != nil {
		t.Fatal(err)
	}
	<-done
	if r.Err != nil || r.SignedBy != "pkcs11:sign" {
		t.Fatalf("err %v by %q", r.Err, r.SignedBy)
	}
	if !signertest.Verify(tk.Cert.PublicKey.(*ecdsa.PublicKey), &r.Digest, &r.Sig) {
		t.Fatal("signature does not verify with the certificate")
	}
	if h := c.Health(); h[0].Sessions < 1 {
		t.Fatalf("sessions %d", h[0].Sessions)
	}
}

func TestPKCS11OpenErrors(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("errs", nil)
	other := newKey(t)
	otherCert, err := softhsmtest.SelfSigned(other, "other")
	if err != nil {
		t.Fatal(err)
	}
	wrongPIN := filepath.Join(t.TempDir(), "wrong.pin")
	if err := os.WriteFile(wrongPIN, []byte("999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "pkcs11:token=errs;object=shaken?module-path=" + env.Module + "&pin-source=file:" + tk.PINFile
	for _, tc := range []struct {
		name string
		uri  string
		cert bool // use the other key's certificate
		want error
	}{
		{"wrong PIN", "pkcs11:token=errs;object=shaken?module-path=" + env.Module + "&pin-source=file:" + wrongPIN, false, hsm.ErrLogin},
		{"missing object", "pkcs11:token=errs;object=nokey?module-path=" + env.Module + "&pin-source=file:" + tk.PINFile, false, hsm.ErrObjectNotFound},
		{"missing id", "pkcs11:token=errs;id=%02?module-path=" + env.Module + "&pin-source=file:" + tk.PINFile, false, hsm.ErrObjectNotFound},
		{"missing token", "pkcs11:token=absent;object=shaken?module-path=" + env.Module + "&pin-source=file:" + tk.PINFile, false, hsm.ErrTokenNotFound},
		{"key mismatch", base, true, hsm.ErrKeyMismatch},
		{"missing module", "pkcs11:token=errs?module-path=/nonexistent/lib.so&pin-source=file:" + tk.PINFile, false, hsm.ErrModule},
		{"missing PIN file", "pkcs11:token=errs?module-path=" + env.Module + "&pin-source=file:/nonexistent/pin", false, os.ErrNotExist},
		{"pin-value", base + "&pin-value=1234", false, hsm.ErrPINValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := tk.Cert
			if tc.cert {
				cert = otherCert
			}
			c, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{PKCS11: tc.uri}}}, cert)
			if err == nil {
				c.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), softhsmtest.PIN) || strings.Contains(err.Error(), "999999") {
				t.Fatalf("error leaks the PIN: %v", err)
			}
			t.Log(err)
		})
	}
	// The token still works after the failed attempts (PIN not locked).
	c, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{PKCS11: base}}}, tk.Cert)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestChainRefusesForeignSoftwareKey(t *testing.T) {
	k := newKey(t)
	cert, err := softhsmtest.SelfSigned(k, "sp")
	if err != nil {
		t.Fatal(err)
	}
	soft, _ := hsm.NewSoftware("soft", newKey(t))
	if _, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{Signer: soft}}}, cert); !errors.Is(err, hsm.ErrKeyMismatch) {
		t.Fatalf("err %v", err)
	}
}
