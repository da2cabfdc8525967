package stias

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/api"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/tnauth"
)

// provider is a service provider: a certificate with an SPC, its key, and
// the x5u where the certificate is published (on loopback: lab fetches).
type provider struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	x5u     string
	fetches atomic.Int64
}

func newProvider(t testing.TB, spc string) *provider {
	t.Helper()
	ca, err := labpki.NewCA("root-"+spc, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert, key, err := ca.IssueSP(spc, tnauth.List{}, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := &provider{cert: cert, key: key}
	pem := labpki.EncodeCerts(append([]*x509.Certificate{cert}, ca.Chain()...)...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		_, _ = w.Write(pem)
	}))
	t.Cleanup(srv.Close)
	p.x5u = srv.URL + "/sp.pem"
	return p
}

// stiAS is another appliance's signing API (package api, the real one),
// signing with p's key under p's x5u.
func stiAS(t testing.TB, p *provider) (url, token string) {
	t.Helper()
	soft, err := hsm.NewSoftware("soft", p.key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = soft.Close() })
	chain, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{Signer: soft}}}, p.cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chain.Close() })
	b, err := passport.NewBuilder(p.x5u)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := policy.Build(policy.Config{}, "C")
	if err != nil {
		t.Fatal(err)
	}
	token = "remote-token-0123456789abcdef"
	tokens, err := api.NewTokens(token)
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.New(api.Config{Builder: b, Signer: chain, Policy: policy.NewHolder(tbl), Tokens: tokens,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL + "/stir/v1/signing", token
}

// input is the signing input the appliance would build for a call now.
func input(t testing.TB, x5u string) []byte {
	t.Helper()
	b, err := passport.NewBuilder(x5u)
	if err != nil {
		t.Fatal(err)
	}
	c := passport.Claims{Attest: 'A', Orig: []byte("12155550121"), Dest: [][]byte{[]byte("12155550131")}, IAT: time.Now().Unix()}
	c.OrigID[0] = 7
	return b.AppendSigningInput(make([]byte, 0, 1024), &c)
}

func newClient(t *testing.T, url, token string, ours []string, mode string) *Client {
	t.Helper()
	c, err := New(Config{Name: "remote", URL: url, Token: token, Lab: true, OwnSPCs: ours, OwnCert: mode,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Another appliance's API signs the claims the appliance asked for; the
// Identity header value comes back as the remote made it (its x5u, its
// signature), verifies with its key, and carries exactly our claims.
func TestSignThroughAnotherAppliance(t *testing.T) {
	p := newProvider(t, "1234")
	url, token := stiAS(t, p)
	c := newClient(t, url, token, []string{"1234"}, OwnCertEnforce)
	in := input(t, "https://cert.example.net/ours.pem")
	id, err := c.SignInput(context.Background(), in, []byte("kept:"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(id), "kept:") {
		t.Fatalf("dst not appended to: %q", id)
	}
	pid, err := passport.ParseIdentity(string(id[len("kept:"):]))
	if err != nil {
		t.Fatal(err)
	}
	if pid.Header.X5U != p.x5u {
		t.Fatalf("x5u %q, want the remote's %q", pid.Header.X5U, p.x5u)
	}
	if err := passport.VerifySignature(&p.key.PublicKey, pid); err != nil {
		t.Fatal(err)
	}
	_, asked, _ := passport.ParseSigningInput(in)
	_, got, _ := passport.ParseSigningInput(pid.SigningInput)
	if string(asked) != string(got) {
		t.Fatalf("signed %s, asked %s", got, asked)
	}
	// The x5u is fetched once, not per call.
	for range 3 {
		if _, err := c.SignInput(context.Background(), in, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("x5u fetched %d times, want 1", n)
	}
}

// A remote that signs with another provider's certificate: with own_cert
// warn the answer is used (and warned about), with enforce it is refused.
func TestOwnCertificateRule(t *testing.T) {
	p := newProvider(t, "9999")
	url, token := stiAS(t, p)
	in := input(t, "https://cert.example.net/ours.pem")
	warn := newClient(t, url, token, []string{"1234"}, OwnCertWarn)
	if _, err := warn.SignInput(context.Background(), in, nil); err != nil {
		t.Fatalf("warn: %v", err)
	}
	enforce := newClient(t, url, token, []string{"1234"}, OwnCertEnforce)
	if _, err := enforce.SignInput(context.Background(), in, nil); !errors.Is(err, ErrForeignCert) {
		t.Fatalf("enforce: %v, want ErrForeignCert", err)
	}
	ours := newClient(t, url, token, []string{"9999"}, OwnCertEnforce)
	if _, err := ours.SignInput(context.Background(), in, nil); err != nil {
		t.Fatalf("enforce, own SPC: %v", err)
	}
}

// Every answer that is not exactly a PASSporT of the claims asked for is an
// error: a refusal, another claim value, a claim more, a wrong ppt, a body
// that is not a signingResponse.
func TestAnswersChecked(t *testing.T) {
	p := newProvider(t, "1234")
	in := input(t, "https://cert.example.net/ours.pem")
	_, claims, _ := passport.ParseSigningInput(in)
	forge := func(js string, ppt string) string {
		b, err := passport.NewBuilder(p.x5u)
		if err != nil {
			t.Fatal(err)
		}
		hdr := string(b.HeaderB64())
		if ppt != "shaken" {
			hdr = strings.TrimRight(base64url(fmt.Sprintf(`{"alg":"ES256","ppt":%q,"typ":"passport","x5u":%q}`, ppt, p.x5u)), "=")
		}
		return hdr + "." + base64url(js) + ".AAAA;info=<" + p.x5u + ">;alg=ES256;ppt=" + ppt
	}
	other := strings.Replace(string(claims), `"attest":"A"`, `"attest":"B"`, 1)
	more := strings.Replace(string(claims), `{"attest"`, `{"crn":"x","attest"`, 1)
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"refusal", 503, `{"requestError":{"policyException":{"messageId":"POL5000","text":"x"}}}`, ErrHTTP},
		{"not json", 200, `<html>`, ErrAnswer},
		{"no identity", 200, `{"signingResponse":{}}`, ErrAnswer},
		{"not a passport", 200, `{"signingResponse":{"identity":"abc"}}`, ErrAnswer},
		{"other attest", 200, `{"signingResponse":{"identity":"` + forge(other, "shaken") + `"}}`, ErrClaims},
		{"a claim more", 200, `{"signingResponse":{"identity":"` + forge(more, "shaken") + `"}}`, ErrClaims},
		{"other ppt", 200, `{"signingResponse":{"identity":"` + forge(string(claims), "div") + `"}}`, ErrAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c := newClient(t, srv.URL, "", []string{"1234"}, OwnCertWarn)
			if _, err := c.SignInput(context.Background(), in, nil); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

// The bearer token goes in the Authorization header; a wrong one is an
// HTTP refusal of the real API.
func TestToken(t *testing.T) {
	p := newProvider(t, "1234")
	url, _ := stiAS(t, p)
	c := newClient(t, url, "wrong-token-0123456789abcdef", []string{"1234"}, OwnCertWarn)
	_, err := c.SignInput(context.Background(), input(t, "https://cert.example.net/ours.pem"), nil)
	if !errors.Is(err, ErrHTTP) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err %v, want HTTP 401", err)
	}
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "http://sti-as.example.net/stir/v1/signing"},
		{URL: "ftp://x/"},
		{URL: "https://x/", OwnCert: "maybe"},
		{URL: "https://user@x/"},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err %v, want ErrConfig", cfg, err)
		}
	}
	if _, err := New(Config{URL: "http://127.0.0.1:1/stir/v1/signing", Lab: true}); err != nil {
		t.Errorf("lab http: %v", err)
	}
}

func base64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// syncBuffer is a log destination the client's goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// At start, before any call, the client has one probe PASSporT signed and
// applies the own-certificate rule to the x5u of the answer: a foreign
// certificate is warned about in warn mode too (where calls never wait for
// the check), our own is logged once as ours, and a remote whose x5u
// cannot be fetched is an error, warned about.
func TestCheckAtStart(t *testing.T) {
	foreign := newProvider(t, "9999")
	url, token := stiAS(t, foreign)
	var logs syncBuffer
	c, err := New(Config{Name: "remote", URL: url, Token: token, Lab: true, OwnSPCs: []string{"1234"}, OwnCert: OwnCertWarn,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	own, err := c.CheckAtStart(context.Background())
	if err != nil || own {
		t.Fatalf("foreign certificate: own %v, err %v", own, err)
	}
	if n := foreign.fetches.Load(); n != 1 {
		t.Fatalf("x5u fetched %d times at start, want 1", n)
	}
	if !strings.Contains(logs.String(), "not ours") || !strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("no warning at start:\n%s", logs.String())
	}
	// The verdict is kept: the first call fetches nothing again.
	if _, err := c.SignInput(context.Background(), input(t, "https://cert.example.net/ours.pem"), nil); err != nil {
		t.Fatal(err)
	}
	if n := foreign.fetches.Load(); n != 1 {
		t.Fatalf("x5u fetched %d times, want 1", n)
	}

	mine := newProvider(t, "1234")
	url, token = stiAS(t, mine)
	logs = syncBuffer{}
	c, err = New(Config{Name: "remote", URL: url, Token: token, Lab: true, OwnSPCs: []string{"1234"}, OwnCert: OwnCertEnforce,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if own, err := c.CheckAtStart(context.Background()); err != nil || !own {
		t.Fatalf("own certificate: own %v, err %v", own, err)
	}
	if strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "a certificate of ours") {
		t.Fatalf("own certificate logged as:\n%s", logs.String())
	}

	// A remote that refuses at first (still starting) is asked again.
	var asked atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if asked.Add(1) <= 2 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, url, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(front.Close)
	c, err = New(Config{Name: "remote", URL: front.URL, Token: token, Lab: true, OwnSPCs: []string{"1234"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if own, err := c.CheckAtStart(ctx); err != nil || !own || asked.Load() != 3 {
		t.Fatalf("refused twice, then ours: own %v, err %v after %d requests", own, err, asked.Load())
	}

	// The remote's x5u is gone: the check fails and says so.
	gone := newProvider(t, "1234")
	gone.x5u = "http://127.0.0.1:1/sp.pem"
	url, token = stiAS(t, gone)
	logs = syncBuffer{}
	c, err = New(Config{Name: "remote", URL: url, Token: token, Lab: true, OwnSPCs: []string{"1234"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := c.CheckAtStart(context.Background()); err == nil {
		t.Fatal("x5u not fetchable: no error")
	}
	if !strings.Contains(logs.String(), "could not be checked at start") {
		t.Fatalf("no warning:\n%s", logs.String())
	}
}
