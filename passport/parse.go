package passport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// MaxIdentityLen bounds the Identity header value ParseIdentity accepts.
const MaxIdentityLen = 8 << 10

// Parse and verification errors. ParseIdentity wraps one of these.
var (
	ErrMalformed      = errors.New("passport: malformed Identity header")
	ErrCompactForm    = errors.New("passport: compact form PASSporT (no payload)")
	ErrBadBase64      = errors.New("passport: bad base64url")
	ErrBadJSON        = errors.New("passport: bad JSON")
	ErrUnsupportedAlg = errors.New("passport: unsupported alg")
	ErrUnsupportedPPT = errors.New("passport: unsupported ppt")
	ErrBadSignature   = errors.New("passport: bad signature")
)

// ProtectedHeader is the JOSE header of a PASSporT (RFC 8225 section 4).
type ProtectedHeader struct {
	Alg string `json:"alg"`
	PPT string `json:"ppt,omitempty"`
	Typ string `json:"typ"`
	X5U string `json:"x5u"`
}

// TNOrURI is the value of the orig claim (RFC 8225 section 5.2.1).
type TNOrURI struct {
	TN  string `json:"tn,omitempty"`
	URI string `json:"uri,omitempty"`
}

// DestIDs is the value of the dest claim (RFC 8225 section 5.2.1).
type DestIDs struct {
	TN  []string `json:"tn,omitempty"`
	URI []string `json:"uri,omitempty"`
}

// Payload holds the claims of a SHAKEN PASSporT (RFC 8588 section 6) and the
// optional extension claims, kept as raw JSON.
type Payload struct {
	Attest string          `json:"attest"`
	Dest   DestIDs         `json:"dest"`
	IAT    int64           `json:"iat"`
	Orig   TNOrURI         `json:"orig"`
	OrigID string          `json:"origid"`
	Div    json.RawMessage `json:"div,omitempty"`  // RFC 8946
	RCD    json.RawMessage `json:"rcd,omitempty"`  // RFC 9795
	RCDI   json.RawMessage `json:"rcdi,omitempty"` // RFC 9795
	CRN    string          `json:"crn,omitempty"`  // RFC 9795
}

// Identity is one parsed Identity header value.
type Identity struct {
	Header       ProtectedHeader
	Payload      Payload
	SigningInput []byte // header "." payload, as received
	Signature    []byte // raw, 64 bytes for ES256
	Info         string // info parameter without the angle brackets
	Alg          string // alg parameter, or the header's alg when absent
	PPT          string // ppt parameter, or the header's ppt when absent
	Raw          string // the whole value, trimmed
}

// ParseIdentity parses an Identity header value (RFC 8224 section 4.1):
//
//	<header>.<payload>.<signature>;info=<url>;alg=ES256;ppt=shaken
//
// Parameters may come in any order, with whitespace around ';' and '=' and
// quoted values (ppt="shaken"); unknown parameters are ignored. A missing alg
// or ppt parameter takes the value of the PASSporT header (RFC 8224 section
// 4.1 and RFC 8225 section 8.1). A compact form value (empty payload,
// RFC 8224 section 4.1) is reported with ErrCompactForm: SIP carries the full
// form and this package does not rebuild payloads from SIP.
//
// With ErrUnsupportedAlg or ErrUnsupportedPPT the returned Identity is fully
// parsed, so a caller can skip non-SHAKEN PASSporTs among several headers.
// Any other error returns a nil Identity.
func ParseIdentity(value string) (*Identity, error) {
	id, err := ParseIdentityAny(value)
	if err == nil && id.PPT != PPTShaken {
		return id, fmt.Errorf("%w: %q", ErrUnsupportedPPT, id.PPT)
	}
	return id, err
}

