package passport

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
)

// b64 is the JWS base64url alphabet without padding (RFC 7515 section 2).
var b64 = base64.RawURLEncoding

// Build errors.
var (
	// ErrBadX5U reports an x5u URL that cannot be placed in a header: empty,
	// or containing whitespace, control characters, '<' or '>'.
	ErrBadX5U = errors.New("passport: bad x5u URL")
	// ErrBadClaims reports claims that cannot be encoded (attest not A/B/C,
	// an extension claim that is not a JSON object member or that collides
	// with a SHAKEN claim).
	ErrBadClaims = errors.New("passport: bad claims")
)

// PASSporT types (the ppt header and Identity parameter, RFC 8225 section
// 8.1) this package builds.
const (
	PPTShaken = "shaken" // RFC 8588
	PPTDiv    = "div"    // RFC 8946
	PPTRCD    = "rcd"    // RFC 9795
)

// Claims are the SHAKEN claims of RFC 8588 section 6 in the form the signing
// path produces them: numbers as bytes (usually slices of a SIP message),
// never converted to strings.
type Claims struct {
	Attest byte     // 'A', 'B' or 'C'
	Orig   []byte   // E.164 digits, no '+'
	Dest   [][]byte // E.164 digits, no '+'
	IAT    int64    // seconds since the Unix epoch
	OrigID [16]byte // random bytes; formatted as a version 4 UUID
	// RCD, when not nil, adds the Rich Call Data claims (RFC 9795) to
	// the PASSporT: crn, rcd and rcdi in the shaken PASSporT
	// (ATIS-1000094), or the claims of an rcd PASSporT
	// (AppendRCDSigningInput).
	RCD *RCDClaims
}

// RCDClaims are the Rich Call Data claims (RFC 9795) as canonical JSON
// values, prepared once (when the policy loads) and shared by every call
// signed with them. Empty fields are left out of the PASSporT.
type RCDClaims struct {
	CRN  []byte // the crn value: a JSON string (the call reason)
	RCD  []byte // the rcd value: a JSON object (nam, icn, jcl, jcd)
	RCDI []byte // the rcdi value: a JSON object of digests, keyed by JSON pointer
}

// len returns the bytes the RCD claims add to a payload, names, commas
// and colons included.
func (r *RCDClaims) len() int {
	if r == nil {
		return 0
	}
	n := 0
	if len(r.CRN) > 0 {
		n += len(`"crn":,`) + len(r.CRN)
	}
	if len(r.RCD) > 0 {
		n += len(`,"rcd":`) + len(r.RCD)
	}
	if len(r.RCDI) > 0 {
		n += len(`,"rcdi":`) + len(r.RCDI)
	}
	return n
}

// DivClaims are the claims of a div PASSporT (RFC 8946 section 3):
// orig copied from the PASSporT of the call as received, dest the new
// target, div the target the call was diverted from.
type DivClaims struct {
	Orig []byte   // the orig tn of the diverted call's PASSporT, as it has it
	Dest [][]byte // the new target: E.164 digits, no '+'
	Div  []byte   // the previous target: E.164 digits, no '+'
	IAT  int64
}

// Builder holds everything that depends only on the x5u URL and the
// PASSporT type. It is immutable and safe for concurrent use.
type Builder struct {
	x5u    string
	ppt    string
	hdrB64 []byte // base64url of the protected header JSON
	suffix []byte // ";info=<x5u>;alg=ES256;ppt=<ppt>"
}

// NewBuilder validates x5u and precomputes the protected header
// {"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"<x5u>"} (RFC 8588
// section 4) and the Identity header parameters (RFC 8224 section 4.1).
func NewBuilder(x5u string) (*Builder, error) { return NewBuilderPPT(x5u, PPTShaken) }

// NewBuilderPPT is NewBuilder for the PASSporT type ppt: PPTShaken,
// PPTDiv or PPTRCD.
func NewBuilderPPT(x5u, ppt string) (*Builder, error) {
	switch ppt {
	case PPTShaken, PPTDiv, PPTRCD:
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedPPT, ppt)
	}
	if x5u == "" {
		return nil, ErrBadX5U
	}
	for i := 0; i < len(x5u); i++ {
		c := x5u[i]
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' {
			return nil, fmt.Errorf("%w: byte %q at %d", ErrBadX5U, c, i)
		}
	}
	hdr := HeaderJSONPPT(x5u, ppt)
	b := &Builder{
		x5u:    x5u,
		ppt:    ppt,
		hdrB64: b64.AppendEncode(nil, hdr),
		suffix: []byte(";info=<" + x5u + ">;alg=ES256;ppt=" + ppt),
	}
	return b, nil
}

