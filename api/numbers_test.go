package api

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/verify"
)

// worldNumbers are telephone numbers of 30 countries and networks
// (1-, 2- and 3-digit country codes, 7 to 15 digits), as an API client
// writes them (with or without '+', some with visual separators) and as
// they must be signed: E.164 digits exactly as given, never with the
// API's default country (US) in front.
var worldNumbers = []struct{ where, given, e164 string }{
	{"US", "+1 202-555-0143", "12025550143"},
	{"JM", "18765550123", "18765550123"},
	{"RU", "+7 495 123-45-67", "74951234567"},
	{"ZA", "27211234567", "27211234567"},
	{"NL", "+31 20 123 4567", "31201234567"},
	{"FR", "+33 1 99 00 12 34", "33199001234"},
	{"ES", "34912345678", "34912345678"},
	{"IT", "+39 06 6982 1234", "390669821234"}, // the 0 belongs to the Italian number
	{"AT", "+43 1 5123", "4315123"},
	{"GB", "442079460123", "442079460123"}, // the example
	{"DE", "+49 30 901820", "4930901820"},
	{"DE-mobile", "4915123456789", "4915123456789"},
	{"MX", "+52 55 1234 5678", "525512345678"},
	{"AR", "+54 9 11 1234-5678", "5491112345678"},
	{"BR", "5511912345678", "5511912345678"},
	{"AU", "+61 2 5550 1234", "61255501234"},
	{"NZ", "+64 9 123 4567", "6491234567"},
	{"SG", "6561234567", "6561234567"},
	{"JP", "+81 3-1234-5678", "81312345678"},
	{"CN", "861012345678", "861012345678"},
	{"IN", "+91 98765 43210", "919876543210"},
	{"PT", "+351 21 123 4567", "351211234567"},
	{"IE", "35312345678", "35312345678"},
	{"FI", "+358 9 1234 567", "35891234567"},
	{"NU", "+683 4002", "6834002"},
	{"HK", "+852 2123 4567", "85221234567"},
	{"IL", "+972 3-123-4567", "97231234567"},
	{"AE", "97141234567", "97141234567"},
	{"KE", "+254 20 1234567", "254201234567"},
	{"Inmarsat", "+870 773 123456", "870773123456"},
	{"intl-networks", "882161234567890", "882161234567890"}, // 15 digits, the E.164 maximum
}

// payloadClaims is the test's own decoding of a PASSporT payload (not package
// passport's).
type payloadClaims struct {
	Attest string `json:"attest"`
	Orig   struct {
		TN string `json:"tn"`
	} `json:"orig"`
	Dest struct {
		TN []string `json:"tn"`
	} `json:"dest"`
	IAT int64 `json:"iat"`
}

func decodeClaims(t testing.TB, identity string) payloadClaims {
	t.Helper()
	jws, _, _ := strings.Cut(identity, ";")
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("identity %q is not a compact JWS", identity)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("payload of %q: %v", identity, err)
	}
	var c payloadClaims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("payload %s: %v", b, err)
	}
	return c
}

// roomyBudget gives signing a second: these tests are about numbers, not
// about the 100 ms budget on a loaded machine (or under -race).
func roomyBudget(c *Config) { c.Budget = time.Second }

