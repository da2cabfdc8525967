//go:build (amd64 || arm64) && !purego

package p256verify

import (
	"unsafe"

	"filippo.io/nistec"
)

// On amd64 and arm64 (without the purego tag) filippo.io/nistec v0.0.4
// backs P256Point with three [4]uint64 limb arrays X:Y:Z, Jacobian
// (x = X/Z²), Montgomery domain with R = 2²⁵⁶, fully reduced: the
// representation fieldP uses. Reading X and Z lets xModNEquals compare
// X with r·Z² instead of paying BytesX's field inversion (about 10 % of a
// tabled verification). Package es256 reads the same fields the same way.
//
// This reads unexported fields of a pinned dependency, so it is guarded
// twice: the size assertions below fail the build if the struct changes
// size, and jacobianSelfTest (run once, by the first NewKey) compares the
// result with BytesX on several points and turns the shortcut off if any
// differs.
type p256Jacobian struct {
	x, y, z scalar
}

var _ [unsafe.Sizeof(nistec.P256Point{}) - unsafe.Sizeof(p256Jacobian{})]struct{}
var _ [unsafe.Sizeof(p256Jacobian{}) - unsafe.Sizeof(nistec.P256Point{})]struct{}

const jacobianAvailable = true

// jacobianXZ returns q's Jacobian X and Z (Montgomery form mod p), reduced.
func jacobianXZ(q *nistec.P256Point) (x, z scalar) {
	j := (*p256Jacobian)(unsafe.Pointer(q))
	reduceOnce(&x, &j.x, &fieldP)
	reduceOnce(&z, &j.z, &fieldP)
	return x, z
}
