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
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/tnauth"

	"github.com/shakenline/shakenline/hsm/signertest"
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

func TestReplay(t *testing.T) {
	l := newLab(t)
	v := l.verifier(nil)
	now := time.Now()
	id := sign(t, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))
	in := Input{Identity: []string{id}, Time: now}
	if r := v.Verify(context.Background(), in); r.Verstat != Passed {
		t.Fatalf("first: %+v", r)
	}
	in.Time = now.Add(30 * time.Second)
	if r := v.Verify(context.Background(), in); r.Verstat != Failed || !errors.Is(r.Err, ErrReplay) || r.Code != 438 {
		t.Fatalf("replay: %+v", r)
	}
	// A forged copy does not poison the filter: the genuine one still passes once.
	id2 := sign(t, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))
	parts := strings.Split(id2, ".")
	forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)) + id2[strings.IndexByte(id2, ';'):]
	if r := v.Verify(context.Background(), Input{Identity: []string{forged}, Time: now}); r.Verstat != Failed {
		t.Fatalf("forged: %+v", r)
	}
	if r := v.Verify(context.Background(), Input{Identity: []string{id2}, Time: now}); r.Verstat != Passed {
		t.Fatalf("genuine after forged: %+v", r)
	}
	v2 := l.verifier(func(c *Config) { c.DisableReplay = true })
	for i := 0; i < 2; i++ {
		if r := v2.Verify(context.Background(), Input{Identity: []string{id}, Time: now}); r.Verstat != Passed {
			t.Fatalf("DisableReplay %d: %+v", i, r)
		}
	}
}

func TestReplayFilterBounded(t *testing.T) {
	f := newReplayFilter(time.Minute, 100)
	now := time.Now()
	for i := 0; i < 1000; i++ {
		var k [32]byte
		k[0], k[1] = byte(i), byte(i>>8)
		if f.seen(k, now) {
			t.Fatalf("%d seen", i)
		}
	}
	if len(f.cur) > 100 || len(f.prev) > 100 {
		t.Fatalf("generations %d/%d", len(f.cur), len(f.prev))
	}
	k := [32]byte{0xaa}
	if f.seen(k, now) || !f.seen(k, now.Add(time.Second)) {
		t.Fatal("second sighting not flagged")
	}
	// After two windows a key is forgotten.
	var z [32]byte
	z[5] = 9
	f.seen(z, now)
	f.seen([32]byte{1, 2, 3}, now.Add(2*time.Minute))
	f.seen([32]byte{4, 5, 6}, now.Add(4*time.Minute))
	if f.seen(z, now.Add(4*time.Minute)) {
		t.Error("key kept beyond two windows")
	}
}

func TestPrivateTargetRefused(t *testing.T) {
	l := newLab(t)
	v := l.verifier(func(c *Config) { c.AllowPrivate = false })
	_, port, _ := net.SplitHostPort(l.srv.Listener.Addr().String())
	for _, host := range []string{"127.0.0.1", "localhost", "[::1]"} {
		u := "http://" + host + ":" + port + "/sp.pem"
		r := v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, u, claims("12025550100", time.Now()))}})
		if r.Verstat != Failed || r.Code != 436 || !errors.Is(r.Err, ErrForbiddenTarget) {
			t.Errorf("%s: %+v", u, r)
		}
	}
	if l.hits.Load() != 0 {
		t.Errorf("server was reached %d times", l.hits.Load())
	}
	// https only without AllowHTTP.
	v = l.verifier(func(c *Config) { c.AllowHTTP = false })
	r := v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", time.Now()))}})
	if !errors.Is(r.Err, ErrScheme) || r.Code != 436 {
		t.Errorf("http without AllowHTTP: %+v", r)
	}
}

func TestPublicAddr(t *testing.T) {
	for a, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700::1111": true, "127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false,
		"192.168.1.1": false, "169.254.169.254": false, "0.0.0.0": false, "224.0.0.1": false, "100.64.0.1": false,
		"198.18.0.1": false, "255.255.255.255": false, "::1": false, "::": false, "fe80::1": false, "fc00::1": false,
		"ff02::1": false, "::ffff:127.0.0.1": false, "::ffff:8.8.8.8": true, "64:ff9b::a00:1": false, "2001:db8::1": false,
		"::10.0.0.1": false, "::7f00:1": false, "2002:a00:1::1": false, "2002:c0a8:101::1": false, "2001:0:a00:1::1": false,
	} {
		if got := publicAddr(netip.MustParseAddr(a)); got != want {
			t.Errorf("publicAddr(%s) = %v", a, got)
		}
	}
}

