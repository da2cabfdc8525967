//go:build !((amd64 || arm64) && !purego)

package es256

import "filippo.io/nistec"

// Elsewhere nistec uses fiat-crypto projective coordinates behind pointers;
// the batch falls back to nistec's BytesX, one inversion per point.
const jacobianAvailable = false

func jacobianXZ(q *nistec.P256Point, x, z *elem) {
	panic("es256: jacobianXZ without the assembly backend")
}
