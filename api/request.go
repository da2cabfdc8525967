package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/shakenline/shakenline/e164"
)

// Request bodies (ATIS-1000082; attestationRequest is ours). Pointers tell a
// missing member from a zero one.
type (
	tnOne struct {
		TN *string `json:"tn"`
	}
	tnList struct {
		TN []string `json:"tn"`
	}
	signingFields struct {
		Attest *string         `json:"attest"`
		Dest   *tnList         `json:"dest"`
		IAT    *int64          `json:"iat"`
		Orig   *tnOne          `json:"orig"`
		OrigID *string         `json:"origid"`
		Div    json.RawMessage `json:"div"`  // RFC 8946
		RCD    json.RawMessage `json:"rcd"`  // RFC 9795
		RCDI   json.RawMessage `json:"rcdi"` // RFC 9795
		CRN    json.RawMessage `json:"crn"`  // RFC 9795
	}
	signingBody struct {
		SigningRequest *signingFields `json:"signingRequest"`
	}
	verificationFields struct {
		From     *tnOne  `json:"from"`
		To       *tnList `json:"to"`
		Time     *int64  `json:"time"`
		Identity *string `json:"identity"`
	}
	verificationBody struct {
		VerificationRequest *verificationFields `json:"verificationRequest"`
	}
	attestationFields struct {
		Orig   *tnOne  `json:"orig"`
		Dest   *tnList `json:"dest"`
		Source *string `json:"source"`
	}
	attestationBody struct {
		AttestationRequest *attestationFields `json:"attestationRequest"`
	}
)

// MaxDest bounds the dest TNs of one request.
const MaxDest = 32

// decode parses body strictly into v: one JSON object, no unknown members,
// nothing after it. wrapper is the top-level member name, stripped from the
// parameter names in errors.
func decode(body []byte, v any, wrapper string) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeErr(err, wrapper)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return newErr(svc4006, "data after the JSON object")
	}
	return nil
}

func decodeErr(err error, wrapper string) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return newErr(svc4006, fmt.Sprintf("invalid JSON at byte %d: %s", syn.Offset, syn.Error()))
	case errors.As(err, &typ):
		field := strings.TrimPrefix(strings.TrimPrefix(typ.Field, wrapper), ".")
		if field == "" {
			field = wrapper
		}
		return newErr(svc4005, field, fmt.Sprintf("must be %s, not a JSON %s", kindName(typ.Type.Kind().String()), typ.Value))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return newErr(svc4006, "truncated JSON")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return newErr(svc4005, strings.Trim(name, `"`), "unknown parameter")
	}
	return newErr(svc4006, err.Error())
}

func kindName(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int64", "int", "float64":
		return "an integer"
	case "slice":
		return "an array"
	case "struct", "ptr", "map":
		return "an object"
	}
	return "a " + k
}

// appendTN appends the E.164 digits of one TN as given in a request: an
// ATIS-1000082 TN is E.164 already (country code first, no '+'), so it is
// taken as it is (e164.AppendGiven: a leading '+' and the separators
// " -.()" removed, never a default country added; docs/API.md, "Telephone
// numbers"). A refusal is SVC4005 for param, with the TN and the reason.
func appendTN(dst []byte, param, tn string) ([]byte, *apiError) {
	out, err := e164.AppendGiven(dst, tn)
	if err != nil {
		return dst, newErr(svc4005, param, strconv.Quote(tn)+" "+err.Error())
	}
	return out, nil
}

// parseUUID parses an 8-4-4-4-12 hex UUID.
func parseUUID(s string, out *[16]byte) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	j := 0
	for i := 0; i < 36; {
		if s[i] == '-' {
			i++
			continue
		}
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return false
		}
		out[j] = hi<<4 | lo
		j++
		i += 2
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
