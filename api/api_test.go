package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/verify"
)

const (
	testX5U   = "https://cert.example.org/sp.pem"
	testToken = "token-0123456789abcdef"
)

var (
	pkiOnce sync.Once
	pkiH    *labpki.Hierarchy
	pkiErr  error
)

func hierarchy(t testing.TB) *labpki.Hierarchy {
	pkiOnce.Do(func() { pkiH, pkiErr = labpki.NewHierarchy("api-test", labpki.Options{}) })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiH
}

type testEnv struct {
	srv    *Server
	base   string
	h      *labpki.Hierarchy
	client *http.Client
	cfg    Config
}

func testPolicy(t testing.TB) *policy.Holder {
	tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{
		{Name: "retail", Attest: "A", Numbers: []string{"+1215555*"}},
		{Name: "wholesale", Attest: "B", Sources: []string{"198.18.3.7"}},
	}}, "C")
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewHolder(tbl)
}

func testVerifier(t testing.TB, h *labpki.Hierarchy) *verify.Verifier {
	roots := x509.NewCertPool()
	roots.AddCert(h.Root.Cert)
	v, err := verify.New(verify.Config{Trust: map[string]*x509.CertPool{"US": roots},
		Static: map[string][]*x509.Certificate{testX5U: {h.SP, h.Intermediate.Cert}}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// newEnv serves an API with a software signer behind an hsm.Pool (the SIP
// path's dispatcher type) on a real 127.0.0.1 listener.
func newEnv(t testing.TB, mut func(*Config)) *testEnv {
	t.Helper()
	h := hierarchy(t)
	soft, err := hsm.NewSoftware("soft", h.SPKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	b, err := passport.NewBuilder(testX5U)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := NewTokens(testToken)
	if err != nil {
		t.Fatal(err)
	}
	pool := hsm.NewPool(ctx, soft, 2, 4096)
	cfg := Config{Builder: b, Signer: pool, Policy: testPolicy(t), Verifier: testVerifier(t, h),
		Tokens: toks, CertFingerprint: audit.Fingerprint(h.SP), Ready: []Check{SignerCheck(pool, time.Second)},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mut != nil {
		mut(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &testEnv{srv: s, base: "http://" + ln.Addr().String(), h: h, cfg: cfg,
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, r.body)
	}
	return m
}

// do sends a request; hdr "Authorization" defaults to the test token.
func (e *testEnv) do(t testing.TB, method, path, body string, hdr ...string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, b}
}

func signBody(attest, orig string, dest []string, iat int64, extra string) string {
	d, _ := json.Marshal(dest)
	return fmt.Sprintf(`{"signingRequest":{"attest":%q,"dest":{"tn":%s},"iat":%d,"orig":{"tn":%q},"origid":"123e4567-e89b-42d3-a456-426614174000"%s}}`,
		attest, d, iat, orig, extra)
}

// checkErr asserts an ATIS error answer.
func checkErr(t *testing.T, r resp, status int, kind, id string, vars ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var m struct {
		RequestError map[string]struct {
			MessageID string   `json:"messageId"`
			Text      string   `json:"text"`
			Variables []string `json:"variables"`
		} `json:"requestError"`
	}
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("error body not JSON: %v: %s", err, r.body)
	}
	ex, ok := m.RequestError[kind]
	if !ok || len(m.RequestError) != 1 {
		t.Fatalf("want requestError.%s, got %s", kind, r.body)
	}
	if ex.MessageID != id || ex.Text == "" {
		t.Fatalf("messageId %q text %q, want %s: %s", ex.MessageID, ex.Text, id, r.body)
	}
	for i, v := range vars {
		if i >= len(ex.Variables) || !strings.Contains(ex.Variables[i], v) {
			t.Fatalf("variables %q, want %q", ex.Variables, vars)
		}
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t, nil)
	checkErr(t, e.do(t, "GET", "/", ""), 404, "serviceException", "SVC4003")
	checkErr(t, e.do(t, "DELETE", "/stir/v1/signing", ""), 405, "policyException", "POL4050")
	if r := e.do(t, "GET", "/stir/v1/signing", ""); r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	_ = bytes.MinRead
	var _ *ecdsa.PublicKey
}
