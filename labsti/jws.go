package labsti

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

var b64 = base64.RawURLEncoding

// jwsMessage is an RFC 8555 section 6.2 request body: a flattened JWS.
type jwsMessage struct {
	Protected string `json:"protected"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

type protectedHeader struct {
	Alg   string          `json:"alg"`
	Nonce string          `json:"nonce"`
	URL   string          `json:"url"`
	KID   string          `json:"kid"`
	JWK   json.RawMessage `json:"jwk"`
}

// jwk is the public part of an account key (RFC 7517/7518).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

var errJWS = errors.New("malformed JWS")

// parseJWK decodes an EC (P-256, P-384) or RSA public JWK.
func parseJWK(raw json.RawMessage) (crypto.PublicKey, error) {
	var k jwk
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("%w: jwk: %w", errJWS, err)
	}
	switch k.Kty {
	case "EC":
		var c elliptic.Curve
		switch k.Crv {
		case "P-256":
			c = elliptic.P256()
		case "P-384":
			c = elliptic.P384()
		default:
			return nil, fmt.Errorf("%w: curve %q", errJWS, k.Crv)
		}
		x, err1 := b64.DecodeString(k.X)
		y, err2 := b64.DecodeString(k.Y)
		size := (c.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, fmt.Errorf("%w: EC coordinates", errJWS)
		}
		pt := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(c, pt)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errJWS, err)
		}
		return pub, nil
	case "RSA":
		n, err1 := b64.DecodeString(k.N)
		e, err2 := b64.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("%w: RSA key", errJWS)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	}
	return nil, fmt.Errorf("%w: kty %q", errJWS, k.Kty)
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url): the
// account's identity in this server.
func thumbprint(pub crypto.PublicKey) (string, error) {
	var s string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		b, err := k.Bytes()
		if err != nil {
			return "", err
		}
		s = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, k.Curve.Params().Name,
			b64.EncodeToString(b[1:1+size]), b64.EncodeToString(b[1+size:]))
	case *rsa.PublicKey:
		s = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, b64.EncodeToString(big.NewInt(int64(k.E)).Bytes()), b64.EncodeToString(k.N.Bytes()))
	default:
		return "", fmt.Errorf("%w: key type", errJWS)
	}
	h := sha256.Sum256([]byte(s))
	return b64.EncodeToString(h[:]), nil
}

// verifyJWS checks sig over input with pub for alg (ES256, ES384, RS256).
func verifyJWS(alg string, pub crypto.PublicKey, input, sig []byte) error {
	switch alg {
	case "ES256", "ES384":
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s with a non-EC key", errJWS, alg)
		}
		var d []byte
		size := 32
		if alg == "ES256" {
			if k.Curve != elliptic.P256() {
				return fmt.Errorf("%w: ES256 needs P-256", errJWS)
			}
			h := sha256.Sum256(input)
			d = h[:]
		} else {
			if k.Curve != elliptic.P384() {
				return fmt.Errorf("%w: ES384 needs P-384", errJWS)
			}
			h := sha512.Sum384(input)
			d, size = h[:], 48
		}
		if len(sig) != 2*size {
			return fmt.Errorf("%w: signature length", errJWS)
		}
		if !ecdsa.Verify(k, d, new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])) {
			return fmt.Errorf("%w: bad signature", errJWS)
		}
		return nil
	case "RS256":
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: RS256 with a non-RSA key", errJWS)
		}
		h := sha256.Sum256(input)
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig); err != nil {
			return fmt.Errorf("%w: bad signature", errJWS)
		}
		return nil
	}
	return fmt.Errorf("%w: alg %q", errBadAlg, alg)
}

var errBadAlg = errors.New("unsupported JWS algorithm")