// ParseIdentityAny is ParseIdentity for the PASSporT types this package
// knows: shaken, div (RFC 8946) and rcd (RFC 9795); only another ppt is
// ErrUnsupportedPPT. The type is id.PPT.
func ParseIdentityAny(value string) (*Identity, error) {
	if len(value) > MaxIdentityLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxIdentityLen)
	}
	value = strings.TrimSpace(value)
	token, params, _ := strings.Cut(value, ";")
	token = strings.TrimSpace(token)
	hdr, rest, ok1 := strings.Cut(token, ".")
	pay, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") || hdr == "" || sig == "" {
		return nil, fmt.Errorf("%w: want three dot-separated parts", ErrMalformed)
	}
	if pay == "" {
		return nil, ErrCompactForm
	}
	id := &Identity{Raw: value, SigningInput: []byte(token[:len(hdr)+1+len(pay)])}
	// Both JSON parts and the signature are decoded into one buffer, from
	// the copy in SigningInput; the JSON becomes one string and parsed
	// claims are substrings of it.
	si := id.SigningInput
	buf := make([]byte, 0, b64.DecodedLen(len(hdr))+b64.DecodedLen(len(pay))+b64.DecodedLen(len(sig)))
	buf, err := b64.AppendDecode(buf, si[:len(hdr)])
	if err != nil {
		return nil, fmt.Errorf("%w (header): %w", ErrBadBase64, err)
	}
	nh := len(buf)
	if buf, err = b64.AppendDecode(buf, si[len(hdr)+1:]); err != nil {
		return nil, fmt.Errorf("%w (payload): %w", ErrBadBase64, err)
	}
	js := string(buf)
	if err = parseHeaderJSON(js[:nh], &id.Header); err != nil {
		return nil, fmt.Errorf("%w (header)", err)
	}
	if err = parsePayloadJSON(js[nh:], &id.Payload); err != nil {
		return nil, fmt.Errorf("%w (payload)", err)
	}
	nj := len(buf)
	if buf, err = b64.AppendDecode(buf, []byte(sig)); err != nil {
		return nil, fmt.Errorf("%w (signature): %w", ErrBadBase64, err)
	}
	id.Signature = buf[nj:len(buf):len(buf)]
	var haveAlg, havePPT bool
	for params != "" {
		var p string
		p, params = nextParam(params)
		name, val, _ := strings.Cut(p, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		val = unquote(strings.TrimSpace(val))
		switch name {
		case "info":
			if len(val) < 2 || val[0] != '<' || val[len(val)-1] != '>' {
				return nil, fmt.Errorf("%w: info parameter not in angle brackets", ErrMalformed)
			}
			id.Info = val[1 : len(val)-1]
		case "alg":
			id.Alg, haveAlg = val, true
		case "ppt":
			id.PPT, havePPT = val, true
		}
	}
	if id.Info == "" {
		return nil, fmt.Errorf("%w: no info parameter", ErrMalformed)
	}
	if !haveAlg {
		id.Alg = id.Header.Alg
	}
	if !havePPT {
		id.PPT = id.Header.PPT
	}
	if id.Alg != "ES256" || id.Header.Alg != "ES256" {
		return id, fmt.Errorf("%w: %q (header %q)", ErrUnsupportedAlg, id.Alg, id.Header.Alg)
	}
	if id.PPT != id.Header.PPT {
		return nil, fmt.Errorf("%w: ppt parameter %q differs from header ppt %q", ErrMalformed, id.PPT, id.Header.PPT)
	}
	switch id.PPT {
	case PPTShaken, PPTDiv, PPTRCD:
		return id, nil
	}
	return id, fmt.Errorf("%w: %q", ErrUnsupportedPPT, id.PPT)
}

// nextParam splits off the first ';'-separated parameter; a ';' inside
// <...> or "..." does not separate.
func nextParam(s string) (param, rest string) {
	inAngle, inQuote := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case c == '"':
			inQuote = true
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case c == ';' && !inAngle:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		if strings.Contains(s, `\`) {
			var b strings.Builder
			for i := 0; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			s = b.String()
		}
	}
	return s
}

// VerifySignature checks the ES256 signature (raw r||s, RFC 7518 section
// 3.4) of id against pub, a P-256 key.
func VerifySignature(pub *ecdsa.PublicKey, id *Identity) error {
	if pub == nil || pub.Curve != elliptic.P256() {
		return fmt.Errorf("%w: key is not P-256", ErrBadSignature)
	}
	if len(id.Signature) != 64 {
		return fmt.Errorf("%w: %d bytes, want 64", ErrBadSignature, len(id.Signature))
	}
	digest := sha256.Sum256(id.SigningInput)
	r := new(big.Int).SetBytes(id.Signature[:32])
	s := new(big.Int).SetBytes(id.Signature[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return ErrBadSignature
	}
	return nil
}
