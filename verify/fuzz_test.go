package verify

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
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
	now := time.Now().Truncate(time.Second) // the lab certificates are valid now
	v, err := New(Config{
		Trust: map[string]*x509.CertPool{"lab": pool}, DisableReplay: true,
		Static: map[string][]*x509.Certificate{u: {h.SP, h.Intermediate.Cert}},
		Now:    func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { v.Close() })
	good := sign(f, h.SPKey, u, claims("12025550100", now))
	if r := v.Verify(context.Background(), Input{Identity: []string{good}, Time: now}); r.Verstat != Passed {
		f.Fatalf("seed does not pass: %+v", r)
	}
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

func FuzzParsePreload(f *testing.F) {
	f.Add("# list\nhttps://a.test/x.pem\n\nhttp://b.test:80/y\r\n")
	f.Add("ftp://x\n")
	f.Add("https://u:p@h/\n")
	f.Fuzz(func(t *testing.T, s string) {
		urls, err := ParsePreload(strings.NewReader(s))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, u := range urls {
			if seen[u] || !(strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) || strings.ContainsAny(u, " \t\r\n") {
				t.Fatalf("accepted %q from %q", u, s)
			}
			seen[u] = true
		}
	})
}

func FuzzDecodeCacheFile(f *testing.F) {
	h, _ := labpki.NewHierarchy("", labpki.Options{})
	e, _ := newEntry([]*x509.Certificate{h.SP, h.Intermediate.Cert}, time.Unix(1800000000, 0))
	f.Add(encodeCacheFile("https://a.test/sp.pem", e))
	f.Add([]byte("-----BEGIN SHAKENLINE X5U CACHE-----\nURL: https://a\nExpires: x\n\n-----END SHAKENLINE X5U CACHE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, _, chain, err := decodeCacheFile(b)
		if err == nil && (u == "" || len(chain) == 0) {
			t.Fatalf("accepted %q with %d certificates", u, len(chain))
		}
	})
}

func FuzzParseCRL(f *testing.F) {
	ca, _ := labpki.NewCA("c", nil)
	der, _ := ca.CRL([]*x509.Certificate{ca.Cert})
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseCRL(b)
		if err == nil && l == nil {
			t.Fatal("nil CRL without error")
		}
	})
}
