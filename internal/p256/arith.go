package p256

import (
	"encoding/binary"
	"math/bits"
)

// Elem is a 256-bit integer as four little-endian 64-bit limbs. Depending on
// context it holds a value mod p (the P-256 field prime) or mod n (the group
// order), either plainly or in the Montgomery domain (value·2²⁵⁶ mod m).
//
// Every function in this file is constant time in the values of its Elem
// arguments: only fixed-length code, math/bits Mul64/Add64/Sub64 (MULQ,
// ADC and SBB on amd64, MUL/UMULH/ADCS/SBCS on arm64) and mask selects.
type Elem [4]uint64

// Modulus holds the constants for Montgomery arithmetic modulo an odd m with
// 2²⁵⁵ < m < 2²⁵⁶ (both P-256 moduli qualify).
type Modulus struct {
	M     Elem   // the modulus
	M0inv uint64 // -m⁻¹ mod 2⁶⁴
	RR    Elem   // 2⁵¹² mod m: MontMul(x, RR) moves x into the Montgomery domain
	One   Elem   // 2²⁵⁶ mod m: 1 in the Montgomery domain
	Exp   Elem   // m-2, the Fermat inversion exponent (public)
}

// FieldP is the P-256 base field, p = 2²⁵⁶ - 2²²⁴ + 2¹⁹² + 2⁹⁶ - 1.
var FieldP = Modulus{
	M:     Elem{0xffffffffffffffff, 0x00000000ffffffff, 0x0000000000000000, 0xffffffff00000001},
	M0inv: 0x0000000000000001,
	RR:    Elem{0x0000000000000003, 0xfffffffbffffffff, 0xfffffffffffffffe, 0x00000004fffffffd},
	One:   Elem{0x0000000000000001, 0xffffffff00000000, 0xffffffffffffffff, 0x00000000fffffffe},
	Exp:   Elem{0xfffffffffffffffd, 0x00000000ffffffff, 0x0000000000000000, 0xffffffff00000001},
}

// OrderN is the P-256 group order n.
var OrderN = Modulus{
	M:     Elem{0xf3b9cac2fc632551, 0xbce6faada7179e84, 0xffffffffffffffff, 0xffffffff00000000},
	M0inv: 0xccd1c8aaee00bc4f,
	RR:    Elem{0x83244c95be79eea2, 0x4699799c49bd6fa6, 0x2845b2392b6bec59, 0x66e12d94f3d95620},
	One:   Elem{0x0c46353d039cdaaf, 0x4319055258e8617b, 0x0000000000000000, 0x00000000ffffffff},
	Exp:   Elem{0xf3b9cac2fc63254f, 0xbce6faada7179e84, 0xffffffffffffffff, 0xffffffff00000000},
}