func TestRedirects(t *testing.T) {
	l := newLab(t)
	pem := labpki.EncodeCerts(l.h.SP, l.h.Intermediate.Cert)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-http":
			http.Redirect(w, r, l.url("/sp.pem"), http.StatusFound)
		case "/to-https":
			http.Redirect(w, r, "/sp.pem", http.StatusMovedPermanently)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/sp.pem":
			w.Write(pem)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(tlsSrv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())
	v := l.verifier(func(c *Config) { c.TLSRootCAs = roots })
	now := time.Now()
	check := func(path string, verstat string, err error) {
		t.Helper()
		r := v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, tlsSrv.URL+path, claims("12025550100", now))}, Time: now})
		if r.Verstat != verstat || (err != nil && !errors.Is(r.Err, err)) {
			t.Errorf("%s: %+v", path, r)
		}
	}
	check("/sp.pem", Passed, nil)
	check("/to-https", Passed, nil)
	check("/to-http", Failed, ErrRedirect)
	check("/loop", Failed, ErrRedirect)
	if l.hits.Load() != 0 {
		t.Errorf("http server reached through a redirect")
	}
}

func TestFetchTimeout(t *testing.T) {
	l := newLab(t)
	l.mux.HandleFunc("/slow.pem", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	v := l.verifier(func(c *Config) { c.FetchTimeout = 200 * time.Millisecond })
	start := time.Now()
	r := v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, l.url("/slow.pem"), claims("12025550100", time.Now()))}})
	if !errors.Is(r.Err, ErrFetch) || r.Code != 436 {
		t.Errorf("%+v", r)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("fetch took %v despite a 200ms timeout", d)
	}
}

func TestSingleflightAndCache(t *testing.T) {
	l := newLab(t)
	release := make(chan struct{})
	var slowHits atomic.Int64
	pem := labpki.EncodeCerts(l.h.SP, l.h.Intermediate.Cert)
	l.mux.HandleFunc("/gated.pem", func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Write(pem)
	})
	clock := time.Now()
	var mu sync.Mutex
	nowFn := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	v := l.verifier(func(c *Config) { c.Now = nowFn; c.DisableReplay = true })
	u := l.url("/gated.pem")
	id := sign(t, l.h.SPKey, u, claims("12025550100", clock))
	const n = 16
	var wg sync.WaitGroup
	results := make([]Result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = v.Verify(context.Background(), Input{Identity: []string{id}})
		}()
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, r := range results {
		if r.Verstat != Passed {
			t.Fatalf("%d: %+v", i, r)
		}
	}
	if got := slowHits.Load(); got != 1 {
		t.Errorf("%d concurrent verifies made %d fetches, want 1", n, got)
	}
	// Cached for max-age=60.
	mu.Lock()
	clock = clock.Add(59 * time.Second)
	mu.Unlock()
	id2 := sign(t, l.h.SPKey, u, claims("12025550100", nowFn()))
	if r := v.Verify(context.Background(), Input{Identity: []string{id2}}); r.Verstat != Passed || slowHits.Load() != 1 {
		t.Fatalf("within max-age: %+v, %d fetches", r, slowHits.Load())
	}
	mu.Lock()
	clock = clock.Add(2 * time.Second)
	mu.Unlock()
	id3 := sign(t, l.h.SPKey, u, claims("12025550100", nowFn()))
	if r := v.Verify(context.Background(), Input{Identity: []string{id3}}); r.Verstat != Passed || slowHits.Load() != 2 {
		t.Fatalf("after max-age: %+v, %d fetches", r, slowHits.Load())
	}
}

func TestCacheControlAndBound(t *testing.T) {
	l := newLab(t)
	pem := labpki.EncodeCerts(l.h.SP, l.h.Intermediate.Cert)
	nostore := l.serve("/nostore.pem", pem, "no-store")
	v := l.verifier(func(c *Config) { c.CacheSize = 2; c.DisableReplay = true })
	id := sign(t, l.h.SPKey, nostore, claims("12025550100", time.Now()))
	for i := 0; i < 3; i++ {
		if r := v.Verify(context.Background(), Input{Identity: []string{id}}); r.Verstat != Passed {
			t.Fatal(r)
		}
	}
	if l.hits.Load() != 3 {
		t.Errorf("no-store: %d fetches, want 3", l.hits.Load())
	}
	for i := 0; i < 5; i++ {
		u := l.serve(fmt.Sprintf("/c%d.pem", i), pem, "")
		id := sign(t, l.h.SPKey, u, claims("12025550100", time.Now()))
		if r := v.Verify(context.Background(), Input{Identity: []string{id}}); r.Verstat != Passed {
			t.Fatal(r)
		}
	}
	if n := v.fetcher.cacheLen(); n != 2 {
		t.Errorf("cache holds %d entries, bound 2", n)
	}
	f := v.fetcher
	for cc, want := range map[string]time.Duration{
		"": time.Hour, "max-age=10": 10 * time.Second, "public, max-age=5, must-revalidate": 5 * time.Second,
		"no-cache": 0, "max-age=x": 0, "max-age=99999999": 24 * time.Hour,
	} {
		var h []string
		if cc != "" {
			h = []string{cc}
		}
		if got := f.ttl(h); got != want {
			t.Errorf("ttl(%q) = %v, want %v", cc, got, want)
		}
	}
}

