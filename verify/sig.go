package verify

import (
	"crypto/sha256"
	"fmt"

	"github.com/shakenline/shakenline/p256verify"
	"github.com/shakenline/shakenline/passport"
)

// verifySig checks id's ES256 signature (raw r||s, RFC 7518 section 3.4)
// with key through the Verifier's table cache (package p256verify): the
// verdict of passport.VerifySignature (crypto/ecdsa), without its
// allocations, and about half its time once key has a table. keys may be
// nil (no tables).
func verifySig(keys *p256verify.Cache, key *p256verify.Key, id *passport.Identity) error {
	if len(id.Signature) != 64 {
		return fmt.Errorf("%w: %d bytes, want 64", passport.ErrBadSignature, len(id.Signature))
	}
	digest := sha256.Sum256(id.SigningInput)
	if !keys.Verify(key, &digest, (*[64]byte)(id.Signature)) {
		return passport.ErrBadSignature
	}
	return nil
}
