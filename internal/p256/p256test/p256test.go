// Package p256test holds the math/big reference values the tests of
// internal/p256, es256 and p256verify check their arithmetic against: the
// two P-256 moduli as big.Int, conversions between big.Int and p256.Elem,
// and boundary operands. It is imported by tests only.
package p256test

import (
	"math/big"
	"testing"

	"github.com/shakenline/shakenline/internal/p256"
)

var (
	// P is the P-256 field prime, N the group order, R = 2²⁵⁶.
	P = hexBig("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff")
	N = hexBig("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
	R = new(big.Int).Lsh(big.NewInt(1), 256)
)

// Case is one modulus with its big.Int value.
type Case struct {
	Name string
	M    *p256.Modulus
	Big  *big.Int
}

// Moduli are the two P-256 moduli: p first, then n.
var Moduli = []Case{{"p", &p256.FieldP, P}, {"n", &p256.OrderN, N}}

func hexBig(s string) *big.Int {
	v, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("bad hex " + s)
	}
	return v
}

// ToBig returns x as a big.Int.
func ToBig(x *p256.Elem) *big.Int {
	var b [32]byte
	p256.PutBytes(&b, x)
	return new(big.Int).SetBytes(b[:])
}

// FromBig returns v (which must fit 256 bits) as an Elem.
func FromBig(v *big.Int) p256.Elem {
	var b [32]byte
	v.FillBytes(b[:])
	var e p256.Elem
	p256.SetBytes(&e, &b)
	return e
}

// EdgeValues are Wycheproof-style boundary operands for modulus m: zero,
// one, small values, m-1, m-2, (m±1)/2, powers of two at limb boundaries,
// limbs of all ones and alternating patterns, all reduced mod m.
func EdgeValues(m *big.Int) []*big.Int {
	one := big.NewInt(1)
	vals := []*big.Int{
		big.NewInt(0), big.NewInt(1), big.NewInt(2), big.NewInt(3),
		new(big.Int).Sub(m, one),
		new(big.Int).Sub(m, big.NewInt(2)),
		new(big.Int).Rsh(m, 1),
		new(big.Int).Add(new(big.Int).Rsh(m, 1), one),
		new(big.Int).Sub(R, one),                   // 2²⁵⁶-1 reduced
		new(big.Int).Sub(R, m),                     // 2²⁵⁶ mod m
		new(big.Int).Sub(P, N),                     // p - n
		hexBig("ffffffffffffffffffffffffffffffff"), // 2¹²⁸-1
		hexBig("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
		hexBig("5555555555555555555555555555555555555555555555555555555555555555"),
		hexBig("ffffffff00000000ffffffff00000000ffffffff00000000ffffffff00000000"),
		hexBig("00000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
	}
	for _, sh := range []uint{63, 64, 127, 128, 191, 192, 224, 255} {
		p := new(big.Int).Lsh(one, sh)
		vals = append(vals, p, new(big.Int).Sub(p, one))
	}
	for i, v := range vals {
		vals[i] = new(big.Int).Mod(v, m)
	}
	return vals
}

// FuzzOperands runs check on two operands reduced mod one of the moduli
// (p when the fuzzer's bool is set, else n), from arbitrary byte strings
// of at most 32 bytes, seeded with the edge values around p and n.
func FuzzOperands(f *testing.F, check func(t *testing.T, mc Case, x, y *big.Int)) {
	f.Add([]byte{1}, []byte{2}, false)
	f.Add(N.Bytes(), P.Bytes(), true)
	f.Add(new(big.Int).Sub(N, big.NewInt(1)).Bytes(), []byte{0xff, 0xff}, false)
	f.Add(new(big.Int).Sub(P, big.NewInt(1)).Bytes(), new(big.Int).Sub(P, big.NewInt(1)).Bytes(), true)
	f.Add([]byte{}, []byte{0x80}, true)
	f.Fuzz(func(t *testing.T, a, b []byte, useP bool) {
		if len(a) > 32 || len(b) > 32 {
			return
		}
		mc := Moduli[1]
		if useP {
			mc = Moduli[0]
		}
		x := new(big.Int).Mod(new(big.Int).SetBytes(a), mc.Big)
		y := new(big.Int).Mod(new(big.Int).SetBytes(b), mc.Big)
		check(t, mc, x, y)
	})
}