// HeaderJSON returns the canonical protected header JSON of a shaken
// PASSporT for x5u.
func HeaderJSON(x5u string) []byte { return HeaderJSONPPT(x5u, PPTShaken) }

// HeaderJSONPPT returns the canonical protected header JSON of a PASSporT
// of type ppt for x5u.
func HeaderJSONPPT(x5u, ppt string) []byte {
	h := []byte(`{"alg":"ES256","ppt":`)
	h = appendJSONString(h, ppt)
	h = append(h, `,"typ":"passport","x5u":`...)
	h = appendJSONString(h, x5u)
	return append(h, '}')
}

// X5U returns the certificate URL the Builder was made with.
func (b *Builder) X5U() string { return b.x5u }

// PPT returns the PASSporT type the Builder builds.
func (b *Builder) PPT() string { return b.ppt }

// HeaderB64 returns the base64url protected header (do not modify).
func (b *Builder) HeaderB64() []byte { return b.hdrB64 }

// Suffix returns the Identity header parameters
// ";info=<x5u>;alg=ES256;ppt=<ppt>" (do not modify).
func (b *Builder) Suffix() []byte { return b.suffix }

// PayloadJSONLen returns the exact length of the canonical claims JSON that
// AppendPayloadJSON writes for c.
func PayloadJSONLen(c *Claims) int {
	// {"attest":"A","dest":{"tn":[ ... ]},"iat":N,"orig":{"tn":"..."},"origid":"<36>"}
	n := len(`{"attest":"A","dest":{"tn":[]},"iat":,"orig":{"tn":""},"origid":""}`) + 36
	n += destLen(c.Dest)
	n += jsonStringLen(c.Orig) - 2
	var tmp [20]byte
	n += len(strconv.AppendInt(tmp[:0], c.IAT, 10))
	return n + c.RCD.len()
}

func destLen(dest [][]byte) int {
	n := 0
	for i, d := range dest {
		if i > 0 {
			n++
		}
		n += jsonStringLen(d)
	}
	return n
}

// SigningInputCap returns the capacity AppendSigningInput needs beyond
// len(dst) to run without allocating.
func (b *Builder) SigningInputCap(c *Claims) int {
	n := PayloadJSONLen(c)
	return len(b.hdrB64) + 1 + b64.EncodedLen(n) + n
}

// IdentityLen returns the length AppendIdentity adds for a signing input of
// length n.
func (b *Builder) IdentityLen(n int) int {
	return n + 1 + b64.EncodedLen(64) + len(b.suffix)
}

// AppendPayloadJSON appends the canonical SHAKEN claims JSON
// {"attest":"A","dest":{"tn":[...]},"iat":N,"orig":{"tn":"..."},"origid":"uuid"},
// with c.RCD's claims in their places of the lexicographic order
// (attest, crn, dest, iat, orig, origid, rcd, rcdi).
func AppendPayloadJSON(dst []byte, c *Claims) []byte {
	dst = append(dst, `{"attest":"`...)
	dst = append(dst, c.Attest)
	dst = append(dst, '"', ',')
	if c.RCD != nil && len(c.RCD.CRN) > 0 {
		dst = append(dst, `"crn":`...)
		dst = append(dst, c.RCD.CRN...)
		dst = append(dst, ',')
	}
	dst = appendDest(dst, c.Dest)
	dst = append(dst, `,"iat":`...)
	dst = strconv.AppendInt(dst, c.IAT, 10)
	dst = append(dst, `,"orig":{"tn":`...)
	dst = appendJSONBytes(dst, c.Orig)
	dst = append(dst, `},"origid":"`...)
	dst = AppendOrigID(dst, c.OrigID)
	dst = append(dst, '"')
	if c.RCD != nil {
		dst = appendRCDTail(dst, c.RCD)
	}
	return append(dst, '}')
}

// appendDest appends "dest":{"tn":[...]}.
func appendDest(dst []byte, dest [][]byte) []byte {
	dst = append(dst, `"dest":{"tn":[`...)
	for i, d := range dest {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONBytes(dst, d)
	}
	return append(dst, ']', '}')
}

// appendRCDTail appends ,"rcd":{...},"rcdi":{...} (those that are set).
func appendRCDTail(dst []byte, r *RCDClaims) []byte {
	if len(r.RCD) > 0 {
		dst = append(dst, `,"rcd":`...)
		dst = append(dst, r.RCD...)
	}
	if len(r.RCDI) > 0 {
		dst = append(dst, `,"rcdi":`...)
		dst = append(dst, r.RCDI...)
	}
	return dst
}