func (e *testEnv) sign(t testing.TB, orig string, dest []string, iat int64) string {
	t.Helper()
	r := e.do(t, "POST", "/stir/v1/signing", signBody("A", orig, dest, iat, ""))
	if r.status != 200 {
		t.Fatalf("signing orig %q dest %q: %d %s", orig, dest, r.status, r.body)
	}
	var out struct {
		R struct{ Identity string } `json:"signingResponse"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.R.Identity == "" {
		t.Fatalf("signing response %s: %v", r.body, err)
	}
	return out.R.Identity
}

// TestTNsAsGiven signs and verifies, over the API, calls between numbers
// of 30 countries: orig and dest are signed exactly as given in E.164
// (the fault: a UK dest 442079460123 was signed as 1442079460123, and its
// verification answered 438), and the verification request takes its
// numbers by the same rule.
func TestTNsAsGiven(t *testing.T) {
	e := newEnv(t, roomyBudget)
	now := time.Now().Unix()
	for i, o := range worldNumbers {
		d := worldNumbers[(i+1)%len(worldNumbers)]
		t.Run(o.where+"-to-"+d.where, func(t *testing.T) {
			id := e.sign(t, o.given, []string{d.given}, now)
			c := decodeClaims(t, id)
			if c.Orig.TN != o.e164 || len(c.Dest.TN) != 1 || c.Dest.TN[0] != d.e164 {
				t.Fatalf("signed orig %q dest %q, want %q and %q", c.Orig.TN, c.Dest.TN, o.e164, d.e164)
			}
			vb, _ := json.Marshal(map[string]any{"verificationRequest": map[string]any{
				"from": map[string]any{"tn": o.given}, "to": map[string]any{"tn": []string{d.e164}},
				"time": now, "identity": id}})
			r := e.do(t, "POST", "/stir/v1/verification", string(vb))
			if r.status != 200 {
				t.Fatalf("verification: %d %s", r.status, r.body)
			}
			if vr := r.json(t)["verificationResponse"].(map[string]any); vr["verstat"] != verify.Passed {
				t.Fatalf("verification of %s -> %s: %s", o.e164, d.e164, r.body)
			}
		})
	}
}

// badTNs are refused by every API parameter that takes a TN, each with a
// text naming the fault.
var badTNs = []struct{ tn, why string }{
	{"2155550100", "country code"},          // a NANP number without its 1: 21, 215 are no country codes
	{"4255550100", "country code"},          // 42x: only 420, 421, 423 are assigned
	{"02079460123", "0"},                    // a UK number with its trunk prefix
	{"+44 (0)20 7946 0123", "(0"},           // the trunk prefix in parentheses
	{"1215555010012345", "16 digits"},       // over E.164's 15
	{"44207", "5 digits"},                   // under the shortest E.164 number
	{"12a5550100", `"a"`},                   // a letter
	{"1-215-555+0100", `"+"`},               // '+' only first
	{"tel:+12155550100", `"t"`},             // a URI, not a TN
	{"+", "no digits"},                      // nothing
	{"", "no digits"},                       // nothing
	{"+1\u00a0215 555 0100", "not a digit"}, // a no-break space
	{"１２１５５５５０１００", "not a digit"},          // full-width digits
}

func TestTNsRefused(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now().Unix()
	for _, b := range badTNs {
		t.Run(b.tn, func(t *testing.T) {
			q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
			for _, c := range []struct{ path, param, body string }{
				{"/stir/v1/signing", "orig", signBody("A", b.tn, []string{"12025550143"}, now, "")},
				{"/stir/v1/signing", "dest", signBody("A", "12025550143", []string{"442079460123", b.tn}, now, "")},
				{"/stir/v1/verification", "from", `{"verificationRequest":{"identity":"x","from":{"tn":` + q(b.tn) + `},"to":{"tn":["12025550143"]}}}`},
				{"/stir/v1/verification", "to", `{"verificationRequest":{"identity":"x","from":{"tn":"12025550143"},"to":{"tn":[` + q(b.tn) + `]}}}`},
				{"/stir/v1/attestation", "orig", `{"attestationRequest":{"orig":{"tn":` + q(b.tn) + `}}}`},
				{"/stir/v1/attestation", "dest", `{"attestationRequest":{"orig":{"tn":"12025550143"},"dest":{"tn":[` + q(b.tn) + `]}}}`},
			} {
				t.Logf("%s %s", c.path, c.param)
				checkErr(t, e.do(t, "POST", c.path, c.body), 400, "serviceException", "SVC4005", c.param, b.why)
			}
		})
	}
}
