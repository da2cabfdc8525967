package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/labpki"
)

func TestCachePersisted(t *testing.T) {
	l := newLab(t)
	dir := filepath.Join(t.TempDir(), "x5u")
	now := time.Now()
	short := l.serve("/short.pem", labpki.EncodeCerts(l.h.SP, l.h.Intermediate.Cert), "max-age=30")
	v1 := l.verifier(func(c *Config) { c.CacheDir = dir })
	for _, u := range []string{l.url("/sp.pem"), short} {
		if r := v1.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, u, claims("12025550100", now))}}); r.Verstat != Passed {
			t.Fatalf("%s: %+v", u, r)
		}
	}
	v1.Close()
	if s := v1.Stats(); s.Persisted != 2 || s.PersistFailures != 0 {
		t.Fatalf("stats %+v", s)
	}
	st, err := os.Stat(filepath.Join(dir, cacheFileName(l.url("/sp.pem"))))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file %v %v", st, err)
	}
	if d, _ := os.Stat(dir); d.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", d.Mode())
	}
	// Junk and a misnamed copy are skipped, not fatal.
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o600)
	b, _ := os.ReadFile(filepath.Join(dir, cacheFileName(short)))
	os.WriteFile(filepath.Join(dir, "0123.pem"), b, 0o600)

	hitsBefore := l.hits.Load()
	l.srv.Close() // x5u server gone: the second Verifier must live on the cache
	v2 := l.verifier(func(c *Config) { c.CacheDir = dir })
	if s := v2.Stats(); s.Loaded != 2 || s.LoadFailures != 2 {
		t.Fatalf("loaded %+v", s)
	}
	for _, u := range []string{l.url("/sp.pem"), short} {
		if r := v2.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, u, claims("12025550100", now))}}); r.Verstat != Passed {
			t.Fatalf("from disk %s: %+v", u, r)
		}
	}
	if s := v2.Stats(); s.CacheHits != 2 || s.CacheMisses != 0 || s.FetchFailures != 0 || l.hits.Load() != hitsBefore {
		t.Errorf("stats %+v, server hits %d->%d", s, hitsBefore, l.hits.Load())
	}

	// 60 s later the max-age=30 chain has expired: not loaded, file removed.
	later := now.Add(60 * time.Second)
	v3 := l.verifier(func(c *Config) { c.CacheDir = dir; c.Now = func() time.Time { return later } })
	if s := v3.Stats(); s.Loaded != 1 {
		t.Errorf("after expiry loaded %d, want 1", s.Loaded)
	}
	if _, err := os.Stat(filepath.Join(dir, cacheFileName(short))); !os.IsNotExist(err) {
		t.Errorf("expired file kept: %v", err)
	}

	// A disk entry gives no trust of its own: with other anchors it fails.
	other, _ := labpki.NewHierarchy("XX", labpki.Options{})
	pool := x509.NewCertPool()
	pool.AddCert(other.Root.Cert)
	l.trust = map[string]*x509.CertPool{"XX": pool}
	v4 := l.verifier(func(c *Config) { c.CacheDir = dir })
	r := v4.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))}})
	if r.Verstat != Failed || !errors.Is(r.Err, ErrUntrusted) {
		t.Errorf("untrusted cached chain: %+v", r)
	}
}

