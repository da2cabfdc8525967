package es256

import (
	"math/big"
	"testing"

	"filippo.io/bigmod"
)

var (
	bigP = hexBig("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff")
	bigN = hexBig("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
	bigR = new(big.Int).Lsh(big.NewInt(1), 256)
)

func hexBig(s string) *big.Int {
	v, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("bad hex " + s)
	}
	return v
}

func toBig(x *elem) *big.Int {
	var b [32]byte
	putBytes(&b, x)
	return new(big.Int).SetBytes(b[:])
}

// fromBig returns v (which must fit 256 bits) as an elem.
func fromBig(v *big.Int) elem {
	var b [32]byte
	v.FillBytes(b[:])
	var e elem
	setBytes(&e, &b)
	return e
}

type modCase struct {
	name string
	m    *modulus
	big  *big.Int
}

var moduli = []modCase{{"p", &fieldP, bigP}, {"n", &orderN, bigN}}

func TestModulusConstants(t *testing.T) {
	for _, mc := range moduli {
		t.Run(mc.name, func(t *testing.T) {
			if got := toBig(&mc.m.m); got.Cmp(mc.big) != 0 {
				t.Fatalf("m = %x, want %x", got, mc.big)
			}
			rr := new(big.Int).Exp(bigR, big.NewInt(2), mc.big)
			if got := toBig(&mc.m.rr); got.Cmp(rr) != 0 {
				t.Errorf("rr = %x, want %x", got, rr)
			}
			one := new(big.Int).Mod(bigR, mc.big)
			if got := toBig(&mc.m.one); got.Cmp(one) != 0 {
				t.Errorf("one = %x, want %x", got, one)
			}
			exp := new(big.Int).Sub(mc.big, big.NewInt(2))
			if got := toBig(&mc.m.exp); got.Cmp(exp) != 0 {
				t.Errorf("exp = %x, want %x", got, exp)
			}
			// -m⁻¹ mod 2⁶⁴
			w := new(big.Int).Lsh(big.NewInt(1), 64)
			k0 := new(big.Int).ModInverse(new(big.Int).Mod(mc.big, w), w)
			k0.Sub(w, k0)
			if k0.Uint64() != mc.m.m0inv {
				t.Errorf("m0inv = %x, want %x", mc.m.m0inv, k0)
			}
		})
	}
}

// edgeValues are Wycheproof-style boundary operands for modulus m: zero,
// one, small values, m-1, m-2, (m±1)/2, powers of two at limb boundaries,
// limbs of all ones and alternating patterns, all reduced mod m.
func edgeValues(m *big.Int) []*big.Int {
	one := big.NewInt(1)
	vals := []*big.Int{
		big.NewInt(0), big.NewInt(1), big.NewInt(2), big.NewInt(3),
		new(big.Int).Sub(m, one),
		new(big.Int).Sub(m, big.NewInt(2)),
		new(big.Int).Rsh(m, 1),
		new(big.Int).Add(new(big.Int).Rsh(m, 1), one),
		new(big.Int).Sub(bigR, one),                // 2²⁵⁶-1 reduced
		new(big.Int).Sub(bigR, m),                  // 2²⁵⁶ mod m
		new(big.Int).Sub(bigP, bigN),               // p - n
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

// checkOps compares every arithmetic function on (a, b) with math/big.
func checkOps(t *testing.T, mc modCase, a, b *big.Int) {
	t.Helper()
	m := mc.big
	rinv := new(big.Int).ModInverse(bigR, m)
	x, y := fromBig(a), fromBig(b)

	var z elem
	montMul(&z, &x, &y, mc.m)
	want := new(big.Int).Mul(a, b)
	want.Mul(want, rinv).Mod(want, m)
	if got := toBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: montMul(%x, %x) = %x, want %x", mc.name, a, b, got, want)
	}
	// Aliased operands.
	z = x
	montMul(&z, &z, &y, mc.m)
	if got := toBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: montMul aliased (%x, %x) = %x, want %x", mc.name, a, b, got, want)
	}

	modAdd(&z, &x, &y, mc.m)
	want = new(big.Int).Add(a, b)
	want.Mod(want, m)
	if got := toBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: modAdd(%x, %x) = %x, want %x", mc.name, a, b, got, want)
	}

	toMont(&z, &x, mc.m)
	want = new(big.Int).Mul(a, bigR)
	want.Mod(want, m)
	if got := toBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: toMont(%x) = %x, want %x", mc.name, a, got, want)
	}
	fromMont(&z, &z, mc.m)
	if got := toBig(&z); got.Cmp(a) != 0 {
		t.Fatalf("%s: fromMont(toMont(%x)) = %x", mc.name, a, got)
	}

	// invert works in the Montgomery domain: feed a·R, expect a⁻¹·R.
	toMont(&z, &x, mc.m)
	invert(&z, &z, mc.m)
	fromMont(&z, &z, mc.m)
	want = new(big.Int).ModInverse(a, m)
	if want == nil {
		want = new(big.Int) // 0 has no inverse; invert returns 0
	}
	if got := toBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: invert(%x) = %x, want %x", mc.name, a, got, want)
	}

	if got, w := lessThan(&x, mc.m), uint64(1); got != w {
		t.Fatalf("%s: lessThan(%x) = %d", mc.name, a, got)
	}
	if got, w := isZero(&x), boolU(a.Sign() == 0); got != w {
		t.Fatalf("%s: isZero(%x) = %d, want %d", mc.name, a, got, w)
	}
}

