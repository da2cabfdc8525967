package passport

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// secsipidIdentity was made by Kamailio's secsipid_add_identity
// (libsecsipid, Debian kamailio-secsipid-modules) in
// TestInteropApplianceVerifiesKamailio (cmd/appliance) with the lab PKI.
const secsipidIdentity = "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cDovLzEyNy4wLjAuMTo0MTk0MS9zcC5wZW0ifQ" +
	".eyJhdHRlc3QiOiJCIiwiZGVzdCI6eyJ0biI6WyIxMzEwNTU1MDE0MyJdfSwiaWF0IjoxNzk1NDYxMDkzLCJvcmlnIjp7InRuIjoiMTIwMjU1NTAxMDEifSwib3JpZ2lkIjoiZDYxNDcwNzAtNzBmMy00N2M1LTlhYmEtZTU3MjM5NWZlMTIwIn0" +
	".tpNPVj_H5iuIQ3q3WSJZ5744bUaA2av1Rj_zxY6YVQzXaBcP2lVMKfCCQy8LkYdfekZYaGv4j3NQuhoonLZc-g;info=<http://127.0.0.1:41941/sp.pem>;alg=ES256;ppt=shaken"

// libsecsipid marshals Go structs with encoding/json: fields in struct
// order, '&', '<' and '>' escaped as \u0026, \u003c, \u003e (an x5u with
// a query string shows it).
const (
	secsipidHeader  = `{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"http://127.0.0.1:38211/sp.pem?a=1\u0026b=\u003c2\u003e"}`
	secsipidPayload = `{"attest":"B","dest":{"tn":["13105550143"]},"iat":1763900000,"orig":{"tn":"12025550101"},"origid":"2a6c9fe2-3f0d-4a0e-8a5b-0c7f0e1d2b3a"}`
)

var claimsSeeds = []string{
	`{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://cert.example.org/sp.pem"}`,
	`{"attest":"A","dest":{"tn":["12025550101"]},"iat":1700000000,"orig":{"tn":"12025550100"},"origid":"12345678-9abc-4ef0-8123-456789abcdef"}`,
	secsipidHeader, secsipidPayload,
	`{"attest":"A","crn":"Sales \u00e9","dest":{"tn":["1","2"],"uri":["sip:a@b"]},"div":{"tn":"12025550199"},"iat":1700000000,` +
		`"orig":{"tn":"12025550100"},"origid":"x","rcd":{"jcd":{"a":[true,null,1.50],"b":1},"nam":"Alice"}}`,
	" {\n\t\"origid\" : \"a\\\"b\\\\c\\/d\" , \"iat\" : -0 , \"x\" : [ { } , [ ] , 1e-3 , false ] }\r\n",
	`{"alg":"ES256","ALG":"none"}`,
	`{"Alg":"ES256"}`,
	`{"alg":"ES256","alg":"none"}`,
	`{"iat":1.5}`, `{"iat":"1"}`, `{"iat":9223372036854775808}`, `{"iat":null,"attest":null,"dest":null,"orig":null}`,
	`{"dest":{"tn":[null,"1"]}}`, `{"dest":{"tn":[1]}}`, `{"dest":[]}`, `{"dest":{"tn":[]}}`,
	`{"x5u":"\ud83d\ude00 \ud800 \u0041"}`, "{\"typ\":\"\xff\"}", `{"atteſt":"A"}`,
	`null`, `[]`, `{}`, `{"a":1} x`, `{"a":1}}`, `{"a":}`, `{"a" 1}`, `{"a":1,}`, `{"a":01}`, `{"a":"\x"}`, `{"a":tru}`,
	`{"rcd":null,"div":[1, {"a":"b"}],"rcdi":"s"}`, `{"\u0061lg":"ES256"}`,
}

func addClaimsSeeds(f *testing.F) {
	for _, s := range claimsSeeds {
		f.Add(s)
	}
	for _, v := range []string{goldenIdentity, secsipidIdentity} {
		tok, _, _ := strings.Cut(v, ";")
		parts := strings.Split(tok, ".")
		for _, p := range parts[:2] {
			js, _ := b64.DecodeString(p)
			f.Add(string(js))
		}
	}
}

// hasDupClaim reports whether js (a valid JSON object) names one of the
// claims this package reads twice at the top level or inside orig/dest,
// comparing names as encoding/json does (case-insensitively).
func hasDupClaim(js string, names []string) bool {
	dec := json.NewDecoder(strings.NewReader(js))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	dup := false
	for dec.More() {
		k, _ := dec.Token()
		var raw json.RawMessage
		if dec.Decode(&raw) != nil {
			return false
		}
		for _, n := range names {
			if strings.EqualFold(k.(string), n) {
				if seen[n] {
					dup = true
				}
				seen[n] = true
				if n == "orig" || n == "dest" {
					if len(raw) > 0 && raw[0] == '{' && hasDupClaim(string(raw), tnURIFields) {
						dup = true
					}
				}
			}
		}
	}
	return dup
}

