package labpki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/tnauth"
)

func needOpenSSL(t *testing.T) string {
	t.Helper()
	p := prereq.Tool(t, "openssl")
	return p
}

func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, Options{Countries: []string{"US", "FR", "GLOBAL"}, CRLURL: "http://crl.example.test/i.crl"}); err != nil {
		t.Fatal(err)
	}
	roots := map[string]bool{}
	for _, sub := range []string{"", "US", "FR", "GLOBAL"} {
		d := filepath.Join(dir, sub)
		root := readCerts(t, filepath.Join(d, "root.pem"))
		inter := readCerts(t, filepath.Join(d, "intermediate.pem"))
		sp := readCerts(t, filepath.Join(d, "sp.pem"))
		if len(root) != 1 || len(inter) != 1 || len(sp) != 2 {
			t.Fatalf("%s: %d/%d/%d certificates", d, len(root), len(inter), len(sp))
		}
		if !bytes.Equal(sp[1].Raw, inter[0].Raw) {
			t.Errorf("%s: sp.pem second certificate is not the intermediate", d)
		}
		if roots[string(root[0].Raw)] {
			t.Errorf("%s: root shared with another hierarchy", d)
		}
		roots[string(root[0].Raw)] = true
		leaf := sp[0]
		pool := x509.NewCertPool()
		pool.AddCert(root[0])
		ip := x509.NewCertPool()
		ip.AddCert(inter[0])
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: verify: %v", d, err)
		}
		if leaf.Subject.CommonName != "SHAKEN 1234" || leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("%s: leaf %v IsCA=%v KU=%v", d, leaf.Subject, leaf.IsCA, leaf.KeyUsage)
		}
		if len(leaf.Policies) != 1 || !leaf.Policies[0].Equal(ShakenPolicy) {
			t.Errorf("%s: policies %v", d, leaf.Policies)
		}
		if len(leaf.SubjectKeyId) == 0 || !bytes.Equal(leaf.AuthorityKeyId, inter[0].SubjectKeyId) {
			t.Errorf("%s: key identifiers", d)
		}
		if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != "http://crl.example.test/i.crl" {
			t.Errorf("%s: CRL DP %v", d, leaf.CRLDistributionPoints)
		}
		l, ok, err := tnauth.FromCertificate(leaf)
		if err != nil || !ok || len(l.SPCs) != 1 || l.SPCs[0] != "1234" {
			t.Errorf("%s: TNAuthList %+v %v %v", d, l, ok, err)
		}
		if sub != "" && sub != "GLOBAL" && (len(root[0].Subject.Country) != 1 || root[0].Subject.Country[0] != sub) {
			t.Errorf("%s: root country %v", d, root[0].Subject.Country)
		}
		st, err := os.Stat(filepath.Join(d, "sp.key"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: sp.key mode %v %v", d, st.Mode(), err)
		}
		kb, _ := os.ReadFile(filepath.Join(d, "sp.key"))
		blk, _ := pem.Decode(kb)
		if blk == nil || blk.Type != "PRIVATE KEY" {
			t.Fatalf("%s: sp.key not PKCS#8 PEM", d)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !k.(*ecdsa.PrivateKey).PublicKey.Equal(leaf.PublicKey) {
			t.Errorf("%s: key does not match certificate", d)
		}
	}
}

func TestGenerateRejectsBadName(t *testing.T) {
	for _, n := range []string{"", "../x", "a/b", strings.Repeat("x", 40)} {
		if err := Generate(t.TempDir(), Options{Countries: []string{n}}); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
}

func TestKeyModeTightened(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sp.key")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Generate(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
}

func TestOpenSSLVerify(t *testing.T) {
	ossl := needOpenSSL(t)
	dir := t.TempDir()
	if err := Generate(dir, Options{TNRanges: []tnauth.Range{{Start: "12025550100", Count: 100}}}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ossl, "verify", "-CAfile", filepath.Join(dir, "root.pem"),
		"-untrusted", filepath.Join(dir, "intermediate.pem"), filepath.Join(dir, "sp.pem"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	// A different hierarchy's root must not verify it.
	other := t.TempDir()
	if err := Generate(other, Options{}); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(ossl, "verify", "-CAfile", filepath.Join(other, "root.pem"),
		"-untrusted", filepath.Join(dir, "intermediate.pem"), filepath.Join(dir, "sp.pem"))
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("openssl verified against a foreign root:\n%s", out)
	}
	// openssl reads the key.
	out, err = exec.Command(ossl, "pkey", "-in", filepath.Join(dir, "sp.key"), "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "P-256") {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
}

func TestCRL(t *testing.T) {
	root, err := NewCA("r", nil)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := NewCA("i", root, WithCRLURL("http://127.0.0.1/crl"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sp, _, err := inter.IssueSP("777A", tnauth.List{}, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	der, err := inter.CRL([]*x509.Certificate{sp})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(inter.Cert); err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(sp.SerialNumber) != 0 {
		t.Errorf("revoked %v", crl.RevokedCertificateEntries)
	}
	if len(inter.Chain()) != 1 || inter.Root() != root {
		t.Error("chain helpers")
	}
	if _, _, err := inter.IssueSP("", tnauth.List{}, now, now.Add(time.Hour)); err == nil {
		t.Error("no SPC and no TN list accepted")
	}
}
