package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
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

func TestSignThenVerify(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now().Unix()
	r := e.do(t, "POST", "/stir/v1/signing", signBody("A", "+1 215-555-0100", []string{"12155550199", "+442079460018"}, now, ""),
		"X-RequestID", "req-42")
	if r.status != 200 {
		t.Fatalf("signing: %d %s", r.status, r.body)
	}
	if r.header.Get("X-RequestID") != "req-42" {
		t.Fatalf("X-RequestID not echoed: %v", r.header)
	}
	var out struct {
		R struct {
			Identity string `json:"identity"`
		} `json:"signingResponse"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.R.Identity == "" {
		t.Fatalf("signing response %s: %v", r.body, err)
	}
	id, err := passport.ParseIdentity(out.R.Identity)
	if err != nil {
		t.Fatal(err)
	}
	if err := passport.VerifySignature(&e.h.SPKey.PublicKey, id); err != nil {
		t.Fatal(err)
	}
	p := id.Payload
	if p.Attest != "A" || p.Orig.TN != "12155550100" || strings.Join(p.Dest.TN, ",") != "12155550199,442079460018" ||
		p.IAT != now || p.OrigID != "123e4567-e89b-42d3-a456-426614174000" || id.Info != testX5U || id.Header.X5U != testX5U {
		t.Fatalf("claims %+v info %q", p, id.Info)
	}
	// the verification service in process
	res := testVerifier(t, e.h).Verify(context.Background(), verify.Input{Identity: []string{out.R.Identity},
		OrigTN: "12155550100", DestTNs: []string{"12155550199"}, Time: time.Unix(now, 0)})
	if res.Verstat != verify.Passed {
		t.Fatalf("verify: %+v", res)
	}
	// and over the API
	vb, _ := json.Marshal(map[string]any{"verificationRequest": map[string]any{
		"from": map[string]any{"tn": "+12155550100"}, "to": map[string]any{"tn": []string{"12155550199"}},
		"time": now, "identity": out.R.Identity}})
	r = e.do(t, "POST", "/stir/v1/verification", string(vb))
	if r.status != 200 {
		t.Fatalf("verification: %d %s", r.status, r.body)
	}
	vr := r.json(t)["verificationResponse"].(map[string]any)
	if vr["verstat"] != verify.Passed {
		t.Fatalf("verification response %s", r.body)
	}
	// a second verification of the same PASSporT is a replay
	r = e.do(t, "POST", "/stir/v1/verification", string(vb))
	vr = r.json(t)["verificationResponse"].(map[string]any)
	if vr["verstat"] != verify.Failed || vr["reasoncode"] != float64(438) {
		t.Fatalf("replayed verification %s", r.body)
	}
	// a tampered PASSporT fails with a reason
	bad := strings.Replace(string(vb), "12155550199", "12155550198", 1)
	r = e.do(t, "POST", "/stir/v1/verification", bad)
	vr = r.json(t)["verificationResponse"].(map[string]any)
	if vr["verstat"] != verify.Failed || vr["reasoncode"] != float64(438) || vr["reasontext"] == "" {
		t.Fatalf("dest mismatch verification %s", r.body)
	}
}

func TestSignExtensionsAndOrigID(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now().Unix()
	r := e.do(t, "POST", "/stir/v1/signing", `{"signingRequest":{"attest":"B","dest":{"tn":["12155550199"]},"iat":`+
		fmt.Sprint(now)+`,"orig":{"tn":"12155550100"},"rcd":{"nam": "Alice"}}}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var out struct {
		R struct{ Identity string } `json:"signingResponse"`
	}
	_ = json.Unmarshal(r.body, &out)
	id, err := passport.ParseIdentity(out.R.Identity)
	if err != nil {
		t.Fatal(err)
	}
	if err := passport.VerifySignature(&e.h.SPKey.PublicKey, id); err != nil {
		t.Fatal(err)
	}
	if string(id.Payload.RCD) != `{"nam":"Alice"}` || len(id.Payload.OrigID) != 36 {
		t.Fatalf("payload %+v", id.Payload)
	}
}

func TestSigningBadInput(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBody = 4096 })
	now := time.Now().Unix()
	good := signBody("A", "12155550100", []string{"12155550199"}, now, "")
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		kind, id                 string
		vars                     []string
	}{
		{"malformed JSON", "POST", "", `{"signingRequest":{"attest":"A",}}`, nil, 400, "serviceException", "SVC4006", []string{"invalid JSON"}},
		{"truncated JSON", "POST", "", `{"signingRequest":{"attest":"A"`, nil, 400, "serviceException", "SVC4006", nil},
		{"not an object", "POST", "", `[1,2]`, nil, 400, "serviceException", "SVC4005", nil},
		{"trailing data", "POST", "", good + `{}`, nil, 400, "serviceException", "SVC4006", []string{"after"}},
		{"empty body", "POST", "", "", nil, 400, "serviceException", "SVC4000", nil},
		{"no signingRequest", "POST", "", `{}`, nil, 400, "serviceException", "SVC4001", []string{"signingRequest"}},
		{"missing attest", "POST", "", strings.Replace(good, `"attest":"A",`, "", 1), nil, 400, "serviceException", "SVC4001", []string{"attest"}},
		{"missing orig", "POST", "", fmt.Sprintf(`{"signingRequest":{"attest":"A","dest":{"tn":["12155550199"]},"iat":%d}}`, now), nil, 400, "serviceException", "SVC4001", []string{"orig"}},
		{"missing dest", "POST", "", fmt.Sprintf(`{"signingRequest":{"attest":"A","orig":{"tn":"12155550100"},"iat":%d}}`, now), nil, 400, "serviceException", "SVC4001", []string{"dest"}},
		{"missing iat", "POST", "", `{"signingRequest":{"attest":"A","orig":{"tn":"12155550100"},"dest":{"tn":["1"]}}}`, nil, 400, "serviceException", "SVC4001", []string{"iat"}},
		{"unknown attest", "POST", "", signBody("D", "12155550100", []string{"12155550199"}, now, ""), nil, 400, "serviceException", "SVC4005", []string{"attest", "A, B or C"}},
		{"attest lower case", "POST", "", signBody("a", "12155550100", []string{"12155550199"}, now, ""), nil, 400, "serviceException", "SVC4005", []string{"attest"}},
		{"attest wrong type", "POST", "", strings.Replace(good, `"attest":"A"`, `"attest":1`, 1), nil, 400, "serviceException", "SVC4005", []string{"attest", "string"}},
		{"iat wrong type", "POST", "", strings.Replace(good, fmt.Sprintf(`"iat":%d`, now), `"iat":"now"`, 1), nil, 400, "serviceException", "SVC4005", []string{"iat", "integer"}},
		{"iat float", "POST", "", strings.Replace(good, fmt.Sprintf(`"iat":%d`, now), `"iat":1.5`, 1), nil, 400, "serviceException", "SVC4005", []string{"iat"}},
		{"dest wrong type", "POST", "", strings.Replace(good, `"dest":{"tn":["12155550199"]}`, `"dest":{"tn":"12155550199"}`, 1), nil, 400, "serviceException", "SVC4005", []string{"dest.tn", "array"}},
		{"empty dest", "POST", "", signBody("A", "12155550100", []string{}, now, ""), nil, 400, "serviceException", "SVC4005", []string{"dest"}},
		{"stale iat", "POST", "", signBody("A", "12155550100", []string{"12155550199"}, now-3600, ""), nil, 400, "serviceException", "SVC4005", []string{"iat", "freshness"}},
		{"future iat", "POST", "", signBody("A", "12155550100", []string{"12155550199"}, now+3600, ""), nil, 400, "serviceException", "SVC4005", []string{"iat"}},
		{"orig not a number", "POST", "", signBody("A", "alice", []string{"12155550199"}, now, ""), nil, 400, "serviceException", "SVC4005", []string{"orig"}},
		{"dest not a number", "POST", "", signBody("A", "12155550100", []string{"12155550199", "sip:bob"}, now, ""), nil, 400, "serviceException", "SVC4005", []string{"dest"}},
		{"bad origid", "POST", "", strings.Replace(good, "123e4567-e89b-42d3-a456-426614174000", "not-a-uuid", 1), nil, 400, "serviceException", "SVC4005", []string{"origid"}},
		{"origid not v4", "POST", "", strings.Replace(good, "123e4567-e89b-42d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000", 1), nil, 400, "serviceException", "SVC4005", []string{"origid"}},
		{"unknown member", "POST", "", signBody("A", "12155550100", []string{"12155550199"}, now, `,"color":"red"`), nil, 400, "serviceException", "SVC4005", []string{"color", "unknown"}},
		{"bad extension JSON type", "POST", "", signBody("A", "12155550100", []string{"12155550199"}, now, `,"rcd":"x"`), nil, 200, "", "", nil},
		{"oversize body", "POST", "", signBody("A", "12155550100", []string{"12155550199"}, now, `,"crn":"`+strings.Repeat("x", 5000)+`"`), nil, 413, "serviceException", "SVC4006", []string{"limit"}},
		{"wrong content type", "POST", "", good, []string{"Content-Type", "text/plain"}, 415, "serviceException", "SVC4004", []string{"application/json"}},
		{"unacceptable Accept", "POST", "", good, []string{"Accept", "application/xml"}, 406, "serviceException", "SVC4002", []string{"application/xml"}},
		{"GET", "GET", "", "", nil, 405, "policyException", "POL4050", nil},
		{"unknown path", "POST", "/stir/v1/nothing", good, nil, 404, "serviceException", "SVC4003", nil},
		{"no token", "POST", "", good, []string{"Authorization", ""}, 401, "serviceException", "SVC4001", []string{"Authorization"}},
		{"wrong token", "POST", "", good, []string{"Authorization", "Bearer token-0123456789abcdeX"}, 401, "serviceException", "SVC4005", []string{"Authorization"}},
		{"wrong scheme", "POST", "", good, []string{"Authorization", "Basic " + testToken}, 401, "serviceException", "SVC4005", nil},
		{"good", "POST", "", good, []string{"Accept", "application/json, text/plain;q=0.5"}, 200, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/stir/v1/signing"
			}
			r := e.do(t, tc.method, path, tc.body, append(tc.hdr, "X-RequestID", "rid-"+tc.name[:2])...)
			if tc.status == 200 {
				if r.status != 200 {
					t.Fatalf("%d %s", r.status, r.body)
				}
				return
			}
			checkErr(t, r, tc.status, tc.kind, tc.id, tc.vars...)
			if r.header.Get("X-RequestID") != "rid-"+tc.name[:2] {
				t.Fatalf("X-RequestID not echoed on error")
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

func TestChunkedBodyRefused(t *testing.T) {
	e := newEnv(t, nil)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(signBody("A", "12155550100", []string{"12155550199"}, time.Now().Unix(), "")))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", e.base+"/stir/v1/signing", pr)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	checkErr(t, resp{res.StatusCode, res.Header, b}, 411, "serviceException", "SVC4007")
}

func TestVerificationBadInput(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name, body string
		status     int
		id         string
		vars       []string
	}{
		{"malformed", `{"verificationRequest":`, 400, "SVC4006", nil},
		{"missing wrapper", `{"x":1}`, 400, "SVC4005", []string{"x"}},
		{"missing identity", `{"verificationRequest":{"from":{"tn":"12155550100"},"to":{"tn":["12155550199"]}}}`, 400, "SVC4001", []string{"identity"}},
		{"missing from", `{"verificationRequest":{"identity":"x","to":{"tn":["12155550199"]}}}`, 400, "SVC4001", []string{"from"}},
		{"missing to", `{"verificationRequest":{"identity":"x","from":{"tn":"12155550100"}}}`, 400, "SVC4001", []string{"to"}},
		{"to wrong type", `{"verificationRequest":{"identity":"x","from":{"tn":"12155550100"},"to":{"tn":12}}}`, 400, "SVC4005", []string{"to.tn"}},
		{"time wrong type", `{"verificationRequest":{"identity":"x","from":{"tn":"12155550100"},"to":{"tn":["1"]},"time":"x"}}`, 400, "SVC4005", []string{"time"}},
		{"bad from", `{"verificationRequest":{"identity":"x","from":{"tn":"bob"},"to":{"tn":["12155550199"]}}}`, 400, "SVC4005", []string{"from"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, e.do(t, "POST", "/stir/v1/verification", tc.body), tc.status, "serviceException", tc.id, tc.vars...)
		})
	}
	// garbage identity: a verification result, not a request error
	r := e.do(t, "POST", "/stir/v1/verification", `{"verificationRequest":{"identity":"garbage","from":{"tn":"12155550100"},"to":{"tn":["12155550199"]},"time":`+fmt.Sprint(time.Now().Unix())+`}}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if vr := r.json(t)["verificationResponse"].(map[string]any); vr["verstat"] != verify.Failed || vr["reasoncode"] != float64(438) {
		t.Fatalf("%s", r.body)
	}
	// no verifier configured
	e2 := newEnv(t, func(c *Config) { c.Verifier = nil })
	checkErr(t, e2.do(t, "POST", "/stir/v1/verification", `{"verificationRequest":{"identity":"x","from":{"tn":"12155550100"},"to":{"tn":["12155550199"]}}}`),
		503, "policyException", "POL5000", "trust")
}

func TestAttestation(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ body, attest, rule string }{
		{`{"attestationRequest":{"orig":{"tn":"+12155550100"},"dest":{"tn":["12155550199"]},"source":"198.18.1.7"}}`, "A", "retail"},
		{`{"attestationRequest":{"orig":{"tn":"12155550100"}}}`, "A", "retail"},
		{`{"attestationRequest":{"orig":{"tn":"+442079460018"},"source":"198.18.3.7"}}`, "B", "wholesale"},
		{`{"attestationRequest":{"orig":{"tn":"+442079460018"},"source":"::ffff:198.18.3.7"}}`, "B", "wholesale"},
		{`{"attestationRequest":{"orig":{"tn":"+442079460018"},"source":"198.18.3.8"}}`, "C", "default"},
	} {
		r := e.do(t, "POST", "/stir/v1/attestation", tc.body)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", tc.body, r.status, r.body)
		}
		ar := r.json(t)["attestationResponse"].(map[string]any)
		if ar["attest"] != tc.attest || ar["rule"] != tc.rule {
			t.Fatalf("%s: %s", tc.body, r.body)
		}
	}
	for _, tc := range []struct {
		body, id string
		vars     []string
	}{
		{`{"attestationRequest":{}}`, "SVC4001", []string{"orig"}},
		{`{"attestationRequest":{"orig":{}}}`, "SVC4001", []string{"orig"}},
		{`{}`, "SVC4001", []string{"attestationRequest"}},
		{`{"attestationRequest":{"orig":{"tn":"12155550100"},"source":"nowhere"}}`, "SVC4005", []string{"source"}},
		{`{"attestationRequest":{"orig":{"tn":"12155550100"},"source":7}}`, "SVC4005", []string{"source"}},
		{`{"attestationRequest":{"orig":{"tn":"x"}}}`, "SVC4005", []string{"orig"}},
		{`{"attestationRequest":{"orig":{"tn":"12155550100"},"dest":{"tn":["?"]}}}`, "SVC4005", []string{"dest"}},
		{`{"attestationRequest":{"orig":{"tn":"12155550100"}`, "SVC4006", nil},
	} {
		checkErr(t, e.do(t, "POST", "/stir/v1/attestation", tc.body), 400, "serviceException", tc.id, tc.vars...)
	}
	checkErr(t, e.do(t, "POST", "/stir/v1/attestation", `{"attestationRequest":{"orig":{"tn":"12155550100"}}}`, "Authorization", ""),
		401, "serviceException", "SVC4001")
}

func TestNewRefusesWithoutTokens(t *testing.T) {
	b, _ := passport.NewBuilder(testX5U)
	if _, err := New(Config{Builder: b, Policy: testPolicy(t)}); !errors.Is(err, ErrNoTokens) {
		t.Fatalf("New without tokens: %v", err)
	}
	if _, err := New(Config{MonitorOnly: true}); err != nil {
		t.Fatalf("monitor-only: %v", err)
	}
	// lab without tokens: open
	e := newEnv(t, func(c *Config) { c.Tokens, c.Lab = nil, true })
	if r := e.do(t, "POST", "/stir/v1/attestation", `{"attestationRequest":{"orig":{"tn":"12155550100"}}}`, "Authorization", ""); r.status != 200 {
		t.Fatalf("lab: %d %s", r.status, r.body)
	}
	// monitor only: STIR routes are not there, health is
	m := newEnv(t, func(c *Config) { c.MonitorOnly, c.Tokens = true, nil })
	checkErr(t, m.do(t, "POST", "/stir/v1/signing", `{}`), 404, "serviceException", "SVC4003")
	if r := m.do(t, "GET", "/healthz", ""); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
}

func TestSignerFailures(t *testing.T) {
	now := time.Now().Unix()
	body := signBody("A", "12155550100", []string{"12155550199"}, now, "")
	// no queue at all: Submit fails at once (queue-full), like the SIP path's overload bypass
	full := newEnv(t, func(c *Config) {
		c.Signer = hsm.NewPool(context.Background(), nil, 0, 0)
		c.Ready = []Check{SignerCheck(c.Signer, 100*time.Millisecond)}
	})
	checkErr(t, full.do(t, "POST", "/stir/v1/signing", body), 503, "policyException", "POL5000", "queue-full")
	// a queue nobody serves: the request times out
	stuck := newEnv(t, func(c *Config) {
		c.Signer = hsm.NewPool(context.Background(), nil, 0, 16)
		c.Timeout = 200 * time.Millisecond
		c.Budget = time.Second
	})
	start := time.Now()
	checkErr(t, stuck.do(t, "POST", "/stir/v1/signing", body), 503, "policyException", "POL5000", "timeout")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	// no signer configured
	none := newEnv(t, func(c *Config) { c.Signer = nil; c.Ready = nil })
	checkErr(t, none.do(t, "POST", "/stir/v1/signing", body), 503, "policyException", "POL5000", "signer-down")
	// readiness follows the signer
	r := full.do(t, "GET", "/readyz", "")
	if r.status != 503 || !strings.Contains(string(r.body), "signer") {
		t.Fatalf("readyz with a full queue: %d %s", r.status, r.body)
	}
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Health = func() any { return []hsm.SignerHealth{{Name: "soft", State: hsm.StateClosed, Ready: true}} }
	})
	r := e.do(t, "GET", "/healthz", "", "Authorization", "")
	if r.status != 200 || r.json(t)["status"] != "ok" || !strings.Contains(string(r.body), `"name":"soft"`) {
		t.Fatalf("healthz %d %s", r.status, r.body)
	}
	r = e.do(t, "GET", "/readyz", "", "Authorization", "")
	m := r.json(t)
	if r.status != 200 || m["ready"] != true || m["checks"].(map[string]any)["signer"] != "ok" || m["checks"].(map[string]any)["policy"] != "ok" {
		t.Fatalf("readyz %d %s", r.status, r.body)
	}
	checkErr(t, e.do(t, "POST", "/healthz", "{}"), 405, "policyException", "POL4050")
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	for _, bad := range []string{"", "# only a comment\n\n", "short\n", "has space inside-0123456789\n"} {
		writeFile(t, path, bad)
		if _, err := LoadTokens(path); !errors.Is(err, ErrTokenFile) {
			t.Fatalf("LoadTokens(%q): %v", bad, err)
		}
	}
	if _, err := LoadTokens(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrTokenFile) {
		t.Fatalf("missing file: %v", err)
	}
	writeFile(t, path, "# ops\n  aaaaaaaaaaaaaaaaaaaa  \n\nbbbbbbbbbbbbbbbbbbbb\n")
	ts, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Len() != 2 || !ts.Valid("aaaaaaaaaaaaaaaaaaaa") || !ts.Valid("bbbbbbbbbbbbbbbbbbbb") || ts.Valid("aaaaaaaaaaaaaaaaaaa") || ts.Valid("") {
		t.Fatal("token set")
	}
	writeFile(t, path, "short\n")
	if err := ts.Reload(); err == nil || !ts.Valid("aaaaaaaaaaaaaaaaaaaa") {
		t.Fatalf("bad reload: %v; running set must stay", err)
	}
}

func TestAdminReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	writeFile(t, path, testToken+"\n")
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	var fail error
	var mu sync.Mutex
	reloads := 0
	e := newEnv(t, func(c *Config) {
		c.Tokens = toks
		c.Reload = func() error {
			mu.Lock()
			defer mu.Unlock()
			if fail != nil {
				return fail
			}
			reloads++
			return nil
		}
	})
	const newToken = "new-token-abcdefghijklmnop"
	// a reload function that refuses: tokens stay, reason returned
	writeFile(t, path, newToken+"\n")
	fail = errors.New("config: invalid: policy rule 2: bad prefix")
	checkErr(t, e.do(t, "POST", "/admin/reload", ""), 400, "serviceException", "SVC4005", "configuration", "bad prefix")
	if !toks.Valid(testToken) || toks.Valid(newToken) {
		t.Fatal("a refused reload changed the tokens")
	}
	// a bad token file: refused, reload function not run
	fail = nil
	writeFile(t, path, "short\n")
	checkErr(t, e.do(t, "POST", "/admin/reload", ""), 400, "serviceException", "SVC4005", "configuration", "shorter")
	if reloads != 0 {
		t.Fatal("reload ran with a bad token file")
	}
	// needs the token
	checkErr(t, e.do(t, "POST", "/admin/reload", "", "Authorization", ""), 401, "serviceException", "SVC4001")
	checkErr(t, e.do(t, "GET", "/admin/reload", ""), 405, "policyException", "POL4050")
	// good
	writeFile(t, path, newToken+"\n")
	r := e.do(t, "POST", "/admin/reload", "")
	if r.status != 200 || reloads != 1 {
		t.Fatalf("reload: %d %s", r.status, r.body)
	}
	checkErr(t, e.do(t, "POST", "/stir/v1/attestation", `{"attestationRequest":{"orig":{"tn":"1"}}}`), 401, "serviceException", "SVC4005")
	if r := e.do(t, "POST", "/admin/reload", "", "Authorization", "Bearer "+newToken); r.status != 200 {
		t.Fatalf("reload with the new token: %d %s", r.status, r.body)
	}
}

// TestReloadUnderLoad reloads tokens and policy while clients sign and ask
// for attestations: every request must succeed.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	writeFile(t, path, testToken+"\n")
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	hold := testPolicy(t)
	flip := false
	e := newEnv(t, func(c *Config) {
		c.Tokens, c.Policy = toks, hold
		c.Reload = func() error {
			flip = !flip
			def := "C"
			if flip {
				def = "B"
			}
			tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{{Name: "retail", Attest: "A", Numbers: []string{"+1215555*"}}}}, def)
			if err != nil {
				return err
			}
			hold.Store(tbl)
			return nil
		}
	})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	counts := map[int]int{}
	deadline := time.Now().Add(10 * time.Second)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				var r resp
				if w%2 == 0 {
					r = e.do(t, "POST", "/stir/v1/signing", signBody("A", "12155550100", []string{"12155550199"}, time.Now().Unix(), ""))
				} else {
					r = e.do(t, "POST", "/stir/v1/attestation", `{"attestationRequest":{"orig":{"tn":"12155550100"}}}`)
					if ar := r.json(t)["attestationResponse"].(map[string]any); ar["attest"] != "A" {
						t.Errorf("attestation during reload: %s", r.body)
					}
				}
				mu.Lock()
				counts[r.status]++
				mu.Unlock()
			}
		}()
	}
	for i := range 20 {
		tok := testToken
		if i%2 == 1 {
			tok = testToken + "\n# rotated\nsecond-token-0123456789"
		}
		writeFile(t, path, tok+"\n")
		if r := e.do(t, "POST", "/admin/reload", ""); r.status != 200 {
			t.Errorf("reload %d: %d %s", i, r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(counts) != 1 || counts[200] == 0 {
		t.Fatalf("statuses during reloads: %v", counts)
	}
	t.Logf("%d requests during 20 reloads, all 200", counts[200])
}

func TestAuditRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	al, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Audit = al })
	const n = 20
	for i := range n {
		r := e.do(t, "POST", "/stir/v1/signing", signBody("B", "12155550100", []string{"12155550199", "12155550198"}, time.Now().Unix(), ""),
			"X-RequestID", fmt.Sprint("call-", i))
		if r.status != 200 {
			t.Fatal(r.status, string(r.body))
		}
	}
	// a refused request is not audited
	e.do(t, "POST", "/stir/v1/signing", signBody("X", "12155550100", []string{"12155550199"}, time.Now().Unix(), ""))
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != n {
		t.Fatalf("%d audit lines, want %d:\n%s", len(lines), n, b)
	}
	fp := audit.Fingerprint(e.h.SP)
	for _, l := range lines {
		if !strings.Contains(l, " orig=12155550100 dest=12155550199,12155550198 attest=B rule=request signer=soft cert="+fp) ||
			strings.Contains(l, "call-") {
			t.Fatalf("audit line %q", l)
		}
	}
}

func TestMetricsAfterTraffic(t *testing.T) {
	e := newEnv(t, nil)
	before := scrape(t, e)
	const good, bad, unauth = 7, 3, 2
	for range good {
		if r := e.do(t, "POST", "/stir/v1/signing", signBody("C", "12155550100", []string{"12155550199"}, time.Now().Unix(), "")); r.status != 200 {
			t.Fatal(r.status)
		}
	}
	for range bad {
		e.do(t, "POST", "/stir/v1/signing", `{`)
	}
	for range unauth {
		e.do(t, "POST", "/stir/v1/attestation", `{}`, "Authorization", "")
	}
	after := scrape(t, e)
	for _, c := range []struct {
		name string
		want float64
	}{
		{`shakenline_api_requests_total{route="signing",code="200"}`, good},
		{`shakenline_api_requests_total{route="signing",code="400"}`, bad},
		{`shakenline_api_requests_total{route="attestation",code="401"}`, unauth},
		{`shakenline_api_signed_total{attest="C"}`, good},
		{`shakenline_api_request_duration_seconds_count{route="signing"}`, good + bad},
		{`shakenline_api_requests_total{route="metrics",code="200"}`, 1},
	} {
		if got := after[c.name] - before[c.name]; got != c.want {
			t.Errorf("%s grew by %v, want %v", c.name, got, c.want)
		}
	}
	if _, ok := after[`shakenline_api_requests_total{route="verification",code="503"}`]; !ok {
		t.Error("counters are not declared up front")
	}
}

// scrape fetches /metrics and parses the text exposition strictly: every
// line is a comment or `name{labels} value`.
func scrape(t *testing.T, e *testEnv) map[string]float64 {
	t.Helper()
	r := e.do(t, "GET", "/metrics", "", "Authorization", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %v", r.status, r.header)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(r.body)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			t.Fatalf("bad exposition line %q", line)
		}
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		name := line[:i]
		if open := strings.IndexByte(name, '{'); open >= 0 && !strings.HasSuffix(name, "}") {
			t.Fatalf("bad labels in %q", line)
		}
		out[name] = v
	}
	return out
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

// An iat far enough ahead to wrap a time.Duration is still refused.
func TestSignIATOverflowRefused(t *testing.T) {
	e := newEnv(t, nil)
	for _, iat := range []int64{time.Now().Unix() + 18446744074, time.Now().Unix() + 3600, 1 << 62} {
		r := e.do(t, "POST", "/stir/v1/signing", signBody("A", "12155550100", []string{"12155550199"}, iat, ""))
		checkErr(t, r, 400, "serviceException", "SVC4005")
	}
}
