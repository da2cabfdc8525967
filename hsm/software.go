package hsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Software signs with a private key held in process memory (crypto/ecdsa).
// It is the fallback at the end of a signer chain and the signer of labs and
// nodes without an HSM. The key must be the provider's own (the one its
// certificate names); see docs/KEYS.md for how it is provisioned.
type Software struct {
	name string
	key  *ecdsa.PrivateKey
}

// NewSoftware wraps a P-256 private key.
func NewSoftware(name string, key *ecdsa.PrivateKey) (*Software, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, ErrNotP256
	}
	if name == "" {
		name = "soft"
	}
	return &Software{name: name, key: key}, nil
}

func (s *Software) Name() string             { return s.name }
func (s *Software) Public() *ecdsa.PublicKey { return &s.key.PublicKey }

// SignDigest implements Signer.
func (s *Software) SignDigest(_ context.Context, digest *[32]byte, sig *[64]byte) error {
	der, err := ecdsa.SignASN1(rand.Reader, s.key, digest[:])
	if err != nil {
		return fmt.Errorf("hsm: software sign: %w", err)
	}
	return DERToRaw(der, sig)
}

// DERToRaw converts an ASN.1 DER ECDSA-Sig-Value (SEQUENCE { r INTEGER,
// s INTEGER }) into the fixed 64-byte r||s form of RFC 7518 section 3.4.
func DERToRaw(der []byte, out *[64]byte) error {
	var r, s []byte
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return fmt.Errorf("hsm: malformed DER signature")
	}
	if !putScalar(out[:32], r) || !putScalar(out[32:], s) {
		return fmt.Errorf("hsm: DER signature scalar too large")
	}
	return nil
}

// putScalar writes big-endian v, left-padded, into a 32-byte slot. v from
// ReadASN1Integer into []byte is the minimal two's complement encoding, so a
// leading 0x00 may precede a 32-byte value.
func putScalar(dst []byte, v []byte) bool {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) > 32 {
		return false
	}
	clear(dst[:32-len(v)])
	copy(dst[32-len(v):], v)
	return true
}
