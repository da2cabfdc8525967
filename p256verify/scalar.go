package p256verify

import (
	"encoding/binary"
	"math/bits"
)

// scalar is a 256-bit integer as four little-endian 64-bit limbs, a value
// mod n (the P-256 group order) or mod p (the field prime), plainly or in
// the Montgomery domain (value·2²⁵⁶ mod m). Everything here works on
// public values (signatures, digests, public-key coordinates), so nothing
// needs to be constant time: invertVartime branches on its input.
type scalar [4]uint64

// modulus holds the Montgomery constants for an odd m, 2²⁵⁵ < m < 2²⁵⁶.
type modulus struct {
	m     scalar // the modulus
	m0inv uint64 // -m⁻¹ mod 2⁶⁴
	rr    scalar // 2⁵¹² mod m
	one   scalar // 2²⁵⁶ mod m
}

// orderN is the P-256 group order n.
var orderN = modulus{
	m:     scalar{0xf3b9cac2fc632551, 0xbce6faada7179e84, 0xffffffffffffffff, 0xffffffff00000000},
	m0inv: 0xccd1c8aaee00bc4f,
	rr:    scalar{0x83244c95be79eea2, 0x4699799c49bd6fa6, 0x2845b2392b6bec59, 0x66e12d94f3d95620},
	one:   scalar{0x0c46353d039cdaaf, 0x4319055258e8617b, 0x0000000000000000, 0x00000000ffffffff},
}

// fieldP is the P-256 base field p = 2²⁵⁶ - 2²²⁴ + 2¹⁹² + 2⁹⁶ - 1.
var fieldP = modulus{
	m:     scalar{0xffffffffffffffff, 0x00000000ffffffff, 0x0000000000000000, 0xffffffff00000001},
	m0inv: 0x0000000000000001,
	rr:    scalar{0x0000000000000003, 0xfffffffbffffffff, 0xfffffffffffffffe, 0x00000004fffffffd},
	one:   scalar{0x0000000000000001, 0xffffffff00000000, 0xffffffffffffffff, 0x00000000fffffffe},
}

// montMul sets z = x·y·2⁻²⁵⁶ mod m for x, y < m (CIOS). z may alias x or y.
func montMul(z, x, y *scalar, m *modulus) {
	var t0, t1, t2, t3, t4 uint64
	for i := 0; i < 4; i++ {
		yi := y[i]
		var c, cc, hi, lo, t5 uint64
		hi, lo = bits.Mul64(x[0], yi)
		t0, cc = bits.Add64(t0, lo, 0)
		c = hi + cc
		hi, lo = bits.Mul64(x[1], yi)
		lo, cc = bits.Add64(lo, c, 0)
		hi += cc
		t1, cc = bits.Add64(t1, lo, 0)
		c = hi + cc
		hi, lo = bits.Mul64(x[2], yi)
		lo, cc = bits.Add64(lo, c, 0)
		hi += cc
		t2, cc = bits.Add64(t2, lo, 0)
		c = hi + cc
		hi, lo = bits.Mul64(x[3], yi)
		lo, cc = bits.Add64(lo, c, 0)
		hi += cc
		t3, cc = bits.Add64(t3, lo, 0)
		c = hi + cc
		t4, t5 = bits.Add64(t4, c, 0)

		q := t0 * m.m0inv
		hi, lo = bits.Mul64(q, m.m[0])
		_, cc = bits.Add64(t0, lo, 0)
		c = hi + cc
		hi, lo = bits.Mul64(q, m.m[1])
		lo, cc = bits.Add64(lo, c, 0)
		hi += cc
		t0, cc = bits.Add64(t1, lo, 0)
		c = hi + cc
		hi, lo = bits.Mul64(q, m.m[2])
		lo, cc = bits.Add64(lo, c, 0)
		hi += cc
		t1, cc = bits.Add64(t2, lo, 0)
		c = hi + cc
		hi, lo = bits.Mul64(q, m.m[3])
		lo, cc = bits.Add64(lo, c, 0)
		hi += cc
		t2, cc = bits.Add64(t3, lo, 0)
		c = hi + cc
		t3, cc = bits.Add64(t4, c, 0)
		t4 = t5 + cc
	}
	var b, r0, r1, r2, r3 uint64
	r0, b = bits.Sub64(t0, m.m[0], 0)
	r1, b = bits.Sub64(t1, m.m[1], b)
	r2, b = bits.Sub64(t2, m.m[2], b)
	r3, b = bits.Sub64(t3, m.m[3], b)
	_, b = bits.Sub64(t4, 0, b)
	keep := -b // all ones when t < m
	z[0] = t0&keep | r0&^keep
	z[1] = t1&keep | r1&^keep
	z[2] = t2&keep | r2&^keep
	z[3] = t3&keep | r3&^keep
}

