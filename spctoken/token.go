package spctoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/shakenline/shakenline/tnauth"
)

// Errors. Every failure of Parse, Verify and Check wraps ErrToken or one
// of the more specific errors below.
var (
	ErrToken       = errors.New("spctoken: bad SPC token")
	ErrSignature   = errors.New("spctoken: SPC token signature does not verify with the STI-PA key")
	ErrExpired     = errors.New("spctoken: SPC token expired")
	ErrFingerprint = errors.New("spctoken: SPC token bound to another ACME account key")
	ErrTNAuthList  = errors.New("spctoken: SPC token authorises another TNAuthList")
)

// TkType is the atc tktype of a TNAuthList token (RFC 9448 section 5).
const TkType = "TNAuthList"

// ATC is the atc claim (RFC 9447 section 4, RFC 9448 section 5).
type ATC struct {
	TkType      string `json:"tktype"`
	TkValue     string `json:"tkvalue"`
	CA          bool   `json:"ca"`
	Fingerprint string `json:"fingerprint"`
}

// Claims is the token payload.
type Claims struct {
	Iat int64  `json:"iat,omitempty"`
	Exp int64  `json:"exp"`
	Iss string `json:"iss,omitempty"`
	Jti string `json:"jti,omitempty"`
	ATC ATC    `json:"atc"`
}

// Header is the token's JOSE header.
type Header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	X5U string `json:"x5u,omitempty"`
}

var b64 = base64.RawURLEncoding

// Fingerprint is the ATIS-1000080 account key fingerprint: "SHA256 " and
// the colon-separated upper-case hex SHA-256 of the DER
// SubjectPublicKeyInfo of pub.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("spctoken: %w", err)
	}
	sum := sha256.Sum256(der)
	var b strings.Builder
	b.WriteString("SHA256 ")
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String(), nil
}

// TkValue encodes a TNAuthList for tkvalue and the ACME identifier value:
// base64 (standard alphabet, padded) of its DER, as STI-PAs issue it.
func TkValue(l tnauth.List) (string, error) {
	der, err := tnauth.Marshal(l)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// DecodeTkValue decodes a tkvalue or TNAuthList identifier value: base64
// of the DER in the standard or the URL alphabet, padded or not (ATIS
// practice is standard base64, RFC 9448 writes base64url). It returns the
// DER and the parsed list.
func DecodeTkValue(v string) ([]byte, tnauth.List, error) {
	v = strings.TrimSpace(v)
	var der []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if der, err = enc.DecodeString(v); err == nil {
			break
		}
	}
	if err != nil {
		return nil, tnauth.List{}, fmt.Errorf("%w: tkvalue is not base64", ErrToken)
	}
	l, err := tnauth.Parse(der)
	if err != nil {
		return nil, tnauth.List{}, fmt.Errorf("%w: tkvalue: %w", ErrToken, err)
	}
	return der, l, nil
}

// Sign returns c as a compact ES256 JWT signed with key, header
// {"alg":"ES256","typ":"JWT","x5u":x5u}. For a lab STI-PA.
func Sign(c Claims, key *ecdsa.PrivateKey, x5u string) (string, error) {
	hdr, err := json.Marshal(Header{Alg: "ES256", Typ: "JWT", X5U: x5u})
	if err != nil {
		return "", fmt.Errorf("spctoken: %w", err)
	}
	pay, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("spctoken: %w", err)
	}
	si := b64.EncodeToString(hdr) + "." + b64.EncodeToString(pay)
	d := sha256.Sum256([]byte(si))
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		return "", fmt.Errorf("spctoken: %w", err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return si + "." + b64.EncodeToString(sig[:]), nil
}

// Token is a parsed, not yet verified, SPC token.
type Token struct {
	Raw    string
	Header Header
	Claims Claims
	input  string   // signing input
	sig    [64]byte // r||s
}

// MaxLen bounds a token Parse accepts.
const MaxLen = 16 << 10

// Parse decodes a compact JWT without checking its signature.
func Parse(tok string) (*Token, error) {
	tok = strings.TrimSpace(tok)
	if len(tok) > MaxLen {
		return nil, fmt.Errorf("%w: over %d bytes", ErrToken, MaxLen)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: want three dot-separated parts", ErrToken)
	}
	t := &Token{Raw: tok, input: parts[0] + "." + parts[1]}
	hb, err := b64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &t.Header) != nil {
		return nil, fmt.Errorf("%w: header", ErrToken)
	}
	if t.Header.Alg != "ES256" {
		return nil, fmt.Errorf("%w: alg %q, want ES256", ErrToken, t.Header.Alg)
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil || json.Unmarshal(pb, &t.Claims) != nil {
		return nil, fmt.Errorf("%w: payload", ErrToken)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return nil, fmt.Errorf("%w: signature encoding", ErrToken)
	}
	copy(t.sig[:], sig)
	return t, nil
}

// VerifySignature checks t's ES256 signature with pub (the STI-PA's key).
func (t *Token) VerifySignature(pub *ecdsa.PublicKey) error {
	if pub == nil || pub.Curve != elliptic.P256() {
		return fmt.Errorf("%w: STI-PA key is not P-256", ErrSignature)
	}
	d := sha256.Sum256([]byte(t.input))
	r, s := new(big.Int).SetBytes(t.sig[:32]), new(big.Int).SetBytes(t.sig[32:])
	if !ecdsa.Verify(pub, d[:], r, s) {
		return ErrSignature
	}
	return nil
}

// Want is what Check requires of a token.
type Want struct {
	TNAuthList  []byte    // DER of the TNAuthList the token must authorise
	Fingerprint string    // Fingerprint of the ACME account key
	Now         time.Time // default time.Now()
	MinLife     time.Duration
}

// Check validates t's claims against w: tktype TNAuthList, ca false, the
// TNAuthList w names, w's fingerprint, exp later than now + MinLife. It
// does not check the signature (the CA does, with the STI-PA's key).
func (t *Token) Check(w Want) error {
	c := t.Claims
	if c.ATC.TkType != TkType {
		return fmt.Errorf("%w: tktype %q, want %s", ErrToken, c.ATC.TkType, TkType)
	}
	if c.ATC.CA {
		return fmt.Errorf("%w: ca is true (a token for a CA certificate)", ErrToken)
	}
	der, _, err := DecodeTkValue(c.ATC.TkValue)
	if err != nil {
		return err
	}
	if w.TNAuthList != nil && string(der) != string(w.TNAuthList) {
		return ErrTNAuthList
	}
	if w.Fingerprint != "" && !strings.EqualFold(strings.TrimSpace(c.ATC.Fingerprint), w.Fingerprint) {
		return ErrFingerprint
	}
	now := w.Now
	if now.IsZero() {
		now = time.Now()
	}
	if c.Exp == 0 || now.Add(w.MinLife).Unix() >= c.Exp {
		return fmt.Errorf("%w: exp %s", ErrExpired, time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// Redacted is how a token may appear in a log line: its jti and expiry,
// never the token itself.
func (t *Token) Redacted() string {
	return fmt.Sprintf("jti=%s exp=%s", t.Claims.Jti, time.Unix(t.Claims.Exp, 0).UTC().Format(time.RFC3339))
}