// AppendDivPayloadJSON appends the canonical claims JSON of a div
// PASSporT (RFC 8946 section 3):
// {"dest":{"tn":[...]},"div":{"tn":"..."},"iat":N,"orig":{"tn":"..."}}.
func AppendDivPayloadJSON(dst []byte, d *DivClaims) []byte {
	dst = append(dst, '{')
	dst = appendDest(dst, d.Dest)
	dst = append(dst, `,"div":{"tn":`...)
	dst = appendJSONBytes(dst, d.Div)
	dst = append(dst, `},"iat":`...)
	dst = strconv.AppendInt(dst, d.IAT, 10)
	dst = append(dst, `,"orig":{"tn":`...)
	dst = appendJSONBytes(dst, d.Orig)
	return append(dst, '}', '}')
}

// DivPayloadJSONLen is the length AppendDivPayloadJSON writes for d.
func DivPayloadJSONLen(d *DivClaims) int {
	n := len(`{"dest":{"tn":[]},"div":{"tn":},"iat":,"orig":{"tn":}}`)
	n += destLen(d.Dest) + jsonStringLen(d.Div) + jsonStringLen(d.Orig)
	var tmp [20]byte
	return n + len(strconv.AppendInt(tmp[:0], d.IAT, 10))
}

// AppendDivSigningInput is AppendSigningInput for a div PASSporT (b made
// with PPTDiv). It does not allocate when
// cap(dst)-len(dst) >= b.DivSigningInputCap(d).
func (b *Builder) AppendDivSigningInput(dst []byte, d *DivClaims) []byte {
	dst = append(dst, b.hdrB64...)
	dst = append(dst, '.')
	return appendB64Tail(AppendDivPayloadJSON(dst, d), len(dst))
}

// DivSigningInputCap is SigningInputCap for AppendDivSigningInput.
func (b *Builder) DivSigningInputCap(d *DivClaims) int {
	n := DivPayloadJSONLen(d)
	return len(b.hdrB64) + 1 + b64.EncodedLen(n) + n
}

// AppendRCDPayloadJSON appends the canonical claims JSON of an rcd
// PASSporT (RFC 9795): orig, dest and iat of c and its RCD claims,
// {"crn":...,"dest":{"tn":[...]},"iat":N,"orig":{"tn":"..."},"rcd":{...},"rcdi":{...}};
// no attest or origid (those are the shaken PASSporT's).
func AppendRCDPayloadJSON(dst []byte, c *Claims) []byte {
	dst = append(dst, '{')
	if c.RCD != nil && len(c.RCD.CRN) > 0 {
		dst = append(dst, `"crn":`...)
		dst = append(dst, c.RCD.CRN...)
		dst = append(dst, ',')
	}
	dst = appendDest(dst, c.Dest)
	dst = append(dst, `,"iat":`...)
	dst = strconv.AppendInt(dst, c.IAT, 10)
	dst = append(dst, `,"orig":{"tn":`...)
	dst = appendJSONBytes(dst, c.Orig)
	dst = append(dst, '}')
	if c.RCD != nil {
		dst = appendRCDTail(dst, c.RCD)
	}
	return append(dst, '}')
}

// RCDPayloadJSONLen is the length AppendRCDPayloadJSON writes for c.
func RCDPayloadJSONLen(c *Claims) int {
	n := len(`{"dest":{"tn":[]},"iat":,"orig":{"tn":}}`) + destLen(c.Dest) + jsonStringLen(c.Orig)
	var tmp [20]byte
	return n + len(strconv.AppendInt(tmp[:0], c.IAT, 10)) + c.RCD.len()
}

// AppendRCDSigningInput is AppendSigningInput for an rcd PASSporT (b
// made with PPTRCD). It does not allocate when
// cap(dst)-len(dst) >= b.RCDSigningInputCap(c).
func (b *Builder) AppendRCDSigningInput(dst []byte, c *Claims) []byte {
	dst = append(dst, b.hdrB64...)
	dst = append(dst, '.')
	return appendB64Tail(AppendRCDPayloadJSON(dst, c), len(dst))
}

// RCDSigningInputCap is SigningInputCap for AppendRCDSigningInput.
func (b *Builder) RCDSigningInputCap(c *Claims) int {
	n := RCDPayloadJSONLen(c)
	return len(b.hdrB64) + 1 + b64.EncodedLen(n) + n
}

