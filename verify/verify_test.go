package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/tnauth"
)

// lab is a trust hierarchy plus an x5u server on 127.0.0.1.
type lab struct {
	t     testing.TB
	h     *labpki.Hierarchy
	srv   *httptest.Server
	mux   *http.ServeMux
	hits  atomic.Int64
	trust map[string]*x509.CertPool
}

func newLab(t testing.TB) *lab {
	t.Helper()
	h, err := labpki.NewHierarchy("US", labpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, h: h, mux: http.NewServeMux()}
	l.srv = httptest.NewServer(l.mux)
	t.Cleanup(l.srv.Close)
	l.serve("/sp.pem", labpki.EncodeCerts(h.SP, h.Intermediate.Cert), "max-age=300")
	pool := x509.NewCertPool()
	pool.AddCert(h.Root.Cert)
	l.trust = map[string]*x509.CertPool{"US": pool}
	return l
}

func (l *lab) serve(path string, body []byte, cacheControl string) string {
	l.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		l.hits.Add(1)
		if cacheControl != "" {
			w.Header().Set("Cache-Control", cacheControl)
		}
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Write(body)
	})
	return l.srv.URL + path
}

func (l *lab) url(path string) string { return l.srv.URL + path }

func (l *lab) verifier(mod func(*Config)) *Verifier {
	l.t.Helper()
	cfg := Config{Trust: l.trust, AllowHTTP: true, AllowPrivate: true, FetchTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { v.Close() })
	return v
}

func claims(orig string, iat time.Time) *passport.Claims {
	c := &passport.Claims{Attest: 'A', Orig: []byte(orig), Dest: [][]byte{[]byte("12025550199")}, IAT: iat.Unix()}
	rand.Read(c.OrigID[:])
	return c
}

