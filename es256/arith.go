package es256

import (
	"math/bits"

	"github.com/shakenline/shakenline/internal/p256"
)

// es256's own constant-time arithmetic on top of internal/p256 (the
// moduli, Montgomery multiplication, reduction and byte conversion): modular
// addition for the online step, Fermat inversion and the batched inversion
// the offline step shares across a batch.
//
// Every function in this file is constant time in the values of its Elem
// arguments: only fixed-length loops, math/bits Add64/Sub64, mask selects
// and p256.MontMul. The only data-dependent branches are on exponent bits in
// invert, and the exponent there is the public constant m-2.

// modAdd sets z = x + y mod m for x, y < m.
func modAdd(z, x, y *p256.Elem, m *p256.Modulus) {
	var c, b uint64
	var t, r p256.Elem
	t[0], c = bits.Add64(x[0], y[0], 0)
	t[1], c = bits.Add64(x[1], y[1], c)
	t[2], c = bits.Add64(x[2], y[2], c)
	t[3], c = bits.Add64(x[3], y[3], c)
	r[0], b = bits.Sub64(t[0], m.M[0], 0)
	r[1], b = bits.Sub64(t[1], m.M[1], b)
	r[2], b = bits.Sub64(t[2], m.M[2], b)
	r[3], b = bits.Sub64(t[3], m.M[3], b)
	_, b = bits.Sub64(c, 0, b)
	keep := -b
	z[0] = t[0]&keep | r[0]&^keep
	z[1] = t[1]&keep | r[1]&^keep
	z[2] = t[2]&keep | r[2]&^keep
	z[3] = t[3]&keep | r[3]&^keep
}

// invert sets z = x⁻¹ in the Montgomery domain (x and z both Montgomery
// form), computed as x^(m-2) by Fermat's little theorem with a fixed 4-bit
// window. x = 0 gives z = 0. The exponent m-2 is public, so branching on and
// indexing with its bits leaks nothing about x. The table is indexed by
// exponent nibbles only.
func invert(z, x *p256.Elem, m *p256.Modulus) {
	var table [16]p256.Elem // table[i] = x^i (Montgomery form)
	table[0] = m.One
	table[1] = *x
	for i := 2; i < 16; i++ {
		p256.MontMul(&table[i], &table[i-1], x, m)
	}
	acc := m.One
	for i := 63; i >= 0; i-- {
		nib := (m.Exp[i/16] >> (uint(i%16) * 4)) & 0xf
		if i != 63 {
			p256.MontMul(&acc, &acc, &acc, m)
			p256.MontMul(&acc, &acc, &acc, m)
			p256.MontMul(&acc, &acc, &acc, m)
			p256.MontMul(&acc, &acc, &acc, m)
		}
		if nib != 0 { // public exponent bit pattern
			p256.MontMul(&acc, &acc, &table[nib], m)
		}
	}
	*z = acc
	clear(table[:])
}

// batchInvert sets out[i] = in[i]⁻¹ (Montgomery domain) for all i using
// Montgomery's trick: one invert and 3(len-1) multiplications. scratch must
// have len(in) elements; out may alias in. If any input is zero every output
// is zero.
func batchInvert(out, in, scratch []p256.Elem, m *p256.Modulus) {
	n := len(in)
	if n == 0 {
		return
	}
	_ = out[n-1]
	_ = scratch[n-1]
	scratch[0] = in[0]
	for i := 1; i < n; i++ {
		p256.MontMul(&scratch[i], &scratch[i-1], &in[i], m)
	}
	var inv, t p256.Elem
	invert(&inv, &scratch[n-1], m)
	for i := n - 1; i > 0; i-- {
		p256.MontMul(&t, &inv, &scratch[i-1], m) // in[i]⁻¹
		p256.MontMul(&inv, &inv, &in[i], m)      // (in[0]…in[i-1])⁻¹
		out[i] = t
	}
	out[0] = inv
	clear(scratch)
}