func TestCacheFileRoundTrip(t *testing.T) {
	h, _ := labpki.NewHierarchy("", labpki.Options{})
	e, err := newEntry([]*x509.Certificate{h.SP, h.Intermediate.Cert}, time.Unix(1800000000, 123))
	if err != nil {
		t.Fatal(err)
	}
	const u = "https://cr.example.test/a.pem?x=1"
	b := encodeCacheFile(u, e)
	gu, exp, chain, err := decodeCacheFile(b)
	if err != nil || gu != u || !exp.Equal(e.expires) || len(chain) != 2 || !bytes.Equal(chain[1].Raw, h.Intermediate.Cert.Raw) {
		t.Fatalf("%q %v %d %v", gu, exp, len(chain), err)
	}
	for name, bad := range map[string][]byte{
		"empty":      nil,
		"no header":  labpki.EncodeCerts(h.SP),
		"no certs":   b[:bytes.Index(b, []byte("-----BEGIN CERTIFICATE"))],
		"bad expiry": bytes.Replace(b, []byte("Expires: 20"), []byte("Expires: x"), 1),
		"bad url":    bytes.Replace(b, []byte("URL: https://cr.example.test"), []byte("URL: nohost"), 1),
	} {
		if _, _, _, err := decodeCacheFile(bad); !errors.Is(err, ErrCacheFile) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPreload(t *testing.T) {
	l := newLab(t)
	pem := labpki.EncodeCerts(l.h.SP, l.h.Intermediate.Cert)
	a := l.serve("/a.pem", pem, "")
	b := l.serve("/b.pem", pem, "")
	list := filepath.Join(t.TempDir(), "preload.txt")
	os.WriteFile(list, []byte("# STI-CR\n"+a+"\n\n  "+b+"  \n"+a+"\n"+l.url("/missing.pem")+"\n"), 0o644)
	v := l.verifier(func(c *Config) { c.PreloadFile = list })
	select {
	case <-v.PreloadDone():
	case <-time.After(10 * time.Second):
		t.Fatal("preload did not finish")
	}
	if s := v.Stats(); s.Preloaded != 2 || s.FetchFailures != 1 || l.hits.Load() != 2 {
		t.Fatalf("stats %+v, hits %d", s, l.hits.Load())
	}
	for _, u := range []string{a, b} {
		if r := v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, u, claims("12025550100", time.Now()))}}); r.Verstat != Passed {
			t.Fatal(r)
		}
	}
	if s := v.Stats(); s.CacheHits != 2 || l.hits.Load() != 2 {
		t.Errorf("after preload: %+v, hits %d", s, l.hits.Load())
	}
	// Without a preload file PreloadDone is already closed.
	select {
	case <-l.verifier(nil).PreloadDone():
	default:
		t.Error("PreloadDone open without PreloadFile")
	}
	// A missing or malformed file fails New.
	os.WriteFile(list, []byte(a+"\nftp://x/y\n"), 0o644)
	for _, f := range []string{list, filepath.Join(t.TempDir(), "none")} {
		if _, err := New(Config{Trust: l.trust, PreloadFile: f}); !errors.Is(err, ErrPreload) {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestParsePreload(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "", want: nil},
		{in: "# only a comment\n\n", want: nil},
		{in: "https://a.test/x.pem\r\nhttp://b.test:8080/y\n", want: []string{"https://a.test/x.pem", "http://b.test:8080/y"}},
		{in: "https://a.test/x\nhttps://a.test/x\n", want: []string{"https://a.test/x"}},
		{in: "HTTPS://a.test/X\nhttps://a.test/X\nhtTp://0\n", want: []string{"https://a.test/X", "http://0"}}, // scheme only
		{in: "ftp://a.test/x\n", err: true},
		{in: "/relative\n", err: true},
		{in: "https://user:pw@a.test/x\n", err: true},
		{in: "https://a.test/x y\n", err: true},
		{in: "https:///nohost\n", err: true},
		{in: strings.Repeat("a", 9000), err: true},
	} {
		got, err := ParsePreload(strings.NewReader(tc.in))
		if (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrPreload)) || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: %q %v", tc.in, got, err)
		}
	}
}