// checkClaims compares parseHeaderJSON and parsePayloadJSON with
// json.Unmarshal on js.
func checkClaims(t *testing.T, js string) {
	t.Helper()
	var h1, h2 ProtectedHeader
	err1 := parseHeaderJSON(js, &h1)
	err2 := json.Unmarshal([]byte(js), &h2)
	compareClaims(t, js, "header", err1, err2, h1, h2, headerFields)
	var p1, p2 Payload
	err1 = parsePayloadJSON(js, &p1)
	err2 = json.Unmarshal([]byte(js), &p2)
	compareClaims(t, js, "payload", err1, err2, p1, p2, payloadFields)
}

func compareClaims(t *testing.T, js, what string, err1, err2 error, v1, v2 any, names []string) {
	t.Helper()
	switch {
	case err1 == nil && err2 == nil:
		if !reflect.DeepEqual(v1, v2) {
			t.Fatalf("%s %q:\n got %#v\nwant %#v", what, js, v1, v2)
		}
	case err1 != nil && !errors.Is(err1, ErrBadJSON):
		t.Fatalf("%s %q: error %v does not wrap ErrBadJSON", what, js, err1)
	case err1 != nil && err2 == nil:
		// The two documented differences: a top level that is not an
		// object, a claim named twice.
		if errors.Is(err1, errNotObject) && !strings.HasPrefix(strings.TrimLeft(js, " \t\r\n"), "{") {
			return
		}
		if errors.Is(err1, errDuplicate) && hasDupClaim(js, names) {
			return
		}
		t.Fatalf("%s %q: refused (%v), encoding/json accepts %#v", what, js, err1, v2)
	case err1 == nil && err2 != nil:
		t.Fatalf("%s %q: accepted %#v, encoding/json refuses: %v", what, js, v1, err2)
	}
}

func TestClaimsJSON(t *testing.T) {
	for _, s := range claimsSeeds {
		checkClaims(t, s)
	}
	var h ProtectedHeader
	if err := parseHeaderJSON(secsipidHeader, &h); err != nil || h.X5U != "http://127.0.0.1:38211/sp.pem?a=1&b=<2>" {
		t.Errorf("secsipid header: %v %+v", err, h)
	}
	var p Payload
	if err := parsePayloadJSON(secsipidPayload, &p); err != nil || p.Attest != "B" || p.Dest.TN[0] != "13105550143" || p.IAT != 1763900000 {
		t.Errorf("secsipid payload: %v %+v", err, p)
	}
	id, err := ParseIdentity(secsipidIdentity)
	if err != nil || id.Header.X5U != "http://127.0.0.1:41941/sp.pem" || id.Info != id.Header.X5U || id.Payload.Attest != "B" ||
		id.Payload.Orig.TN != "12025550101" || len(id.Payload.Dest.TN) != 1 || id.Payload.Dest.TN[0] != "13105550143" ||
		id.Payload.IAT != 1795461093 || id.Payload.OrigID != "d6147070-70f3-47c5-9aba-e572395fe120" || len(id.Signature) != 64 {
		t.Errorf("secsipid Identity: %v %+v", err, id)
	}
	for _, dup := range []string{`{"alg":"ES256","alg":"none"}`, `{"alg":"ES256","ALG":"none"}`} {
		if err := parseHeaderJSON(dup, &h); !errors.Is(err, errDuplicate) {
			t.Errorf("%s: err = %v, want duplicate", dup, err)
		}
	}
	if err := parsePayloadJSON(`{"orig":{"tn":"1","TN":"2"}}`, &p); !errors.Is(err, errDuplicate) {
		t.Errorf("nested duplicate: err = %v", err)
	}
	if err := parsePayloadJSON(`null`, &p); !errors.Is(err, errNotObject) {
		t.Errorf("null: err = %v", err)
	}
	deep := strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2)
	if err := parsePayloadJSON(`{"x":`+deep+`}`, &p); err == nil {
		t.Error("nesting deeper than encoding/json's limit accepted")
	}
}

// TestClaimsJSONAllocs: a plain PASSporT's claims are substrings of the
// input: parsing allocates only the dest array.
func TestClaimsJSONAllocs(t *testing.T) {
	var p Payload
	var h ProtectedHeader
	n := testing.AllocsPerRun(100, func() {
		_ = parseHeaderJSON(claimsSeeds[0], &h)
		_ = parsePayloadJSON(claimsSeeds[1], &p)
	})
	if n > 1 {
		t.Errorf("%v allocations, want at most 1 (dest.tn)", n)
	}
}

// FuzzClaimsJSON is a differential test of the claims parser against
// encoding/json (see checkClaims and the rules in claimsjson.go).
func FuzzClaimsJSON(f *testing.F) {
	addClaimsSeeds(f)
	f.Fuzz(func(t *testing.T, js string) {
		checkClaims(t, js)
	})
}
