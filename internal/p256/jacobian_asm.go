//go:build (amd64 || arm64) && !purego

package p256

import (
	"unsafe"

	"filippo.io/nistec"
)

// nistecJacobian is the layout of nistec.P256Point on amd64 and arm64
// (without the purego tag) in filippo.io/nistec v0.0.4: the Gueron–Krasnov
// assembly's three 4-limb coordinates X:Y:Z, Jacobian, Montgomery form
// mod p. See the package documentation for how its read is guarded.
type nistecJacobian struct {
	x, y, z Elem
}

// Compile-time check that nistec.P256Point is exactly three 4-limb elements.
var _ [unsafe.Sizeof(nistec.P256Point{}) - unsafe.Sizeof(nistecJacobian{})]struct{}
var _ [unsafe.Sizeof(nistecJacobian{}) - unsafe.Sizeof(nistec.P256Point{})]struct{}

// JacobianAvailable reports whether this build has the nistec backend whose
// coordinates JacobianXZ reads. Use JacobianOK to decide.
const JacobianAvailable = true

// JacobianXZ copies the Jacobian X and Z coordinates (Montgomery form mod p)
// of q, fully reduced. Only valid when JacobianOK returns true.
func JacobianXZ(q *nistec.P256Point, x, z *Elem) {
	j := (*nistecJacobian)(unsafe.Pointer(q))
	ReduceOnce(x, &j.x, &FieldP)
	ReduceOnce(z, &j.z, &FieldP)
}
