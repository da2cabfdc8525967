package verify

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"

	"github.com/shakenline/shakenline/passport"
)

// verifySig checks id's ES256 signature (raw r||s, RFC 7518 section 3.4)
// like passport.VerifySignature, but hands crypto/ecdsa a DER signature
// built in a stack buffer instead of two big.Ints: same verdict, a dozen
// fewer allocations per call. The key is P-256 (newEntry checked).
func verifySig(pub *ecdsa.PublicKey, id *passport.Identity) error {
	if len(id.Signature) != 64 {
		return fmt.Errorf("%w: %d bytes, want 64", passport.ErrBadSignature, len(id.Signature))
	}
	digest := sha256.Sum256(id.SigningInput)
	var buf [72]byte // SEQUENCE of two INTEGERs of at most 33 bytes
	der := appendDERSig(buf[:0], id.Signature[:32], id.Signature[32:])
	if !ecdsa.VerifyASN1(pub, digest[:], der) {
		return passport.ErrBadSignature
	}
	return nil
}

// appendDERSig appends the DER Ecdsa-Sig-Value (RFC 3279 section 2.2.3)
// of the big-endian unsigned r and s (at most 32 bytes each).
func appendDERSig(b, r, s []byte) []byte {
	r, s = trimZeros(r), trimZeros(s)
	lr, ls := intLen(r), intLen(s)
	b = append(b, 0x30, byte(2+lr+2+ls))
	b = appendInt(b, r, lr)
	return appendInt(b, s, ls)
}

func trimZeros(x []byte) []byte {
	for len(x) > 0 && x[0] == 0 {
		x = x[1:]
	}
	return x
}

// intLen is the INTEGER content length of the unsigned x: a 0x00 prefix
// when the top bit is set, one zero byte for x = 0.
func intLen(x []byte) int {
	if len(x) == 0 || x[0]&0x80 != 0 {
		return len(x) + 1
	}
	return len(x)
}

func appendInt(b, x []byte, n int) []byte {
	b = append(b, 0x02, byte(n))
	if n > len(x) {
		b = append(b, 0)
	}
	return append(b, x...)
}
