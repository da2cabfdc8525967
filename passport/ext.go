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

// AppendSigningInputJSON is AppendSigningInput with extension claims, for the
// HTTP signing API (ATIS-1000082 signingRequest): ext maps claim names to
// JSON values, for example "div" (RFC 8946), "rcd", "rcdi" and "crn"
// (RFC 9795). Each value is re-encoded canonically (object keys sorted,
// no whitespace, RFC 8225 section 9) and merged with the SHAKEN claims so the
// whole payload stays in lexicographic key order. A name that is one of the
// SHAKEN claims (attest, dest, iat, orig, origid) or a value that is not
// valid JSON is an ErrBadClaims error. It allocates; not for the packet path.
func (b *Builder) AppendSigningInputJSON(dst []byte, c *Claims, ext map[string]json.RawMessage) ([]byte, error) {
	if err := checkAttest(c.Attest); err != nil {
		return dst, err
	}
	claims := make(map[string][]byte, 5+len(ext))
	for k, v := range ext {
		if shakenClaims[k] {
			return dst, fmt.Errorf("%w: extension claim %q is a SHAKEN claim", ErrBadClaims, k)
		}
		cv, err := CanonicalJSON(v)
		if err != nil {
			return dst, fmt.Errorf("%w: claim %q: %w", ErrBadClaims, k, err)
		}
		claims[k] = cv
	}
	claims["attest"] = []byte{'"', c.Attest, '"'}
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
	claims["origid"] = append(AppendOrigID([]byte{'"'}, c.OrigID), '"')

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

// SignExt is Sign with extension claims (see AppendSigningInputJSON).
func SignExt(ctx context.Context, s SignDigester, b *Builder, c *Claims, ext map[string]json.RawMessage) (string, error) {
	si, err := b.AppendSigningInputJSON(nil, c, ext)
	if err != nil {
		return "", err
	}
	return signInput(ctx, s, b, si)
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
