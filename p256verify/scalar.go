package p256verify

import (
	"math/bits"

	"github.com/shakenline/shakenline/internal/p256"
)

// This file is p256verify's own arithmetic on top of internal/p256 (the
// moduli, Montgomery multiplication, reduction and byte conversion).
// Everything here works on public values (signatures, digests, public-key
// coordinates), so nothing needs to be constant time: invertVartime
// branches on its input.

// invertVartime sets z = x⁻¹ mod m (plain, not Montgomery) for
// 0 < x < m, by the binary extended Euclidean algorithm (Hankerson,
// Menezes, Vanstone, Guide to Elliptic Curve Cryptography, algorithm
// 2.22). Its running time depends on x: use it on public values only
// (here s of a signature). About ten times faster than Fermat's x^(m-2)
// with p256.MontMul.
func invertVartime(z, x *p256.Elem, m *p256.Modulus) {
	u, v := *x, m.M
	x1, x2 := p256.Elem{1}, p256.Elem{}
	one := p256.Elem{1}
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
func trailingZeros(x *p256.Elem) uint {
	if x[0] != 0 {
		return uint(bits.TrailingZeros64(x[0]))
	}
	return 63
}

// shr shifts x right by 0 < k < 64 bits.
func shr(x *p256.Elem, k uint) {
	x[0] = x[0]>>k | x[1]<<(64-k)
	x[1] = x[1]>>k | x[2]<<(64-k)
	x[2] = x[2]>>k | x[3]<<(64-k)
	x[3] >>= k
}

// divPow2 sets x = x/2^k mod m for x < m and 0 < k < 64: adds the multiple
// q·m (q < 2^k) that makes the low k bits zero, then shifts (one step of
// Montgomery reduction, k bits wide).
func divPow2(x *p256.Elem, k uint, m *p256.Modulus) {
	q := x[0] * m.M0inv & (1<<k - 1)
	var c, cc, hi, lo, carry uint64
	hi, lo = bits.Mul64(q, m.M[0])
	x[0], cc = bits.Add64(x[0], lo, 0)
	carry = hi + cc
	for i := 1; i < 4; i++ {
		hi, lo = bits.Mul64(q, m.M[i])
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
	p256.ReduceOnce(x, x, m) // (x + q·m)/2^k < m·(1 + 2^-k)
}

// sub sets z = x - y for x >= y.
func sub(z, x, y *p256.Elem) {
	var b uint64
	z[0], b = bits.Sub64(x[0], y[0], 0)
	z[1], b = bits.Sub64(x[1], y[1], b)
	z[2], b = bits.Sub64(x[2], y[2], b)
	z[3], _ = bits.Sub64(x[3], y[3], b)
}

// subMod sets z = x - y mod m for x, y < m.
func subMod(z, x, y *p256.Elem, m *p256.Modulus) {
	var b, c uint64
	z[0], b = bits.Sub64(x[0], y[0], 0)
	z[1], b = bits.Sub64(x[1], y[1], b)
	z[2], b = bits.Sub64(x[2], y[2], b)
	z[3], b = bits.Sub64(x[3], y[3], b)
	if b != 0 {
		z[0], c = bits.Add64(z[0], m.M[0], 0)
		z[1], c = bits.Add64(z[1], m.M[1], c)
		z[2], c = bits.Add64(z[2], m.M[2], c)
		z[3], _ = bits.Add64(z[3], m.M[3], c)
	}
}

// addNoCarry sets z = x + y for x + y < 2²⁵⁶.
func addNoCarry(z, x, y *p256.Elem) {
	var c uint64
	z[0], c = bits.Add64(x[0], y[0], 0)
	z[1], c = bits.Add64(x[1], y[1], c)
	z[2], c = bits.Add64(x[2], y[2], c)
	z[3], _ = bits.Add64(x[3], y[3], c)
}

// lessScalar reports whether x < y.
func lessScalar(x, y *p256.Elem) bool {
	var b uint64
	_, b = bits.Sub64(x[0], y[0], 0)
	_, b = bits.Sub64(x[1], y[1], b)
	_, b = bits.Sub64(x[2], y[2], b)
	_, b = bits.Sub64(x[3], y[3], b)
	return b == 1
}