// MontMul sets z = x·y·2⁻²⁵⁶ mod m. x and y must be < m; z is < m. z may
// alias x or y. It is the CIOS method (Koç, Acar, Kaliski 1996), unrolled,
// with a final masked subtraction.
func MontMul(z, x, y *Elem, m *Modulus) {
	x0, x1, x2, x3 := x[0], x[1], x[2], x[3]
	m0, m1, m2, m3, k0 := m.M[0], m.M[1], m.M[2], m.M[3], m.M0inv
	var t0, t1, t2, t3, t4, t5, c, cc, hi, lo, q uint64

	// row 0: t += x·y[0]
	yi := y[0]
	hi, lo = bits.Mul64(x0, yi)
	t0, cc = bits.Add64(t0, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x1, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t1, cc = bits.Add64(t1, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x2, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t2, cc = bits.Add64(t2, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x3, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t3, cc = bits.Add64(t3, lo, 0)
	c = hi + cc
	t4, cc = bits.Add64(t4, c, 0)
	t5 = cc
	// t = (t + q·m) / 2⁶⁴, q making the low limb zero
	q = t0 * k0
	hi, lo = bits.Mul64(q, m0)
	_, cc = bits.Add64(t0, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m1)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t0, cc = bits.Add64(t1, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m2)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t1, cc = bits.Add64(t2, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m3)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t2, cc = bits.Add64(t3, lo, 0)
	c = hi + cc
	t3, cc = bits.Add64(t4, c, 0)
	t4 = t5 + cc

	// row 1: t += x·y[1]
	yi = y[1]
	hi, lo = bits.Mul64(x0, yi)
	t0, cc = bits.Add64(t0, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x1, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t1, cc = bits.Add64(t1, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x2, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t2, cc = bits.Add64(t2, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x3, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t3, cc = bits.Add64(t3, lo, 0)
	c = hi + cc
	t4, cc = bits.Add64(t4, c, 0)
	t5 = cc
	// t = (t + q·m) / 2⁶⁴, q making the low limb zero
	q = t0 * k0
	hi, lo = bits.Mul64(q, m0)
	_, cc = bits.Add64(t0, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m1)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t0, cc = bits.Add64(t1, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m2)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t1, cc = bits.Add64(t2, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m3)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t2, cc = bits.Add64(t3, lo, 0)
	c = hi + cc
	t3, cc = bits.Add64(t4, c, 0)
	t4 = t5 + cc

	// row 2: t += x·y[2]
	yi = y[2]
	hi, lo = bits.Mul64(x0, yi)
	t0, cc = bits.Add64(t0, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x1, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t1, cc = bits.Add64(t1, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x2, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t2, cc = bits.Add64(t2, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x3, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t3, cc = bits.Add64(t3, lo, 0)
	c = hi + cc
	t4, cc = bits.Add64(t4, c, 0)
	t5 = cc
	// t = (t + q·m) / 2⁶⁴, q making the low limb zero
	q = t0 * k0
	hi, lo = bits.Mul64(q, m0)
	_, cc = bits.Add64(t0, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m1)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t0, cc = bits.Add64(t1, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m2)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t1, cc = bits.Add64(t2, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m3)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t2, cc = bits.Add64(t3, lo, 0)
	c = hi + cc
	t3, cc = bits.Add64(t4, c, 0)
	t4 = t5 + cc

	// row 3: t += x·y[3]
	yi = y[3]
	hi, lo = bits.Mul64(x0, yi)
	t0, cc = bits.Add64(t0, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x1, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t1, cc = bits.Add64(t1, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x2, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t2, cc = bits.Add64(t2, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(x3, yi)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t3, cc = bits.Add64(t3, lo, 0)
	c = hi + cc
	t4, cc = bits.Add64(t4, c, 0)
	t5 = cc
	// t = (t + q·m) / 2⁶⁴, q making the low limb zero
	q = t0 * k0
	hi, lo = bits.Mul64(q, m0)
	_, cc = bits.Add64(t0, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m1)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t0, cc = bits.Add64(t1, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m2)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t1, cc = bits.Add64(t2, lo, 0)
	c = hi + cc
	hi, lo = bits.Mul64(q, m3)
	lo, cc = bits.Add64(lo, c, 0)
	hi += cc
	t2, cc = bits.Add64(t3, lo, 0)
	c = hi + cc
	t3, cc = bits.Add64(t4, c, 0)
	t4 = t5 + cc

	// t < 2m: subtract m unless that borrows out of the 257-bit value.
	var b, r0, r1, r2, r3 uint64
	r0, b = bits.Sub64(t0, m0, 0)
	r1, b = bits.Sub64(t1, m1, b)
	r2, b = bits.Sub64(t2, m2, b)
	r3, b = bits.Sub64(t3, m3, b)
	_, b = bits.Sub64(t4, 0, b)
	keep := -b // all ones when t < m
	z[0] = t0&keep | r0&^keep
	z[1] = t1&keep | r1&^keep
	z[2] = t2&keep | r2&^keep
	z[3] = t3&keep | r3&^keep
}

// ReduceOnce sets z = x mod m for any x < 2m (so for any 256-bit x, since
// m > 2²⁵⁵).
func ReduceOnce(z, x *Elem, m *Modulus) {
	var b uint64
	var r Elem
	r[0], b = bits.Sub64(x[0], m.M[0], 0)
	r[1], b = bits.Sub64(x[1], m.M[1], b)
	r[2], b = bits.Sub64(x[2], m.M[2], b)
	r[3], b = bits.Sub64(x[3], m.M[3], b)
	keep := -b // x < m
	z[0] = x[0]&keep | r[0]&^keep
	z[1] = x[1]&keep | r[1]&^keep
	z[2] = x[2]&keep | r[2]&^keep
	z[3] = x[3]&keep | r[3]&^keep
}

// LessThan returns 1 if x < m and 0 otherwise, in constant time.
func LessThan(x *Elem, m *Modulus) uint64 {
	var b uint64
	_, b = bits.Sub64(x[0], m.M[0], 0)
	_, b = bits.Sub64(x[1], m.M[1], b)
	_, b = bits.Sub64(x[2], m.M[2], b)
	_, b = bits.Sub64(x[3], m.M[3], b)
	return b
}

// IsZero returns 1 if x is zero and 0 otherwise, in constant time.
func IsZero(x *Elem) uint64 {
	v := x[0] | x[1] | x[2] | x[3]
	return 1 ^ ((v | -v) >> 63)
}

// ToMont sets z = x·2²⁵⁶ mod m for x < m.
func ToMont(z, x *Elem, m *Modulus) { MontMul(z, x, &m.RR, m) }

// FromMont sets z = x·2⁻²⁵⁶ mod m for x < m.
func FromMont(z, x *Elem, m *Modulus) {
	one := Elem{1}
	MontMul(z, x, &one, m)
}

// SetBytes sets z to the big-endian 32-byte value b (no reduction).
func SetBytes(z *Elem, b *[32]byte) {
	z[3] = binary.BigEndian.Uint64(b[0:8])
	z[2] = binary.BigEndian.Uint64(b[8:16])
	z[1] = binary.BigEndian.Uint64(b[16:24])
	z[0] = binary.BigEndian.Uint64(b[24:32])
}

// PutBytes writes x to b as 32 big-endian bytes.
func PutBytes(b *[32]byte, x *Elem) {
	binary.BigEndian.PutUint64(b[0:8], x[3])
	binary.BigEndian.PutUint64(b[8:16], x[2])
	binary.BigEndian.PutUint64(b[16:24], x[1])
	binary.BigEndian.PutUint64(b[24:32], x[0])
}
