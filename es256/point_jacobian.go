//go:build (amd64 || arm64) && !purego

package es256

import (
	"unsafe"

	"filippo.io/nistec"
)

// On amd64 and arm64 (without the purego tag) filippo.io/nistec v0.0.4 backs
// P256Point with the Gueron–Krasnov assembly: three [4]uint64 limb arrays
// (X:Y:Z), Jacobian (x = X/Z², y = Y/Z³), Montgomery domain with R = 2²⁵⁶,
// exactly the representation fieldP uses. Reading X and Z directly lets a
// whole batch share one field inversion instead of the one per point that
// BytesX performs.
//
// This reads unexported fields of a pinned dependency, so it is guarded
// twice: the size assertion below fails the build if the struct changes
// size, and jacobianSelfTest (run once before the first Signer is built)
// compares the result with nistec's own BytesX on several points and turns
// the fast path off if any differs.
type p256Jacobian struct {
	x, y, z [4]uint64
}

// Compile-time check that nistec.P256Point is exactly three 4-limb elements.
var _ [unsafe.Sizeof(nistec.P256Point{}) - unsafe.Sizeof(p256Jacobian{})]struct{}
var _ [unsafe.Sizeof(p256Jacobian{}) - unsafe.Sizeof(nistec.P256Point{})]struct{}

const jacobianAvailable = true

// jacobianXZ copies the Jacobian X and Z coordinates (Montgomery form mod p)
// of q, fully reduced.
func jacobianXZ(q *nistec.P256Point, x, z *elem) {
	j := (*p256Jacobian)(unsafe.Pointer(q))
	*x = j.x
	*z = j.z
	reduceOnce(x, x, &fieldP)
	reduceOnce(z, z, &fieldP)
}
