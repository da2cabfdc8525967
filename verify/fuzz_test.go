package verify

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
)

// FuzzVerify feeds arbitrary Identity values to a Verifier with a static
// chain (no network). Nothing may panic, and only the one genuinely signed
// PASSporT may pass.
func FuzzVerify(f *testing.F) {
	h, err := labpki.NewHierarchy("", labpki.Options{})
	if err != nil {
		f.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.Root.Cert)
	const u = "https://sti.example.invalid/sp.pem"
	now := time.Unix(1700000000, 0)
	v, err := New(Config{
		Trust: map[string]*x509.CertPool{"lab": pool}, DisableReplay: true,
		Static: map[string][]*x509.Certificate{u: {h.SP, h.Intermediate.Cert}},
		Now:    func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	good := sign(f, h.SPKey, u, claims("12025550100", now))
	gid, _ := passport.ParseIdentity(good)
	want := sha256.Sum256(gid.SigningInput)
	f.Add(good)
	f.Add(strings.Replace(good, "ppt=shaken", `ppt="shaken"`, 1))
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, s string) {
		r := v.Verify(context.Background(), Input{Identity: []string{s}, Time: now})
		if r.Verstat != Passed {
			if r.Code == 0 && r.Verstat != NoTN {
				t.Fatalf("failure without code: %+v", r)
			}
			return
		}
		id, err := passport.ParseIdentity(s)
		if err != nil || sha256.Sum256(id.SigningInput) != want {
			t.Fatalf("passed a PASSporT that was never signed: %q", s)
		}
	})
}

func FuzzTTL(f *testing.F) {
	f.Add("max-age=60")
	f.Add("public, max-age=\"5\", no-transform")
	f.Add("no-store")
	fe := newFetcher(&Config{DefaultCacheTTL: time.Hour, MaxCacheTTL: 24 * time.Hour})
	f.Fuzz(func(t *testing.T, cc string) {
		if d := fe.ttl([]string{cc}); d < 0 || d > 24*time.Hour {
			t.Fatalf("ttl(%q) = %v", cc, d)
		}
	})
}

func FuzzParseChain(f *testing.F) {
	h, _ := labpki.NewHierarchy("", labpki.Options{})
	f.Add(labpki.EncodeCerts(h.SP, h.Intermediate.Cert))
	f.Add(h.SP.Raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseChain(b)
		if err == nil && len(c) == 0 {
			t.Fatal("empty chain without error")
		}
	})
}