// less reports whether x < m.
func less(x *scalar, m *modulus) bool {
	var b uint64
	_, b = bits.Sub64(x[0], m.m[0], 0)
	_, b = bits.Sub64(x[1], m.m[1], b)
	_, b = bits.Sub64(x[2], m.m[2], b)
	_, b = bits.Sub64(x[3], m.m[3], b)
	return b == 1
}

// reduceOnce sets z = x mod m for any 256-bit x (x < 2m since m > 2²⁵⁵).
func reduceOnce(z, x *scalar, m *modulus) {
	var b uint64
	var r scalar
	r[0], b = bits.Sub64(x[0], m.m[0], 0)
	r[1], b = bits.Sub64(x[1], m.m[1], b)
	r[2], b = bits.Sub64(x[2], m.m[2], b)
	r[3], b = bits.Sub64(x[3], m.m[3], b)
	keep := -b
	z[0] = x[0]&keep | r[0]&^keep
	z[1] = x[1]&keep | r[1]&^keep
	z[2] = x[2]&keep | r[2]&^keep
	z[3] = x[3]&keep | r[3]&^keep
}

func (x *scalar) isZero() bool { return x[0]|x[1]|x[2]|x[3] == 0 }

// invertVartime sets z = x⁻¹ mod m (plain, not Montgomery) for
// 0 < x < m, by the binary extended Euclidean algorithm (Hankerson,
// Menezes, Vanstone, Guide to Elliptic Curve Cryptography, algorithm
// 2.22). Its running time depends on x: use it on public values only
// (here s of a signature). About ten times faster than Fermat's x^(m-2)
// with montMul.
func invertVartime(z, x *scalar, m *modulus) {
	u, v := *x, m.m
	x1, x2 := scalar{1}, scalar{}
	one := scalar{1}
	for u != one && v != one {
		if k := trailingZeros(&u); k > 0 {
			shr(&u, k)
			divPow2(&x1, k, m)
		}
		if k := trailingZeros(&v); k > 0 {
			shr(&v, k)
			divPow2(&x2, k, m)
		}
		if !lessScalar(&u, &v) {
			sub(&u, &u, &v)
			subMod(&x1, &x1, &x2, m)
		} else {
			sub(&v, &v, &u)
			subMod(&x2, &x2, &x1, m)
		}
	}
	if u == one {
		*z = x1
	} else {
		*z = x2
	}
}

// trailingZeros returns the number of trailing zero bits of x != 0, at
// most 63 (the caller loops for more).
func trailingZeros(x *scalar) uint {
	if x[0] != 0 {
		return uint(bits.TrailingZeros64(x[0]))
	}
	return 63
}

// shr shifts x right by 0 < k < 64 bits.
func shr(x *scalar, k uint) {
	x[0] = x[0]>>k | x[1]<<(64-k)
	x[1] = x[1]>>k | x[2]<<(64-k)
	x[2] = x[2]>>k | x[3]<<(64-k)
	x[3] >>= k
}

