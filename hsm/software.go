package hsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/shakenline/shakenline/es256"
)

// Software signs with a private key held in process memory, through the
// precomputed-nonce ES256 signer of package es256 (constant time, about
// twice OpenSSL's rate per core). It is the fallback at the end of a signer
// chain and the signer of labs and nodes without an HSM. The key must be the
// provider's own (the one its certificate names); see docs/KEYS.md for how it
// is provisioned. Close wipes the nonce pool and the key copy.
//
// The nonce pool is sharded, one es256.Signer per CPU, so that event loops
// signing synchronously (TrySignDigest with their own shard) share no lock.
type Software struct {
	name   string
	pub    *ecdsa.PublicKey
	shards []*es256.Signer
	next   atomic.Uint32 // round robin for SignDigest
}

// NewSoftware wraps a P-256 private key.
func NewSoftware(name string, key *ecdsa.PrivateKey) (*Software, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, ErrNotP256
	}
	if name == "" {
		name = "soft"
	}
	s := &Software{name: name}
	for range max(1, min(runtime.GOMAXPROCS(0), 16)) {
		es, err := es256.New(key, es256.Options{})
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("hsm: software signer: %w", err)
		}
		s.shards = append(s.shards, es)
	}
	pub := key.PublicKey
	s.pub = &pub
	return s, nil
}

func (s *Software) Name() string             { return s.name }
func (s *Software) Public() *ecdsa.PublicKey { return s.pub }

// SignDigest implements Signer.
func (s *Software) SignDigest(_ context.Context, digest *[32]byte, sig *[64]byte) error {
	sh := s.shards[int(s.next.Add(1))%len(s.shards)]
	if err := sh.Sign(digest, sig); err != nil {
		return fmt.Errorf("hsm: software sign: %w", err)
	}
	return nil
}

// TrySignDigest signs at once from shard's pool of precomputed nonces, or
// reports false without computing anything when that pool is empty.
func (s *Software) TrySignDigest(shard int, digest *[32]byte, sig *[64]byte) bool {
	ok, err := s.shards[uint(shard)%uint(len(s.shards))].TrySign(digest, sig)
	return ok && err == nil
}

// IdleWork returns refill work for shard's nonce pool that an event loop
// does in its idle gaps, one scalar multiplication per Step (see
// es256.Refiller). The caller owns it: one per loop, closed when the loop
// ends.
func (s *Software) IdleWork(shard int) IdleWork {
	return s.shards[uint(shard)%uint(len(s.shards))].NewRefiller()
}

// Close stops the nonce workers and wipes the pools.
func (s *Software) Close() error {
	for _, sh := range s.shards {
		sh.Close()
	}
	return nil
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
