package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/verify"
)

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

// TestSignDivAndRCD: a div claim makes a div PASSporT (RFC 8946: no
// attest, no origid, attest may be left out); Rich Call Data go into the
// shaken PASSporT (ATIS-1000094). Both verify with the provider's key.
func TestSignDivAndRCD(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now().Unix()
	identity := func(body string) *passport.Identity {
		t.Helper()
		r := e.do(t, "POST", "/stir/v1/signing", body)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var out struct {
			R struct{ Identity string } `json:"signingResponse"`
		}
		_ = json.Unmarshal(r.body, &out)
		id, err := passport.ParseIdentityAny(out.R.Identity)
		if err != nil {
			t.Fatal(err)
		}
		if err := passport.VerifySignature(&e.h.SPKey.PublicKey, id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	for _, attest := range []string{``, `"attest":"A",`} {
		id := identity(`{"signingRequest":{` + attest + `"dest":{"tn":["12155550199"]},"iat":` + fmt.Sprint(now) +
			`,"orig":{"tn":"12155550100"},"div":{"tn":"12025550101"}}}`)
		if id.PPT != passport.PPTDiv || !strings.HasSuffix(id.Raw, ";ppt=div") || id.Payload.Attest != "" || id.Payload.OrigID != "" ||
			string(id.Payload.Div) != `{"tn":"12025550101"}` || id.Payload.Dest.TN[0] != "12155550199" {
			t.Errorf("div PASSporT %s %+v", id.PPT, id.Payload)
		}
	}
	id := identity(`{"signingRequest":{"attest":"A","dest":{"tn":["12155550199"]},"iat":` + fmt.Sprint(now) +
		`,"orig":{"tn":"12155550100"},"rcd":{"nam":"Example Bank","icn":"https://x.example/l.png"},"rcdi":{"/icn":"sha256-x"},"crn":"Card alert"}}`)
	if id.PPT != passport.PPTShaken || id.Payload.CRN != "Card alert" || string(id.Payload.RCD) != `{"icn":"https://x.example/l.png","nam":"Example Bank"}` ||
		string(id.Payload.RCDI) != `{"/icn":"sha256-x"}` || id.Payload.Attest != "A" {
		t.Errorf("shaken PASSporT with rcd %+v", id.Payload)
	}
	// A div PASSporT takes no Rich Call Data.
	r := e.do(t, "POST", "/stir/v1/signing", `{"signingRequest":{"dest":{"tn":["12155550199"]},"iat":`+fmt.Sprint(now)+
		`,"orig":{"tn":"12155550100"},"div":{"tn":"12025550101"},"rcd":{"nam":"x"}}}`)
	if r.status != 400 || !strings.Contains(string(r.body), "SVC4005") {
		t.Errorf("div with rcd: %d %s", r.status, r.body)
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

// An iat far enough ahead to wrap a time.Duration is still refused.
func TestSignIATOverflowRefused(t *testing.T) {
	e := newEnv(t, nil)
	for _, iat := range []int64{time.Now().Unix() + 18446744074, time.Now().Unix() + 3600, 1 << 62} {
		r := e.do(t, "POST", "/stir/v1/signing", signBody("A", "12155550100", []string{"12155550199"}, iat, ""))
		checkErr(t, r, 400, "serviceException", "SVC4005")
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
		if !strings.Contains(l, " orig=12155550100 dest=12155550199,12155550198 attest=B ppt=shaken rule=request signer=soft cert="+fp) ||
			strings.Contains(l, "call-") {
			t.Fatalf("audit line %q", l)
		}
	}
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