// divPow2 sets x = x/2^k mod m for x < m and 0 < k < 64: adds the multiple
// q·m (q < 2^k) that makes the low k bits zero, then shifts (one step of
// Montgomery reduction, k bits wide).
func divPow2(x *scalar, k uint, m *modulus) {
	q := x[0] * m.m0inv & (1<<k - 1)
	var c, cc, hi, lo, carry uint64
	hi, lo = bits.Mul64(q, m.m[0])
	x[0], cc = bits.Add64(x[0], lo, 0)
	carry = hi + cc
	for i := 1; i < 4; i++ {
		hi, lo = bits.Mul64(q, m.m[i])
		lo, cc = bits.Add64(lo, carry, 0)
		hi += cc
		x[i], c = bits.Add64(x[i], lo, 0)
		carry = hi + c
	}
	// x + q·m < 2^(256+k): carry holds bits 256 and up.
	x[0] = x[0]>>k | x[1]<<(64-k)
	x[1] = x[1]>>k | x[2]<<(64-k)
	x[2] = x[2]>>k | x[3]<<(64-k)
	x[3] = x[3]>>k | carry<<(64-k)
	reduceOnce(x, x, m) // (x + q·m)/2^k < m·(1 + 2^-k)
}

// sub sets z = x - y for x >= y.
func sub(z, x, y *scalar) {
	var b uint64
	z[0], b = bits.Sub64(x[0], y[0], 0)
	z[1], b = bits.Sub64(x[1], y[1], b)
	z[2], b = bits.Sub64(x[2], y[2], b)
	z[3], _ = bits.Sub64(x[3], y[3], b)
}

// subMod sets z = x - y mod m for x, y < m.
func subMod(z, x, y *scalar, m *modulus) {
	var b, c uint64
	z[0], b = bits.Sub64(x[0], y[0], 0)
	z[1], b = bits.Sub64(x[1], y[1], b)
	z[2], b = bits.Sub64(x[2], y[2], b)
	z[3], b = bits.Sub64(x[3], y[3], b)
	if b != 0 {
		z[0], c = bits.Add64(z[0], m.m[0], 0)
		z[1], c = bits.Add64(z[1], m.m[1], c)
		z[2], c = bits.Add64(z[2], m.m[2], c)
		z[3], _ = bits.Add64(z[3], m.m[3], c)
	}
}

// addNoCarry sets z = x + y for x + y < 2²⁵⁶.
func addNoCarry(z, x, y *scalar) {
	var c uint64
	z[0], c = bits.Add64(x[0], y[0], 0)
	z[1], c = bits.Add64(x[1], y[1], c)
	z[2], c = bits.Add64(x[2], y[2], c)
	z[3], _ = bits.Add64(x[3], y[3], c)
}

// lessScalar reports whether x < y.
func lessScalar(x, y *scalar) bool {
	var b uint64
	_, b = bits.Sub64(x[0], y[0], 0)
	_, b = bits.Sub64(x[1], y[1], b)
	_, b = bits.Sub64(x[2], y[2], b)
	_, b = bits.Sub64(x[3], y[3], b)
	return b == 1
}

// setBytes sets z to the big-endian 32-byte b (no reduction).
func (z *scalar) setBytes(b []byte) {
	_ = b[31]
	z[3] = binary.BigEndian.Uint64(b[0:8])
	z[2] = binary.BigEndian.Uint64(b[8:16])
	z[1] = binary.BigEndian.Uint64(b[16:24])
	z[0] = binary.BigEndian.Uint64(b[24:32])
}

// putBytes writes x as 32 big-endian bytes.
func (x *scalar) putBytes(b *[32]byte) {
	binary.BigEndian.PutUint64(b[0:8], x[3])
	binary.BigEndian.PutUint64(b[8:16], x[2])
	binary.BigEndian.PutUint64(b[16:24], x[1])
	binary.BigEndian.PutUint64(b[24:32], x[0])
}
