package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/passport"
)

// FuzzSigningRequest feeds arbitrary bodies through the signing request
// parser and validation (the signer is absent, so a valid request ends in
// POL5000 signer-down): no panic, and every refusal is a known message.
func FuzzSigningRequest(f *testing.F) {
	now := time.Now().Unix()
	for _, s := range []string{
		signBody("A", "12155550100", []string{"12155550199"}, now, ""),
		signBody("B", "+44 20 7946 0018", []string{"1 (215) 555-0199", "+33142278186"}, now, `,"rcd":{"nam":"x"}`),
		`{"signingRequest":{"attest":1}}`, `{"signingRequest":null}`, `{`, `[]`, `{"signingRequest":{"dest":{"tn":[null]}}}`,
		`{"signingRequest":{"origid":"123e4567-e89b-42d3-a456-42661417400g"}}`,
	} {
		f.Add([]byte(s))
	}
	b, _ := passport.NewBuilder(testX5U)
	s, err := New(Config{Lab: true, Builder: b, Policy: testPolicy(f)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req signingBody
		e := decode(body, &req, "signingRequest")
		if e == nil {
			j := newSignJob().(*signJob)
			e = s.signOne(context.Background(), j, req.SigningRequest, "")
			if e == nil {
				t.Fatal("signed without a signer")
			}
		}
		if int(e.msg) >= len(msgs) || e.httpStatus() < 400 {
			t.Fatalf("bad error %+v", e)
		}
		if e.msg == pol5000 && (e.httpStatus() != http.StatusServiceUnavailable || e.vars[0] != "signer-down") {
			t.Fatalf("unexpected %v", e)
		}
		out := string(e.appendBody(nil))
		if !strings.HasPrefix(out, `{"requestError":{`) {
			t.Fatal(out)
		}
	})
}

func FuzzAppendTN(f *testing.F) {
	for _, s := range []string{"+1 215-555-0100", "2155550100", "1 (215) 555.0100", "+44 (0)20", "02079460123", "+", "", "1+2", "abc", strings.Repeat("9", 60)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tn string) {
		out, e := appendTN(nil, "orig", tn)
		if e == nil {
			if len(out) < 6 || len(out) > 15 || out[0] == '0' {
				t.Fatalf("%q -> %q", tn, out)
			}
			for _, c := range out {
				if c < '0' || c > '9' {
					t.Fatalf("%q -> %q", tn, out)
				}
			}
		} else if e.msg != svc4005 || len(e.vars) != 2 || e.vars[0] != "orig" || !strings.Contains(e.vars[1], strconv.Quote(tn)) {
			t.Fatalf("%q: refused with %v", tn, e)
		}
		var id [16]byte
		_ = parseUUID(tn, &id)
	})
}
