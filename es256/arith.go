package es256

import (
	"encoding/binary"
	"math/bits"
)

// elem is a 256-bit integer as four little-endian 64-bit limbs. Depending on
// context it holds a value mod p (the P-256 field prime) or mod n (the group
// order), either plainly or in the Montgomery domain (value·2²⁵⁶ mod m).
//
// Every function in this file is constant time in the values of its elem
// arguments: only fixed-length loops, math/bits Mul64/Add64/Sub64 (MULQ,
// ADC and SBB on amd64, MUL/UMULH/ADCS/SBCS on arm64) and mask selects. The only
// data-dependent branches are on exponent bits in invert, and the exponent
// there is the public constant m-2.
type elem [4]uint64

// modulus holds the constants for Montgomery arithmetic modulo an odd m with
// 2²⁵⁵ < m < 2²⁵⁶ (both P-256 moduli qualify).
type modulus struct {
	m     elem   // the modulus
	m0inv uint64 // -m⁻¹ mod 2⁶⁴
	rr    elem   // 2⁵¹² mod m: montMul(x, rr) moves x into the Montgomery domain
	one   elem   // 2²⁵⁶ mod m: 1 in the Montgomery domain
	exp   elem   // m-2, the Fermat inversion exponent (public)
}

// fieldP is the P-256 base field, p = 2²⁵⁶ - 2²²⁴ + 2¹⁹² + 2⁹⁶ - 1.
var fieldP = modulus{
	m:     elem{0xffffffffffffffff, 0x00000000ffffffff, 0x0000000000000000, 0xffffffff00000001},
	m0inv: 0x0000000000000001,
	rr:    elem{0x0000000000000003, 0xfffffffbffffffff, 0xfffffffffffffffe, 0x00000004fffffffd},
	one:   elem{0x0000000000000001, 0xffffffff00000000, 0xffffffffffffffff, 0x00000000fffffffe},
	exp:   elem{0xfffffffffffffffd, 0x00000000ffffffff, 0x0000000000000000, 0xffffffff00000001},
}

// orderN is the P-256 group order n.
var orderN = modulus{
	m:     elem{0xf3b9cac2fc632551, 0xbce6faada7179e84, 0xffffffffffffffff, 0xffffffff00000000},
	m0inv: 0xccd1c8aaee00bc4f,
	rr:    elem{0x83244c95be79eea2, 0x4699799c49bd6fa6, 0x2845b2392b6bec59, 0x66e12d94f3d95620},
	one:   elem{0x0c46353d039cdaaf, 0x4319055258e8617b, 0x0000000000000000, 0x00000000ffffffff},
	exp:   elem{0xf3b9cac2fc63254f, 0xbce6faada7179e84, 0xffffffffffffffff, 0xffffffff00000000},
}

