//go:build !((amd64 || arm64) && !purego)

package p256

import "filippo.io/nistec"

// Elsewhere nistec uses fiat-crypto projective coordinates behind pointers;
// callers fall back to nistec's BytesX, one inversion per point.
const JacobianAvailable = false

// JacobianXZ is never called in this build (JacobianOK returns false).
func JacobianXZ(q *nistec.P256Point, x, z *Elem) {
	panic("p256: JacobianXZ without the assembly backend")
}
