package hsm

import (
	"context"
	"crypto/ecdsa"
	"errors"
)

// Signer produces ES256 signatures (ECDSA P-256 over a SHA-256 digest, RFC 7518
// section 3.4) in the raw 64-byte r||s form that a JWS carries.
//
// Implementations must be safe for concurrent use. SignDigest may block; the
// event loops never call it directly (they go through a Dispatcher).
type Signer interface {
	// Name identifies the signer in metrics, logs and P-Identity-Bypass reasons
	// ("soft", "pkcs11:token-a", ...).
	Name() string
	// Public is the verification key; at start it is checked against the
	// provider's certificate (FCC own-certificate rule).
	Public() *ecdsa.PublicKey
	// SignDigest signs digest and writes r||s (each 32 bytes, big-endian,
	// left-padded) to sig.
	SignDigest(ctx context.Context, digest *[32]byte, sig *[64]byte) error
}

// Errors shared by every signer.
var (
	ErrKeyMismatch = errors.New("hsm: signing key does not match the certificate")
	ErrNotP256     = errors.New("hsm: key is not ECDSA P-256")
	ErrQueueFull   = errors.New("hsm: signing queue full")
	ErrBudget      = errors.New("hsm: signing budget exceeded")
	ErrNoSigner    = errors.New("hsm: no signer available")
)
