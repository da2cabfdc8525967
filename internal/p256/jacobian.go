package p256

import (
	"sync"

	"filippo.io/nistec"
)

var (
	jacobianOnce sync.Once
	jacobianOK   bool
)

// JacobianOK reports whether JacobianXZ may be used: the build has the
// assembly backend and JacobianXZ passed its self-test. The self-test runs
// once per process, on the first call.
func JacobianOK() bool {
	jacobianOnce.Do(func() { jacobianOK = JacobianAvailable && jacobianSelfTest() })
	return jacobianOK
}

// jacobianSelfTest checks JacobianXZ against nistec's BytesX: X = x·Z²
// (mod p, Montgomery domain) with Z ≠ 0 for k·G with k = 1, 2, 3, a
// random-looking k and n-1, and for points that went through Double and Add
// (Z ≠ 1); and Z = 0 for the point at infinity.
func jacobianSelfTest() bool {
	scalars := [][32]byte{
		{31: 1},
		{31: 2},
		{31: 3},
		{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 31: 0x77},
	}
	var nm1 [32]byte
	nMinus1 := OrderN.M
	nMinus1[0]--
	PutBytes(&nm1, &nMinus1)
	scalars = append(scalars, nm1)

	var pts []*nistec.P256Point
	for i := range scalars {
		p, err := nistec.NewP256Point().ScalarBaseMult(scalars[i][:])
		if err != nil {
			return false
		}
		pts = append(pts, p)
	}
	p := nistec.NewP256Point().SetGenerator()
	for i := 0; i < 8; i++ {
		p.Double(p)
		p.Add(p, nistec.NewP256Point().SetGenerator())
		pts = append(pts, nistec.NewP256Point().Set(p))
	}
	for _, p := range pts {
		if !jacobianMatches(p) {
			return false
		}
	}
	var x, z Elem
	JacobianXZ(nistec.NewP256Point(), &x, &z)
	return IsZero(&z) == 1
}

// jacobianMatches reports whether p, not the point at infinity, has
// Jacobian X = x·Z² for the affine x that BytesX returns, and Z ≠ 0.
func jacobianMatches(p *nistec.P256Point) bool {
	xb, err := p.BytesX()
	if err != nil || len(xb) != 32 {
		return false
	}
	var x, z, ax, zz Elem
	JacobianXZ(p, &x, &z)
	if IsZero(&z) == 1 {
		return false
	}
	SetBytes(&ax, (*[32]byte)(xb))
	ToMont(&ax, &ax, &FieldP)
	MontMul(&zz, &z, &z, &FieldP)
	MontMul(&ax, &ax, &zz, &FieldP)
	return ax == x
}