// montMul sets z = x·y·2⁻²⁵⁶ mod m. x and y must be < m; z is < m. z may
// alias x or y. It is the CIOS method (Koç, Acar, Kaliski 1996), unrolled,
// with a final masked subtraction.
func montMul(z, x, y *elem, m *modulus) {
	x0, x1, x2, x3 := x[0], x[1], x[2], x[3]
	m0, m1, m2, m3, k0 := m.m[0], m.m[1], m.m[2], m.m[3], m.m0inv
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

// modAdd sets z = x + y mod m for x, y < m.
func modAdd(z, x, y *elem, m *modulus) {
	var c, b uint64
	var t, r elem
	t[0], c = bits.Add64(x[0], y[0], 0)
	t[1], c = bits.Add64(x[1], y[1], c)
	t[2], c = bits.Add64(x[2], y[2], c)
	t[3], c = bits.Add64(x[3], y[3], c)
	r[0], b = bits.Sub64(t[0], m.m[0], 0)
	r[1], b = bits.Sub64(t[1], m.m[1], b)
	r[2], b = bits.Sub64(t[2], m.m[2], b)
	r[3], b = bits.Sub64(t[3], m.m[3], b)
	_, b = bits.Sub64(c, 0, b)
	keep := -b
	z[0] = t[0]&keep | r[0]&^keep
	z[1] = t[1]&keep | r[1]&^keep
	z[2] = t[2]&keep | r[2]&^keep
	z[3] = t[3]&keep | r[3]&^keep
}

// reduceOnce sets z = x mod m for any x < 2m (so for any 256-bit x, since
// m > 2²⁵⁵).
func reduceOnce(z, x *elem, m *modulus) {
	var b uint64
	var r elem
	r[0], b = bits.Sub64(x[0], m.m[0], 0)
	r[1], b = bits.Sub64(x[1], m.m[1], b)
	r[2], b = bits.Sub64(x[2], m.m[2], b)
	r[3], b = bits.Sub64(x[3], m.m[3], b)
	keep := -b // x < m
	z[0] = x[0]&keep | r[0]&^keep
	z[1] = x[1]&keep | r[1]&^keep
	z[2] = x[2]&keep | r[2]&^keep
	z[3] = x[3]&keep | r[3]&^keep
}

// lessThan returns 1 if x < m and 0 otherwise, in constant time.
func lessThan(x *elem, m *modulus) uint64 {
	var b uint64
	_, b = bits.Sub64(x[0], m.m[0], 0)
	_, b = bits.Sub64(x[1], m.m[1], b)
	_, b = bits.Sub64(x[2], m.m[2], b)
	_, b = bits.Sub64(x[3], m.m[3], b)
	return b
}

// isZero returns 1 if x is zero and 0 otherwise, in constant time.
func isZero(x *elem) uint64 {
	v := x[0] | x[1] | x[2] | x[3]
	return 1 ^ ((v | -v) >> 63)
}

// toMont sets z = x·2²⁵⁶ mod m for x < m.
func toMont(z, x *elem, m *modulus) { montMul(z, x, &m.rr, m) }

// fromMont sets z = x·2⁻²⁵⁶ mod m for x < m.
func fromMont(z, x *elem, m *modulus) {
	one := elem{1}
	montMul(z, x, &one, m)
}

// invert sets z = x⁻¹ in the Montgomery domain (x and z both Montgomery
// form), computed as x^(m-2) by Fermat's little theorem with a fixed 4-bit
// window. x = 0 gives z = 0. The exponent m-2 is public, so branching on and
// indexing with its bits leaks nothing about x. The table is indexed by
// exponent nibbles only.
func invert(z, x *elem, m *modulus) {
	var table [16]elem // table[i] = x^i (Montgomery form)
	table[0] = m.one
	table[1] = *x
	for i := 2; i < 16; i++ {
		montMul(&table[i], &table[i-1], x, m)
	}
	acc := m.one
	for i := 63; i >= 0; i-- {
		nib := (m.exp[i/16] >> (uint(i%16) * 4)) & 0xf
		if i != 63 {
			montMul(&acc, &acc, &acc, m)
			montMul(&acc, &acc, &acc, m)
			montMul(&acc, &acc, &acc, m)
			montMul(&acc, &acc, &acc, m)
		}
		if nib != 0 { // public exponent bit pattern
			montMul(&acc, &acc, &table[nib], m)
		}
	}
	*z = acc
	clear(table[:])
}

// batchInvert sets out[i] = in[i]⁻¹ (Montgomery domain) for all i using
// Montgomery's trick: one invert and 3(len-1) multiplications. scratch must
// have len(in) elements; out may alias in. If any input is zero every output
// is zero.
func batchInvert(out, in, scratch []elem, m *modulus) {
	n := len(in)
	if n == 0 {
		return
	}
	_ = out[n-1]
	_ = scratch[n-1]
	scratch[0] = in[0]
	for i := 1; i < n; i++ {
		montMul(&scratch[i], &scratch[i-1], &in[i], m)
	}
	var inv, t elem
	invert(&inv, &scratch[n-1], m)
	for i := n - 1; i > 0; i-- {
		montMul(&t, &inv, &scratch[i-1], m) // in[i]⁻¹
		montMul(&inv, &inv, &in[i], m)      // (in[0]…in[i-1])⁻¹
		out[i] = t
	}
	out[0] = inv
	clear(scratch)
}

// setBytes sets z to the big-endian 32-byte value b (no reduction).
func setBytes(z *elem, b *[32]byte) {
	z[3] = binary.BigEndian.Uint64(b[0:8])
	z[2] = binary.BigEndian.Uint64(b[8:16])
	z[1] = binary.BigEndian.Uint64(b[16:24])
	z[0] = binary.BigEndian.Uint64(b[24:32])
}

// putBytes writes x to b as 32 big-endian bytes.
func putBytes(b *[32]byte, x *elem) {
	binary.BigEndian.PutUint64(b[0:8], x[3])
	binary.BigEndian.PutUint64(b[8:16], x[2])
	binary.BigEndian.PutUint64(b[16:24], x[1])
	binary.BigEndian.PutUint64(b[24:32], x[0])
}
