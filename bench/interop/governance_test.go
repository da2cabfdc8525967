package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/shakenline/shakenline/tnauth"
)

func account(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestIssueAgainstToken: the G-CA issues what the G-PA's token authorises,
// the certificate chains to the G-CA root and carries that TNAuthList.
func TestIssueAgainstToken(t *testing.T) {
	gpa, err := NewPolicyAdministrator("G-PA", Global, "G")
	if err != nil {
		t.Fatal(err)
	}
	gca, err := NewAuthority("G-CA", gpa, "http://198.18.0.1:8080/crl/global")
	if err != nil {
		t.Fatal(err)
	}
	acct := account(t)
	spc := gpa.AssignSPC()
	if spc != "G001" || gpa.AssignSPC() != "G002" {
		t.Fatalf("SPC sequence: %q", spc)
	}
	now := time.Now()
	tok, err := gpa.Token(tnauth.List{SPCs: []string{spc}}, &acct.PublicKey, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := gca.Issue(tok, &acct.PublicKey, now, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	leaf := cred.Chain[0]
	l, ok, err := tnauth.FromCertificate(leaf)
	if err != nil || !ok || len(l.SPCs) != 1 || l.SPCs[0] != spc {
		t.Fatalf("TNAuthList %+v ok %v err %v", l, ok, err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(gca.Root.Cert)
	inter.AddCert(cred.Chain[1])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != "http://198.18.0.1:8080/crl/global.crl" {
		t.Fatalf("CDP %v", leaf.CRLDistributionPoints)
	}
	gca.Revoke(leaf)
	_, der, err := gca.CRLs()
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("CRL does not list the revoked certificate")
	}
}

// TestTokenRefused: a CA refuses tokens of another PA, tokens bound to
// another account, expired and malformed tokens.
func TestTokenRefused(t *testing.T) {
	gpa, _ := NewPolicyAdministrator("G-PA", Global, "G")
	uspa, _ := NewPolicyAdministrator("US STI-PA", "US", "US")
	gca, err := NewAuthority("G-CA", gpa, "")
	if err != nil {
		t.Fatal(err)
	}
	acct, other := account(t), account(t)
	now := time.Now()
	l := tnauth.List{SPCs: []string{"US001"}}
	foreign, _ := uspa.Token(l, &acct.PublicKey, now, time.Hour)
	own, _ := gpa.Token(l, &acct.PublicKey, now, time.Hour)
	old, _ := gpa.Token(l, &acct.PublicKey, now.Add(-2*time.Hour), time.Hour)
	for _, tc := range []struct {
		name string
		tok  string
		acct *ecdsa.PublicKey
		want error
	}{
		{"foreign PA", foreign, &acct.PublicKey, ErrForeignToken},
		{"other account", own, &other.PublicKey, ErrFingerprint},
		{"expired", old, &acct.PublicKey, ErrTokenExpired},
		{"malformed", "a.b", &acct.PublicKey, ErrToken},
		{"tampered payload", own[:len(own)/2] + "x" + own[len(own)/2+1:], &acct.PublicKey, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gca.Issue(tc.tok, tc.acct, now, now, now.Add(time.Hour))
			if err == nil {
				t.Fatal("issued")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	fp, err := Fingerprint(&account(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(fp) != len("SHA256 ")+32*3-1 || fp[:7] != "SHA256 " || fp[9] != ':' {
		t.Fatalf("fingerprint %q", fp)
	}
}
