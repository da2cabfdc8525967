package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/tnauth"
)

// crlLab is a root whose CRL covers the intermediate and an intermediate
// whose CRL covers its SP certificates, both CRLs served on 127.0.0.1.
type crlLab struct {
	*lab
	root, inter         *labpki.CA
	leaf                *x509.Certificate
	leafKey             *ecdsa.PrivateKey
	x5u                 string
	rootCRL, interCRL   atomic.Pointer[[]byte]
	rootHits, interHits atomic.Int64
}

func newCRLLab(t testing.TB) *crlLab {
	t.Helper()
	l := &crlLab{lab: newLab(t)}
	l.mux.HandleFunc("/root.crl", func(w http.ResponseWriter, r *http.Request) {
		l.rootHits.Add(1)
		w.Write(*l.rootCRL.Load())
	})
	l.mux.HandleFunc("/inter.crl", func(w http.ResponseWriter, r *http.Request) {
		l.interHits.Add(1)
		w.Write(*l.interCRL.Load())
	})
	var err error
	if l.root, err = labpki.NewCA("CRL Lab Root", nil, labpki.WithCRLURL(l.url("/root.crl"))); err != nil {
		t.Fatal(err)
	}
	if l.inter, err = labpki.NewCA("CRL Lab Intermediate", l.root, labpki.WithCRLURL(l.url("/inter.crl"))); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if l.leaf, l.leafKey, err = l.inter.IssueSP("555A", tnauth.List{}, now.Add(-time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(l.leaf.CRLDistributionPoints) != 1 || len(l.inter.Cert.CRLDistributionPoints) != 1 {
		t.Fatalf("labpki did not set CDPs: %v %v", l.leaf.CRLDistributionPoints, l.inter.Cert.CRLDistributionPoints)
	}
	l.x5u = l.serve("/crl-sp.pem", labpki.EncodeCerts(l.leaf, l.inter.Cert), "max-age=300")
	l.revoke(l.root)
	l.revoke(l.inter)
	pool := x509.NewCertPool()
	pool.AddCert(l.root.Cert)
	l.trust = map[string]*x509.CertPool{"US": pool}
	return l
}

// revoke publishes ca's CRL listing certs.
func (l *crlLab) revoke(ca *labpki.CA, certs ...*x509.Certificate) {
	l.t.Helper()
	der, err := ca.CRL(certs)
	if err != nil {
		l.t.Fatal(err)
	}
	if ca == l.root {
		l.rootCRL.Store(&der)
	} else {
		l.interCRL.Store(&der)
	}
}

func (l *crlLab) check(v *Verifier, verstat string, err error) Result {
	l.t.Helper()
	r := v.Verify(context.Background(), Input{Identity: []string{sign(l.t, l.leafKey, l.x5u, claims("12025550100", time.Now()))}})
	if r.Verstat != verstat || (err != nil && !errors.Is(r.Err, err)) || (err == nil && r.Err != nil) {
		l.t.Fatalf("got %+v, want %s %v", r, verstat, err)
	}
	return r
}

func TestCRLRevokedLeaf(t *testing.T) {
	l := newCRLLab(t)
	other, otherKey, err := l.inter.IssueSP("556B", tnauth.List{}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherURL := l.serve("/other.pem", labpki.EncodeCerts(other, l.inter.Cert), "")
	l.revoke(l.inter, l.leaf)
	v := l.verifier(func(c *Config) { c.DisableReplay = true })
	r := l.check(v, Failed, ErrRevoked)
	if r.Code != CodeUnsupported || r.Reason != "Unsupported Credential" || !strings.Contains(r.Detail, "leaf") ||
		!strings.Contains(r.Detail, "/inter.crl") {
		t.Errorf("result %+v", r)
	}
	t.Logf("detail: %s", r.Detail)
	// A sibling certificate from the same CA is not revoked.
	r = v.Verify(context.Background(), Input{Identity: []string{sign(t, otherKey, otherURL, claims("12025550100", time.Now()))}})
	if r.Verstat != Passed {
		t.Fatalf("sibling: %+v", r)
	}
	// The CRLs were fetched once each, not per verification.
	l.check(v, Failed, ErrRevoked)
	if l.interHits.Load() != 1 || l.rootHits.Load() != 1 {
		t.Errorf("CRL fetches root %d inter %d, want 1 each", l.rootHits.Load(), l.interHits.Load())
	}
	if s := v.Stats(); s.CRLFetches != 2 || s.CRLFetchFailures != 0 || s.CRLFailOpen != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestCRLRevokedIntermediate(t *testing.T) {
	l := newCRLLab(t)
	l.revoke(l.root, l.inter.Cert)
	v := l.verifier(nil)
	r := l.check(v, Failed, ErrRevoked)
	if r.Code != CodeUnsupported || !strings.Contains(r.Detail, "intermediate") || !strings.Contains(r.Detail, "/root.crl") {
		t.Errorf("result %+v", r)
	}
	// DisableCRL skips the check.
	v2 := l.verifier(func(c *Config) { c.DisableCRL = true })
	l.check(v2, Passed, nil)
}

// TestCRLReload revokes after a pass: RefreshCRLs (operator reload) and the
// background refresher both make the revocation effective without restart.
func TestCRLReload(t *testing.T) {
	l := newCRLLab(t)
	v := l.verifier(nil)
	l.check(v, Passed, nil)
	l.revoke(l.inter, l.leaf)
	l.check(v, Passed, nil) // cached CRL still current
	if err := v.RefreshCRLs(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.check(v, Failed, ErrRevoked)

	l2 := newCRLLab(t)
	bg := l2.verifier(func(c *Config) { c.CRLRefresh = 50 * time.Millisecond; c.CRLRetry = 20 * time.Millisecond })
	l2.check(bg, Passed, nil)
	l2.revoke(l2.inter, l2.leaf)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := bg.Verify(context.Background(), Input{Identity: []string{sign(t, l2.leafKey, l2.x5u, claims("12025550100", time.Now()))}})
		if errors.Is(r.Err, ErrRevoked) {
			break
		}
		if r.Verstat != Passed || time.Now().After(deadline) {
			t.Fatalf("background refresh did not apply the revocation: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCRLUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(l *crlLab)
	}{
		{"server error", func(l *crlLab) {
			l.mux.HandleFunc("/gone.crl", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 503) })
		}},
		{"forged CRL", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newCRLLab(t)
			if tc.break_ != nil {
				// A CA whose CDP answers 503.
				tc.break_(l)
				inter, err := labpki.NewCA("CRL Lab Intermediate 2", l.root, labpki.WithCRLURL(l.url("/gone.crl")))
				if err != nil {
					t.Fatal(err)
				}
				l.inter = inter
				l.leaf, l.leafKey, _ = inter.IssueSP("555A", tnauth.List{}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
				l.x5u = l.serve("/gone-sp.pem", labpki.EncodeCerts(l.leaf, inter.Cert), "")
			} else {
				// The intermediate's CRL is signed by another CA: not proof
				// of anything, even though it does not list the leaf.
				impostor, err := labpki.NewCA("CRL Lab Intermediate", nil)
				if err != nil {
					t.Fatal(err)
				}
				der, _ := impostor.CRL(nil)
				l.interCRL.Store(&der)
			}
			open := l.verifier(nil)
			l.check(open, Passed, nil)
			l.check(open, Passed, nil)
			s := open.Stats()
			if s.CRLFailOpen != 2 {
				t.Errorf("fail-open count %d, want 2 (%+v)", s.CRLFailOpen, s)
			}
			if tc.break_ != nil && s.CRLFetchFailures != 1 {
				t.Errorf("CRL fetch failures %d, want 1 (retried by the refresher only)", s.CRLFetchFailures)
			}
			closed := l.verifier(func(c *Config) { c.CRLFailClosed = true })
			r := l.check(closed, Failed, ErrCRLUnavailable)
			if r.Code != CodeUnsupported {
				t.Errorf("%+v", r)
			}
		})
	}
}

func TestCRLUnreachablePort(t *testing.T) {
	l := newLab(t)
	root, _ := labpki.NewCA("r", nil)
	inter, _ := labpki.NewCA("i", root, labpki.WithCRLURL("http://"+closedPort(t)+"/i.crl"))
	leaf, key, err := inter.IssueSP("1", tnauth.List{}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	u := l.serve("/p.pem", labpki.EncodeCerts(leaf, inter.Cert), "")
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	l.trust = map[string]*x509.CertPool{"US": pool}
	before := mCRLFailOpen.Get()
	v := l.verifier(nil)
	if r := v.Verify(context.Background(), Input{Identity: []string{sign(t, key, u, claims("12025550100", time.Now()))}}); r.Verstat != Passed {
		t.Fatalf("fail-open: %+v", r)
	}
	if mCRLFailOpen.Get() != before+1 || v.Stats().CRLFetchFailures != 1 {
		t.Errorf("fail-open metric %d->%d, stats %+v", before, mCRLFailOpen.Get(), v.Stats())
	}
	vc := l.verifier(func(c *Config) { c.CRLFailClosed = true })
	r := vc.Verify(context.Background(), Input{Identity: []string{sign(t, key, u, claims("12025550100", time.Now()))}})
	if r.Verstat != Failed || r.Code != 437 || !errors.Is(r.Err, ErrCRLUnavailable) || !errors.Is(r.Err, ErrFetch) {
		t.Fatalf("fail-closed: %+v", r)
	}
}

func TestParseCRL(t *testing.T) {
	ca, _ := labpki.NewCA("c", nil)
	der, err := ca.CRL(nil)
	if err != nil {
		t.Fatal(err)
	}
	pemCRL := string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"DER", der, true},
		{"PEM", []byte(pemCRL), true},
		{"wrong PEM type", []byte(strings.ReplaceAll(pemCRL, "X509 CRL", "CERTIFICATE")), false},
		{"truncated", der[:len(der)/2], false},
		{"empty", nil, false},
		{"text", []byte("hello"), false},
	} {
		_, err := ParseCRL(tc.in)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrCRL)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
