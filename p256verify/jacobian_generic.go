//go:build !((amd64 || arm64) && !purego)

package p256verify

import "filippo.io/nistec"

// Elsewhere nistec uses fiat-crypto coordinates behind pointers;
// xModNEquals uses BytesX.
const jacobianAvailable = false

func jacobianXZ(q *nistec.P256Point) (x, z scalar) {
	panic("p256verify: jacobianXZ without the assembly backend")
}