// AppendSigningInput appends base64url(header) "." base64url(claims JSON),
// the JWS signing input (RFC 7515 section 5.1). It does not allocate when
// cap(dst)-len(dst) >= b.SigningInputCap(c).
func (b *Builder) AppendSigningInput(dst []byte, c *Claims) []byte {
	dst = append(dst, b.hdrB64...)
	dst = append(dst, '.')
	return appendB64Tail(AppendPayloadJSON(dst, c), len(dst))
}

// appendB64Tail base64url-encodes buf[start:] in place inside buf's spare
// capacity: the raw bytes are encoded behind themselves and moved down.
func appendB64Tail(buf []byte, start int) []byte {
	n := len(buf) - start
	e := b64.EncodedLen(n)
	if cap(buf) < start+n+e {
		nb := make([]byte, len(buf), start+n+e)
		copy(nb, buf)
		buf = nb
	}
	buf = buf[:start+n+e]
	b64.Encode(buf[start+n:], buf[start:start+n])
	copy(buf[start:], buf[start+n:start+n+e])
	return buf[:start+e]
}

// AppendIdentity appends the full Identity header value:
// signingInput "." base64url(sig) ";info=<x5u>;alg=ES256;ppt=shaken".
// sig is the raw ES256 signature r||s (RFC 7518 section 3.4).
func (b *Builder) AppendIdentity(dst, signingInput []byte, sig *[64]byte) []byte {
	dst = append(dst, signingInput...)
	dst = append(dst, '.')
	dst = b64.AppendEncode(dst, sig[:])
	return append(dst, b.suffix...)
}

const hexDigits = "0123456789abcdef"

// AppendOrigID appends id as a lowercase 8-4-4-4-12 UUID with the version 4
// and RFC 9562 variant bits set.
func AppendOrigID(dst []byte, id [16]byte) []byte {
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	for i, x := range id {
		switch i {
		case 4, 6, 8, 10:
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[x>>4], hexDigits[x&0x0f])
	}
	return dst
}

// OrigIDString formats id as AppendOrigID does.
func OrigIDString(id [16]byte) string {
	return string(AppendOrigID(make([]byte, 0, 36), id))
}

// SignDigester is the signing half of hsm.Signer.
type SignDigester interface {
	SignDigest(ctx context.Context, digest *[32]byte, sig *[64]byte) error
}

// Sign builds the PASSporT for c, signs the SHA-256 of its signing input with
// s and returns the Identity header value. For the CLI and the HTTP API; the
// packet path uses the Append functions with pooled buffers.
func Sign(ctx context.Context, s interface {
	SignDigest(context.Context, *[32]byte, *[64]byte) error
}, b *Builder, c *Claims) (string, error) {
	if err := checkAttest(c.Attest); err != nil {
		return "", err
	}
	if b.ppt != PPTShaken {
		return "", fmt.Errorf("%w: Sign builds a shaken PASSporT, not %s (SignDiv, SignRCD)", ErrBadClaims, b.ppt)
	}
	si := b.AppendSigningInput(make([]byte, 0, b.SigningInputCap(c)), c)
	return signInput(ctx, s, b, si)
}

func signInput(ctx context.Context, s SignDigester, b *Builder, si []byte) (string, error) {
	digest := sha256.Sum256(si)
	var sig [64]byte
	if err := s.SignDigest(ctx, &digest, &sig); err != nil {
		return "", fmt.Errorf("passport: sign: %w", err)
	}
	return string(b.AppendIdentity(make([]byte, 0, b.IdentityLen(len(si))), si, &sig)), nil
}

func checkAttest(a byte) error {
	switch a {
	case 'A', 'B', 'C':
		return nil
	}
	return fmt.Errorf("%w: attest %q", ErrBadClaims, a)
}

// jsonStringLen is the encoded length of s as a JSON string, quotes included.
func jsonStringLen[S ~string | ~[]byte](s S) int {
	n := 2
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
			n += 2
		case c < 0x20 || c == 0x7f:
			n += 6
		default:
			n++
		}
	}
	return n
}

func appendJSONBytes(dst, s []byte) []byte { return appendJSONStr(dst, s) }

func appendJSONString(dst []byte, s string) []byte { return appendJSONStr(dst, s) }

// appendJSONStr appends s as a JSON string (RFC 8259 section 7): quote,
// backslash and control characters escaped, '/' and non-ASCII bytes as is.
// Bytes >= 0x80 are copied unchanged; callers pass ASCII (digits, URLs).
func appendJSONStr[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			if c < 0x20 || c == 0x7f {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			} else {
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '"')
}
