package passport

import (
	"bytes"
	"fmt"
)

// ParseSigningInput takes a PASSporT signing input (base64url header "."
// base64url claims, as AppendSigningInput writes it or Identity.SigningInput
// holds it) apart: the protected header, and the claims JSON as signed. A
// remote STI-AS is asked to sign exactly these claims (package stias). It
// allocates.
func ParseSigningInput(input []byte) (ProtectedHeader, []byte, error) {
	var h ProtectedHeader
	hdr, pay, ok := bytes.Cut(input, []byte{'.'})
	if !ok || len(hdr) == 0 || len(pay) == 0 || bytes.IndexByte(pay, '.') >= 0 {
		return h, nil, fmt.Errorf("%w: a signing input is two dot-separated parts", ErrMalformed)
	}
	hj, err := b64.AppendDecode(nil, hdr)
	if err != nil {
		return h, nil, fmt.Errorf("%w (header): %w", ErrBadBase64, err)
	}
	if err := parseHeaderJSON(string(hj), &h); err != nil {
		return h, nil, fmt.Errorf("%w (header)", err)
	}
	claims, err := b64.AppendDecode(nil, pay)
	if err != nil {
		return h, nil, fmt.Errorf("%w (payload): %w", ErrBadBase64, err)
	}
	var p Payload
	if err := parsePayloadJSON(string(claims), &p); err != nil {
		return h, nil, fmt.Errorf("%w (payload)", err)
	}
	return h, claims, nil
}

// SameClaims reports whether two claims JSON objects carry exactly the same
// claims, names and values: equal once both are in the canonical form of
// RFC 8225 section 9 (CanonicalJSON). A claim more or less, or another
// value, is a difference.
func SameClaims(a, b []byte) (bool, error) {
	ca, err := CanonicalJSON(a)
	if err != nil {
		return false, err
	}
	cb, err := CanonicalJSON(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ca, cb), nil
}