func boolU(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func TestArithEdgeCases(t *testing.T) {
	for _, mc := range moduli {
		vals := edgeValues(mc.big)
		for _, a := range vals {
			for _, b := range vals {
				checkOps(t, mc, a, b)
			}
		}
	}
}

func TestReduceOnceAndLessThan(t *testing.T) {
	for _, mc := range moduli {
		ins := []*big.Int{
			new(big.Int).Sub(bigR, big.NewInt(1)),
			new(big.Int).Set(mc.big),
			new(big.Int).Add(mc.big, big.NewInt(1)),
			new(big.Int).Sub(mc.big, big.NewInt(1)),
			big.NewInt(0),
		}
		for _, v := range ins {
			x := fromBig(v)
			if got, want := lessThan(&x, mc.m), boolU(v.Cmp(mc.big) < 0); got != want {
				t.Errorf("%s: lessThan(%x) = %d, want %d", mc.name, v, got, want)
			}
			reduceOnce(&x, &x, mc.m)
			if got, want := toBig(&x), new(big.Int).Mod(v, mc.big); got.Cmp(want) != 0 {
				t.Errorf("%s: reduceOnce(%x) = %x, want %x", mc.name, v, got, want)
			}
		}
	}
}

func TestBatchInvert(t *testing.T) {
	for _, mc := range moduli {
		vals := edgeValues(mc.big)[1:3] // 1, 2
		vals = append(vals, edgeValues(mc.big)[4:]...)
		var in, out, scratch []elem
		for _, v := range vals {
			if v.Sign() == 0 {
				continue
			}
			var e elem
			x := fromBig(v)
			toMont(&e, &x, mc.m)
			in = append(in, e)
		}
		out = make([]elem, len(in))
		scratch = make([]elem, len(in))
		batchInvert(out, in, scratch, mc.m)
		for i := range in {
			var prod elem
			montMul(&prod, &out[i], &in[i], mc.m)
			if prod != mc.m.one {
				t.Fatalf("%s: batchInvert element %d: x·x⁻¹ = %x", mc.name, i, toBig(&prod))
			}
		}
		for i := range scratch {
			if scratch[i] != (elem{}) {
				t.Fatalf("%s: batchInvert left scratch[%d] unwiped", mc.name, i)
			}
		}
		// A zero input zeroes every output (the batch then yields r = 0 and
		// is discarded), never a wrong inverse.
		in[2] = elem{}
		batchInvert(out, in, scratch, mc.m)
		for i := range out {
			if out[i] != (elem{}) {
				t.Fatalf("%s: batchInvert with a zero input: out[%d] = %x", mc.name, i, toBig(&out[i]))
			}
		}
	}
}

// TestMatchesBigmod cross-checks modular multiplication with the audited
// filippo.io/bigmod on the edge values.
func TestMatchesBigmod(t *testing.T) {
	for _, mc := range moduli {
		bm, err := bigmod.NewModulus(mc.big.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		vals := edgeValues(mc.big)
		for _, a := range vals {
			for _, b := range vals {
				var ab, bb [32]byte
				a.FillBytes(ab[:])
				b.FillBytes(bb[:])
				x, err := bigmod.NewNat().SetBytes(ab[:], bm)
				if err != nil {
					t.Fatal(err)
				}
				y, err := bigmod.NewNat().SetBytes(bb[:], bm)
				if err != nil {
					t.Fatal(err)
				}
				want := x.Mul(y, bm).Bytes(bm) // a·b mod m

				// a·b = montMul(toMont(a), b)
				ea, eb := fromBig(a), fromBig(b)
				var z elem
				toMont(&z, &ea, mc.m)
				montMul(&z, &z, &eb, mc.m)
				var got [32]byte
				putBytes(&got, &z)
				if string(got[:]) != string(want) {
					t.Fatalf("%s: %x·%x = %x, bigmod says %x", mc.name, a, b, got, want)
				}
			}
		}
	}
}

// FuzzArith checks montMul, modAdd, toMont/fromMont and invert against
// math/big on arbitrary 32-byte operands (reduced mod m first).
func FuzzArith(f *testing.F) {
	f.Add([]byte{1}, []byte{2}, false)
	f.Add(bigN.Bytes(), bigP.Bytes(), true)
	f.Add(new(big.Int).Sub(bigN, big.NewInt(1)).Bytes(), []byte{0xff, 0xff}, false)
	f.Add(new(big.Int).Sub(bigP, big.NewInt(1)).Bytes(), new(big.Int).Sub(bigP, big.NewInt(1)).Bytes(), true)
	f.Add([]byte{}, []byte{0x80}, true)
	f.Fuzz(func(t *testing.T, a, b []byte, useP bool) {
		if len(a) > 32 || len(b) > 32 {
			return
		}
		mc := moduli[1]
		if useP {
			mc = moduli[0]
		}
		x := new(big.Int).Mod(new(big.Int).SetBytes(a), mc.big)
		y := new(big.Int).Mod(new(big.Int).SetBytes(b), mc.big)
		checkOps(t, mc, x, y)
	})
}