func sign(t testing.TB, key *ecdsa.PrivateKey, x5u string, c *passport.Claims) string {
	t.Helper()
	b, err := passport.NewBuilder(x5u)
	if err != nil {
		t.Fatal(err)
	}
	s, err := passport.Sign(context.Background(), signertest.CryptoSigner{Key: key}, b, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawIdentity assembles an Identity value from a header JSON, payload JSON
// and signing key, for headers the Builder refuses to make.
func rawIdentity(key *ecdsa.PrivateKey, hdr, pay, params string) string {
	enc := base64.RawURLEncoding
	si := enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(pay))
	var sig [64]byte
	d := sha256.Sum256([]byte(si))
	signertest.CryptoSigner{Key: key}.SignDigest(context.Background(), &d, &sig)
	return si + "." + enc.EncodeToString(sig[:]) + params
}

func TestVerifyTable(t *testing.T) {
	l := newLab(t)
	now := time.Now()
	x5u := l.url("/sp.pem")
	key := l.h.SPKey

	// Variants of the PKI.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	expiredCert, expiredKey, err := l.h.Intermediate.IssueSP("1234", tnauth.List{}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expiredURL := l.serve("/expired.pem", labpki.EncodeCerts(expiredCert, l.h.Intermediate.Cert), "")
	foreign, err := labpki.NewHierarchy("XX", labpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	foreignURL := l.serve("/foreign.pem", labpki.EncodeCerts(foreign.SP, foreign.Intermediate.Cert), "")
	rangeCert, rangeKey, err := l.h.Intermediate.IssueSP("", tnauth.List{Ranges: []tnauth.Range{{Start: "12025550100", Count: 100}}}, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rangeURL := l.serve("/range.pem", labpki.EncodeCerts(rangeCert, l.h.Intermediate.Cert), "")
	noTNCert, noTNKey := issueWithoutTNAuthList(t, l.h.Intermediate)
	noTNURL := l.serve("/notn.pem", labpki.EncodeCerts(noTNCert, l.h.Intermediate.Cert), "")
	bigURL := l.serve("/big.pem", []byte(strings.Repeat("A", 20<<10)), "")
	garbageURL := l.serve("/garbage.pem", []byte("not a certificate"), "")
	closed := closedPort(t)

	valid := sign(t, key, x5u, claims("12025550100", now))
	tampered := func() string {
		parts := strings.SplitN(valid, ".", 3)
		p := passport.AppendPayloadJSON(nil, claims("12025550101", now))
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
	}()
	hdr := func(alg, ppt, u string) string {
		return fmt.Sprintf(`{"alg":%q,"ppt":%q,"typ":"passport","x5u":%q}`, alg, ppt, u)
	}
	pay := string(passport.AppendPayloadJSON(nil, claims("12025550100", now)))

	cases := []struct {
		name    string
		ids     []string
		in      Input
		verstat string
		code    int
		err     error
		store   string
	}{
		{name: "valid", ids: []string{valid}, verstat: Passed, store: "US"},
		{name: "valid with TNs", ids: []string{sign(t, key, x5u, claims("12025550100", now))},
			in: Input{OrigTN: "+12025550100", DestTNs: []string{"12025550199"}}, verstat: Passed, store: "US"},
		{name: "tampered payload", ids: []string{tampered}, verstat: Failed, code: 438, err: passport.ErrBadSignature},
		{name: "wrong key", ids: []string{sign(t, otherKey, x5u, claims("12025550100", now))}, verstat: Failed, code: 438, err: passport.ErrBadSignature},
		{name: "expired cert", ids: []string{sign(t, expiredKey, expiredURL, claims("12025550100", now))}, verstat: Failed, code: 437, err: ErrUntrusted},
		{name: "untrusted root", ids: []string{sign(t, foreign.SPKey, foreignURL, claims("12025550100", now))}, verstat: Failed, code: 437, err: ErrUntrusted},
		{name: "orig in TN range", ids: []string{sign(t, rangeKey, rangeURL, claims("12025550142", now))}, verstat: Passed, store: "US"},
		{name: "orig outside TN range", ids: []string{sign(t, rangeKey, rangeURL, claims("12025550200", now))}, verstat: Failed, code: 438, err: ErrTNNotAuthorized},
		{name: "no TNAuthList", ids: []string{sign(t, noTNKey, noTNURL, claims("12025550100", now))}, verstat: Failed, code: 437, err: ErrNoTNAuthList},
		{name: "stale iat", ids: []string{sign(t, key, x5u, claims("12025550100", now.Add(-61*time.Second)))}, verstat: Failed, code: 403, err: ErrStale},
		{name: "future iat", ids: []string{sign(t, key, x5u, claims("12025550100", now.Add(61*time.Second)))}, verstat: Failed, code: 403, err: ErrStale},
		{name: "iat at edge", ids: []string{sign(t, key, x5u, claims("12025550100", now.Add(-59*time.Second)))}, verstat: Passed, store: "US"},
		{name: "wrong alg", ids: []string{rawIdentity(key, hdr("ES384", "shaken", x5u), pay, ";info=<"+x5u+">;alg=ES384;ppt=shaken")}, verstat: Failed, code: 437, err: passport.ErrUnsupportedAlg},
		{name: "wrong ppt", ids: []string{rawIdentity(key, hdr("ES256", "div", x5u), pay, ";info=<"+x5u+">;alg=ES256;ppt=div")}, verstat: NoTN, code: 438, err: ErrNoShaken},
		{name: "x5u mismatch", ids: []string{strings.Replace(valid, ";info=<"+x5u, ";info=<"+x5u+"x", 1)}, verstat: Failed, code: 436, err: ErrInfoMismatch},
		{name: "x5u unreachable", ids: []string{sign(t, key, "http://"+closed+"/sp.pem", claims("12025550100", now))}, verstat: Failed, code: 436, err: ErrFetch},
		{name: "x5u 404", ids: []string{sign(t, key, l.url("/nothing.pem"), claims("12025550100", now))}, verstat: Failed, code: 436, err: ErrFetch},
		{name: "x5u too large", ids: []string{sign(t, key, bigURL, claims("12025550100", now))}, verstat: Failed, code: 436, err: ErrTooLarge},
		{name: "x5u not a certificate", ids: []string{sign(t, key, garbageURL, claims("12025550100", now))}, verstat: Failed, code: 437, err: ErrBadCert},
		{name: "x5u ftp", ids: []string{sign(t, key, "ftp://127.0.0.1/sp.pem", claims("12025550100", now))}, verstat: Failed, code: 436, err: ErrScheme},
		{name: "malformed", ids: []string{"garbage"}, verstat: Failed, code: 438, err: passport.ErrMalformed},
		{name: "compact form", ids: []string{"a..b;info=<" + x5u + ">"}, verstat: Failed, code: 438, err: passport.ErrCompactForm},
		{name: "no identity", verstat: NoTN, code: 428, err: ErrNoIdentity},
		{name: "orig mismatch", ids: []string{sign(t, key, x5u, claims("12025550100", now))}, in: Input{OrigTN: "12025550111"}, verstat: Failed, code: 438, err: ErrOrigMismatch},
		{name: "dest mismatch", ids: []string{sign(t, key, x5u, claims("12025550100", now))}, in: Input{DestTNs: []string{"12025550111"}}, verstat: Failed, code: 438, err: ErrDestMismatch},
		{name: "bad then good", ids: []string{tampered, sign(t, key, x5u, claims("12025550100", now))}, verstat: Passed, store: "US"},
		{name: "non-SHAKEN then bad", ids: []string{rawIdentity(key, hdr("ES256", "div", x5u), pay, ";info=<"+x5u+">"), tampered}, verstat: Failed, code: 438, err: passport.ErrBadSignature},
	}
	v := l.verifier(nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			in.Identity = c.ids
			in.Time = now
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r := v.Verify(ctx, in)
			if r.Verstat != c.verstat || r.Code != c.code || (c.err != nil && !errors.Is(r.Err, c.err)) || r.TrustStore != c.store {
				t.Fatalf("got %+v\nwant verstat %s code %d err %v store %q", r, c.verstat, c.code, c.err, c.store)
			}
			if c.verstat == Passed {
				if r.Attest != "A" || len(r.OrigID) != 36 || r.Err != nil || r.ReasonHeader() != "" {
					t.Errorf("pass result %+v", r)
				}
			} else if r.Reason == "" || !strings.HasPrefix(r.ReasonHeader(), fmt.Sprintf("STIR;cause=%d;text=", c.code)) {
				t.Errorf("reason %q / %q", r.Reason, r.ReasonHeader())
			}
		})
	}
}

func issueWithoutTNAuthList(t *testing.T, ca *labpki.CA) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestSPCAndStore(t *testing.T) {
	l := newLab(t)
	fr, err := labpki.NewHierarchy("FR", labpki.Options{SPC: "F42"})
	if err != nil {
		t.Fatal(err)
	}
	frPool := x509.NewCertPool()
	frPool.AddCert(fr.Root.Cert)
	l.trust["FR"] = frPool
	u := l.serve("/fr.pem", labpki.EncodeCerts(fr.SP, fr.Intermediate.Cert), "")
	v := l.verifier(nil)
	r := v.Verify(context.Background(), Input{Identity: []string{sign(t, fr.SPKey, u, claims("33123456789", time.Now()))}})
	if r.Verstat != Passed || r.TrustStore != "FR" || r.SPC != "F42" || r.X5U != u {
		t.Fatalf("%+v", r)
	}
}
