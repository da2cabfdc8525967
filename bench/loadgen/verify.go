package loadgen

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
)

// VerifyIdentity checks one RFC 8224 Identity header value against pub: the
// compact PASSporT's ES256 signature (RFC 8225 section 9, raw r||s), the
// protected header (alg ES256, ppt shaken) and the presence of the SHAKEN
// claims of RFC 8588 (attest, dest.tn, iat, orig.tn, origid). It allocates
// and is meant for a sample, not every packet.
func VerifyIdentity(pub *ecdsa.PublicKey, v []byte) error {
	tok := v
	if i := bytes.IndexByte(tok, ';'); i >= 0 {
		tok = tok[:i]
	}
	tok = bytes.TrimSpace(tok)
	parts := bytes.Split(tok, []byte("."))
	if len(parts) != 3 {
		return fmt.Errorf("%w: %d token parts", ErrIdentity, len(parts))
	}
	dec := base64.RawURLEncoding
	hdr, err := dec.DecodeString(string(parts[0]))
	if err != nil {
		return fmt.Errorf("%w: header: %w", ErrIdentity, err)
	}
	payload, err := dec.DecodeString(string(parts[1]))
	if err != nil {
		return fmt.Errorf("%w: payload: %w", ErrIdentity, err)
	}
	sig, err := dec.DecodeString(string(parts[2]))
	if err != nil {
		return fmt.Errorf("%w: signature: %w", ErrIdentity, err)
	}
	if len(sig) != 64 {
		return fmt.Errorf("%w: signature is %d bytes, want 64", ErrIdentity, len(sig))
	}
	var h struct {
		Alg string `json:"alg"`
		Ppt string `json:"ppt"`
		X5u string `json:"x5u"`
	}
	if err := json.Unmarshal(hdr, &h); err != nil {
		return fmt.Errorf("%w: header json: %w", ErrIdentity, err)
	}
	if h.Alg != "ES256" || h.Ppt != "shaken" {
		return fmt.Errorf("%w: alg %q ppt %q", ErrIdentity, h.Alg, h.Ppt)
	}
	var c struct {
		Attest string `json:"attest"`
		Dest   struct {
			TN []string `json:"tn"`
		} `json:"dest"`
		Iat  int64 `json:"iat"`
		Orig struct {
			TN string `json:"tn"`
		} `json:"orig"`
		OrigID string `json:"origid"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("%w: payload json: %w", ErrIdentity, err)
	}
	if c.Attest == "" || len(c.Dest.TN) == 0 || c.Iat == 0 || c.Orig.TN == "" || c.OrigID == "" {
		return fmt.Errorf("%w: missing SHAKEN claim", ErrIdentity)
	}
	digest := sha256.Sum256(tok[:len(parts[0])+1+len(parts[1])])
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return fmt.Errorf("%w: bad signature", ErrIdentity)
	}
	return nil
}

// LoadPublicKey reads a P-256 public key from a PEM file holding a PUBLIC
// KEY, a CERTIFICATE (the first one), or a private key (EC or PKCS#8), whose
// public half is used.
func LoadPublicKey(path string) (*ecdsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loadgen: public key: %w", err)
	}
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return nil, fmt.Errorf("%w: no usable PEM block in %s", ErrKey, path)
		}
		var key any
		switch blk.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(blk.Bytes)
			if err == nil {
				key = cert.PublicKey
			}
		case "EC PRIVATE KEY":
			var k *ecdsa.PrivateKey
			k, err = x509.ParseECPrivateKey(blk.Bytes)
			if err == nil {
				key = &k.PublicKey
			}
		case "PRIVATE KEY":
			var k any
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
			if ek, ok := k.(*ecdsa.PrivateKey); ok {
				key = &ek.PublicKey
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrKey, path, err)
		}
		pk, ok := key.(*ecdsa.PublicKey)
		if !ok || pk.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: %s: not a P-256 key", ErrKey, path)
		}
		return pk, nil
	}
}
