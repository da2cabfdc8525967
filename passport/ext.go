package passport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// shakenClaims are the claim names AppendSigningInputJSON writes itself.
var shakenClaims = map[string]bool{"attest": true, "dest": true, "iat": true, "orig": true, "origid": true}

// extAllowed lists, per PASSporT type, the extension claims
// AppendSigningInputJSON takes and the one it requires (""; none).
var extAllowed = map[string]struct {
	allowed  map[string]bool
	required string
}{
	// A div claim makes a div PASSporT (RFC 8946 section 3), not a
	// shaken one with a div claim.
	PPTShaken: {map[string]bool{"crn": true, "rcd": true, "rcdi": true}, ""},
	PPTDiv:    {map[string]bool{"div": true}, "div"},
	PPTRCD:    {map[string]bool{"crn": true, "rcd": true, "rcdi": true}, "rcd"},
}

// AppendSigningInputJSON is AppendSigningInput with extension claims, for
// the HTTP signing API (ATIS-1000082 signingRequest) and `appliance sign`:
// ext maps claim names to JSON values. What b's PASSporT type takes:
//
//   - shaken: the SHAKEN claims of c and crn, rcd and rcdi (RFC 9795, in
//     the shaken PASSporT as ATIS-1000094 has it);
//   - div (RFC 8946): orig, dest and iat of c and div, which is required;
//     no attest or origid;
//   - rcd (RFC 9795): orig, dest and iat of c and rcd (required), crn and
//     rcdi.
//
// Each value is re-encoded canonically (object keys sorted, no
// whitespace, RFC 8225 section 9) and merged with the claims of c so the
// whole payload stays in lexicographic key order. A name that is one of
// the SHAKEN claims, one the type does not take, a missing required claim
// or a value that is not valid JSON is an ErrBadClaims error. It
// allocates; not for the packet path.
func (b *Builder) AppendSigningInputJSON(dst []byte, c *Claims, ext map[string]json.RawMessage) ([]byte, error) {
	rules := extAllowed[b.ppt]
	if b.ppt == PPTShaken {
		if err := checkAttest(c.Attest); err != nil {
			return dst, err
		}
	}
	claims := make(map[string][]byte, 5+len(ext))
	for k, v := range ext {
		if shakenClaims[k] {
			return dst, fmt.Errorf("%w: extension claim %q is a SHAKEN claim", ErrBadClaims, k)
		}
		if !rules.allowed[k] {
			return dst, fmt.Errorf("%w: a %s PASSporT does not take the claim %q", ErrBadClaims, b.ppt, k)
		}
		cv, err := CanonicalJSON(v)
		if err != nil {
			return dst, fmt.Errorf("%w: claim %q: %w", ErrBadClaims, k, err)
		}
		claims[k] = cv
	}
	if rules.required != "" && claims[rules.required] == nil {
		return dst, fmt.Errorf("%w: a %s PASSporT needs the claim %q", ErrBadClaims, b.ppt, rules.required)
	}
	d := []byte(`{"tn":[`)
	for i, tn := range c.Dest {
		if i > 0 {
			d = append(d, ',')
		}
		d = appendJSONBytes(d, tn)
	}
	claims["dest"] = append(d, ']', '}')
	claims["iat"] = strconv.AppendInt(nil, c.IAT, 10)
	claims["orig"] = append(appendJSONBytes([]byte(`{"tn":`), c.Orig), '}')
	if b.ppt == PPTShaken {
		claims["attest"] = []byte{'"', c.Attest, '"'}
		claims["origid"] = append(AppendOrigID([]byte{'"'}, c.OrigID), '"')
	}

	keys := make([]string, 0, len(claims))
	for k := range claims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	js := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			js = append(js, ',')
		}
		js = appendJSONString(js, k)
		js = append(js, ':')
		js = append(js, claims[k]...)
	}
	js = append(js, '}')

	dst = append(dst, b.hdrB64...)
	dst = append(dst, '.')
	return b64.AppendEncode(dst, js), nil
}

// SignExt is Sign with extension claims (see AppendSigningInputJSON), for
// a PASSporT of b's type.
func SignExt(ctx context.Context, s SignDigester, b *Builder, c *Claims, ext map[string]json.RawMessage) (string, error) {
	si, err := b.AppendSigningInputJSON(nil, c, ext)
	if err != nil {
		return "", err
	}
	return signInput(ctx, s, b, si)
}

// SignDiv builds and signs a div PASSporT (b made with PPTDiv) and
// returns the Identity header value. For the CLI and tests.
func SignDiv(ctx context.Context, s SignDigester, b *Builder, d *DivClaims) (string, error) {
	if b.ppt != PPTDiv {
		return "", fmt.Errorf("%w: a div PASSporT needs a div builder, not %s", ErrBadClaims, b.ppt)
	}
	return signInput(ctx, s, b, b.AppendDivSigningInput(nil, d))
}

// SignRCD builds and signs an rcd PASSporT (b made with PPTRCD) for the
// orig, dest, iat and RCD claims of c.
func SignRCD(ctx context.Context, s SignDigester, b *Builder, c *Claims) (string, error) {
	if b.ppt != PPTRCD || c.RCD == nil || len(c.RCD.RCD) == 0 {
		return "", fmt.Errorf("%w: an rcd PASSporT needs an rcd builder and an rcd claim", ErrBadClaims)
	}
	return signInput(ctx, s, b, b.AppendRCDSigningInput(nil, c))
}

// CanonicalJSON re-encodes one JSON value in the PASSporT canonical form of
// RFC 8225 section 9: no insignificant whitespace, object members in
// lexicographic order of their names, strings escaped minimally, numbers
// kept as written.
func CanonicalJSON(v []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadJSON, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrBadJSON)
	}
	return appendCanonical(nil, x), nil
}

func appendCanonical(dst []byte, x any) []byte {
	switch v := x.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, v)
	case json.Number:
		return append(dst, v...)
	case string:
		return appendJSONUnicode(dst, v)
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonical(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONUnicode(dst, k)
			dst = append(dst, ':')
			dst = appendCanonical(dst, v[k])
		}
		return append(dst, '}')
	}
	panic(fmt.Sprintf("passport: unexpected JSON type %T", x))
}

// appendJSONUnicode is appendJSONString for decoded text, which encoding/json
// has already made valid UTF-8; it is copied as UTF-8, not \u-escaped.
func appendJSONUnicode(dst []byte, s string) []byte { return appendJSONStr(dst, s) }