func TestLoadTrust(t *testing.T) {
	dir := t.TempDir()
	us, _ := labpki.NewHierarchy("US", labpki.Options{})
	gl, _ := labpki.NewHierarchy("GLOBAL", labpki.Options{})
	usFile, glFile := filepath.Join(dir, "us.pem"), filepath.Join(dir, "global.pem")
	labpki.WriteCerts(usFile, us.Root.Cert)
	labpki.WriteCerts(glFile, gl.Root.Cert)
	stores, err := LoadTrust(map[string]string{"US": usFile, "GLOBAL": glFile})
	if err != nil || len(stores) != 2 {
		t.Fatal(stores, err)
	}
	v, err := New(Config{Trust: stores, Static: map[string][]*x509.Certificate{
		"https://g.test/sp.pem": {gl.SP, gl.Intermediate.Cert}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	r := v.Verify(context.Background(), Input{Identity: []string{sign(t, gl.SPKey, "https://g.test/sp.pem", claims("12025550100", time.Now()))}})
	if r.Verstat != Passed || r.TrustStore != "GLOBAL" {
		t.Fatalf("%+v", r)
	}
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("nothing here\n"), 0o644)
	badCert := filepath.Join(dir, "bad.pem")
	os.WriteFile(badCert, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	for name, m := range map[string]map[string]string{
		"missing": {"US": filepath.Join(dir, "nope.pem")}, "empty": {"US": empty}, "bad": {"US": badCert},
	} {
		if _, err := LoadTrust(m); !errors.Is(err, ErrTrustFile) || !strings.Contains(err.Error(), `"US"`) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := LoadTrust(nil); !errors.Is(err, ErrNoTrust) {
		t.Errorf("nil: %v", err)
	}
}

// TestSetTrustConcurrent swaps the trust stores while verifications run
// (run under -race): every result is one of the two consistent outcomes,
// and after the last swap the new stores decide.
func TestSetTrustConcurrent(t *testing.T) {
	l := newLab(t)
	us := l.trust
	other, _ := labpki.NewHierarchy("XX", labpki.Options{})
	xx := x509.NewCertPool()
	xx.AddCert(other.Root.Cert)
	both := map[string]*x509.CertPool{"XX": xx, "US2": us["US"]}
	foreign := map[string]*x509.CertPool{"XX": xx}
	v := l.verifier(func(c *Config) { c.DisableReplay = true })
	id := sign(t, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", time.Now()))
	in := Input{Identity: []string{id}}

	const workers, perWorker = 4, 150
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}
	deadline := time.Now().Add(20 * time.Second)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker && time.Now().Before(deadline); i++ {
				r := v.Verify(context.Background(), in)
				key := r.Verstat + "/" + r.TrustStore
				switch {
				case r.Verstat == Passed && (r.TrustStore == "US" || r.TrustStore == "US2"):
				case r.Verstat == Failed && r.Code == 437 && errors.Is(r.Err, ErrUntrusted):
				default:
					t.Errorf("inconsistent result %+v", r)
					return
				}
				mu.Lock()
				seen[key]++
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < 60; i++ {
		var err error
		switch i % 3 {
		case 0:
			err = v.SetTrust(foreign)
		case 1:
			err = v.SetTrust(both)
		default:
			err = v.SetTrust(us)
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	t.Logf("outcomes %v", seen)
	if err := v.SetTrust(foreign); err != nil {
		t.Fatal(err)
	}
	if r := v.Verify(context.Background(), in); r.Verstat != Failed || !errors.Is(r.Err, ErrUntrusted) {
		t.Fatalf("after swap to foreign: %+v", r)
	}
	if err := v.SetTrust(both); err != nil {
		t.Fatal(err)
	}
	if r := v.Verify(context.Background(), in); r.Verstat != Passed || r.TrustStore != "US2" {
		t.Fatalf("after swap to both: %+v", r)
	}
	if err := v.SetTrust(nil); !errors.Is(err, ErrNoTrust) {
		t.Errorf("empty SetTrust: %v", err)
	}
	if got := v.TrustStores(); strings.Join(got, ",") != "US2,XX" {
		t.Errorf("stores after refused swap %v", got)
	}
}