func TestStatic(t *testing.T) {
	h, err := labpki.NewHierarchy("", labpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.Root.Cert)
	const u = "https://sti.example.invalid/sp.pem"
	v, err := New(Config{Trust: map[string]*x509.CertPool{"lab": pool}, Static: map[string][]*x509.Certificate{u: {h.SP, h.Intermediate.Cert}}})
	if err != nil {
		t.Fatal(err)
	}
	r := v.Verify(context.Background(), Input{Identity: []string{sign(t, h.SPKey, u, claims("12025550100", time.Now()))}})
	if r.Verstat != Passed || r.TrustStore != "lab" || r.SPC != "1234" {
		t.Fatalf("%+v", r)
	}
	// Trust was cached at New; an iat before the leaf's NotBefore must still fail.
	early := time.Now().Add(-2 * time.Hour)
	r = v.Verify(context.Background(), Input{Identity: []string{sign(t, h.SPKey, u, claims("12025550100", early))}, Time: early})
	if r.Verstat != Failed || r.Code != 437 || !errors.Is(r.Err, ErrUntrusted) {
		t.Fatalf("iat before NotBefore: %+v", r)
	}
	if _, err := New(Config{}); !errors.Is(err, ErrNoTrust) {
		t.Errorf("New without trust: %v", err)
	}
}

func TestParseChainDER(t *testing.T) {
	h, _ := labpki.NewHierarchy("", labpki.Options{})
	c, err := ParseChain(h.SP.Raw)
	if err != nil || len(c) != 1 {
		t.Fatalf("%v %v", c, err)
	}
	if _, err := ParseChain([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")); !errors.Is(err, ErrBadCert) {
		t.Errorf("bad PEM: %v", err)
	}
}

// TestFailureRemembered: a failed x5u fetch answers the calls that follow
// for FailureTTL without another fetch, then the URL is fetched again; the
// set of remembered failures is bounded by CacheSize.
func TestFailureRemembered(t *testing.T) {
	l := newLab(t)
	pem := labpki.EncodeCerts(l.h.SP, l.h.Intermediate.Cert)
	var fetches atomic.Int64
	var up atomic.Bool
	l.mux.HandleFunc("/flaky.pem", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(pem)
	})
	clock := time.Now()
	var mu sync.Mutex
	nowFn := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	v := l.verifier(func(c *Config) {
		c.Now = nowFn
		c.DisableReplay = true
		c.FailureTTL = 10 * time.Second
		c.CacheSize = 2
	})
	u := l.url("/flaky.pem")
	verify := func() Result {
		return v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, u, claims("12025550100", nowFn()))}})
	}
	if r := verify(); r.Code != 436 || fetches.Load() != 1 {
		t.Fatalf("first call with the repository down: %+v, %d fetches", r, fetches.Load())
	}
	up.Store(true)
	advance(9 * time.Second)
	if r := verify(); r.Code != 436 || !errors.Is(r.Err, ErrFetch) || fetches.Load() != 1 {
		t.Fatalf("within FailureTTL: %+v, %d fetches, want 436 from memory and 1 fetch", r, fetches.Load())
	}
	if s := v.Stats(); s.FailureHits != 1 || s.FetchFailures != 1 {
		t.Errorf("stats %+v, want FailureHits 1 and FetchFailures 1", s)
	}
	advance(2 * time.Second)
	if r := verify(); r.Verstat != Passed || fetches.Load() != 2 {
		t.Fatalf("after FailureTTL: %+v, %d fetches", r, fetches.Load())
	}
	for i := range 4 {
		v.fetcher.putFailure(fmt.Sprintf("https://198.18.0.1/%d.pem", i), ErrFetch, nowFn())
	}
	v.fetcher.mu.Lock()
	n := len(v.fetcher.fails)
	v.fetcher.mu.Unlock()
	if n > 2 {
		t.Errorf("%d failures remembered, bound 2", n)
	}
}

// TestFailureClearedBySuccess: a fetch that succeeds clears a failure
// remembered for its URL meanwhile (a caller that missed the failure
// fetched again), also when the answer is not cacheable (no-store): the
// calls that follow fetch instead of failing from memory.
func TestFailureClearedBySuccess(t *testing.T) {
	l := newLab(t)
	pem := labpki.EncodeCerts(l.h.SP, l.h.Intermediate.Cert)
	var fetches atomic.Int64
	release := make(chan struct{}, 1)
	entered := make(chan struct{}, 1)
	l.mux.HandleFunc("/nostore.pem", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		entered <- struct{}{}
		<-release
		w.Header().Set("Cache-Control", "no-store")
		w.Write(pem)
	})
	v := l.verifier(func(c *Config) { c.DisableReplay = true; c.FailureTTL = time.Minute })
	u := l.url("/nostore.pem")
	verify := func() Result {
		return v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, u, claims("12025550100", time.Now()))}})
	}
	done := make(chan Result, 1)
	go func() { done <- verify() }()
	<-entered
	// An earlier fetch of u failed and was remembered while this one ran.
	v.fetcher.putFailure(u, ErrFetch, time.Now())
	release <- struct{}{}
	if r := <-done; r.Verstat != Passed {
		t.Fatalf("first call: %+v", r)
	}
	release <- struct{}{}
	if r := verify(); r.Verstat != Passed || fetches.Load() != 2 {
		t.Fatalf("after a successful fetch: %+v, %d fetches; the stale failure answered", r, fetches.Load())
	}
	<-entered
}
