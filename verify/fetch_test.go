package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/labpki"
)

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
