package p256_test

import (
	"math/big"
	"testing"

	"filippo.io/bigmod"

	"github.com/shakenline/shakenline/internal/p256"
	"github.com/shakenline/shakenline/internal/p256/p256test"
)

func TestModulusConstants(t *testing.T) {
	for _, mc := range p256test.Moduli {
		t.Run(mc.Name, func(t *testing.T) {
			if got := p256test.ToBig(&mc.M.M); got.Cmp(mc.Big) != 0 {
				t.Fatalf("m = %x, want %x", got, mc.Big)
			}
			rr := new(big.Int).Exp(p256test.R, big.NewInt(2), mc.Big)
			if got := p256test.ToBig(&mc.M.RR); got.Cmp(rr) != 0 {
				t.Errorf("rr = %x, want %x", got, rr)
			}
			one := new(big.Int).Mod(p256test.R, mc.Big)
			if got := p256test.ToBig(&mc.M.One); got.Cmp(one) != 0 {
				t.Errorf("one = %x, want %x", got, one)
			}
			exp := new(big.Int).Sub(mc.Big, big.NewInt(2))
			if got := p256test.ToBig(&mc.M.Exp); got.Cmp(exp) != 0 {
				t.Errorf("exp = %x, want %x", got, exp)
			}
			// -m⁻¹ mod 2⁶⁴
			w := new(big.Int).Lsh(big.NewInt(1), 64)
			k0 := new(big.Int).ModInverse(new(big.Int).Mod(mc.Big, w), w)
			k0.Sub(w, k0)
			if k0.Uint64() != mc.M.M0inv {
				t.Errorf("m0inv = %x, want %x", mc.M.M0inv, k0)
			}
		})
	}
}

// checkOps compares every function of arith.go on (a, b) with math/big.
func checkOps(t *testing.T, mc p256test.Case, a, b *big.Int) {
	t.Helper()
	m := mc.Big
	rinv := new(big.Int).ModInverse(p256test.R, m)
	x, y := p256test.FromBig(a), p256test.FromBig(b)

	var z p256.Elem
	p256.MontMul(&z, &x, &y, mc.M)
	want := new(big.Int).Mul(a, b)
	want.Mul(want, rinv).Mod(want, m)
	if got := p256test.ToBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: MontMul(%x, %x) = %x, want %x", mc.Name, a, b, got, want)
	}
	// Aliased operands.
	z = x
	p256.MontMul(&z, &z, &y, mc.M)
	if got := p256test.ToBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: MontMul aliased (%x, %x) = %x, want %x", mc.Name, a, b, got, want)
	}

	p256.ToMont(&z, &x, mc.M)
	want = new(big.Int).Mul(a, p256test.R)
	want.Mod(want, m)
	if got := p256test.ToBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: ToMont(%x) = %x, want %x", mc.Name, a, got, want)
	}
	p256.FromMont(&z, &z, mc.M)
	if got := p256test.ToBig(&z); got.Cmp(a) != 0 {
		t.Fatalf("%s: FromMont(ToMont(%x)) = %x", mc.Name, a, got)
	}

	if got := p256.LessThan(&x, mc.M); got != 1 {
		t.Fatalf("%s: LessThan(%x) = %d", mc.Name, a, got)
	}
	if got, w := p256.IsZero(&x), boolU(a.Sign() == 0); got != w {
		t.Fatalf("%s: IsZero(%x) = %d, want %d", mc.Name, a, got, w)
	}
}

func boolU(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func TestArithEdgeCases(t *testing.T) {
	for _, mc := range p256test.Moduli {
		vals := p256test.EdgeValues(mc.Big)
		for _, a := range vals {
			for _, b := range vals {
				checkOps(t, mc, a, b)
			}
		}
	}
}

func TestReduceOnceAndLessThan(t *testing.T) {
	for _, mc := range p256test.Moduli {
		ins := []*big.Int{
			new(big.Int).Sub(p256test.R, big.NewInt(1)),
			new(big.Int).Set(mc.Big),
			new(big.Int).Add(mc.Big, big.NewInt(1)),
			new(big.Int).Sub(mc.Big, big.NewInt(1)),
			big.NewInt(0),
		}
		for _, v := range ins {
			x := p256test.FromBig(v)
			if got, want := p256.LessThan(&x, mc.M), boolU(v.Cmp(mc.Big) < 0); got != want {
				t.Errorf("%s: LessThan(%x) = %d, want %d", mc.Name, v, got, want)
			}
			p256.ReduceOnce(&x, &x, mc.M)
			if got, want := p256test.ToBig(&x), new(big.Int).Mod(v, mc.Big); got.Cmp(want) != 0 {
				t.Errorf("%s: ReduceOnce(%x) = %x, want %x", mc.Name, v, got, want)
			}
		}
	}
}

// TestMatchesBigmod cross-checks modular multiplication with the audited
// filippo.io/bigmod on the edge values.
func TestMatchesBigmod(t *testing.T) {
	for _, mc := range p256test.Moduli {
		bm, err := bigmod.NewModulus(mc.Big.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		vals := p256test.EdgeValues(mc.Big)
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

				// a·b = MontMul(ToMont(a), b)
				ea, eb := p256test.FromBig(a), p256test.FromBig(b)
				var z p256.Elem
				p256.ToMont(&z, &ea, mc.M)
				p256.MontMul(&z, &z, &eb, mc.M)
				var got [32]byte
				p256.PutBytes(&got, &z)
				if string(got[:]) != string(want) {
					t.Fatalf("%s: %x·%x = %x, bigmod says %x", mc.Name, a, b, got, want)
				}
			}
		}
	}
}

// FuzzArith checks MontMul, ToMont/FromMont, LessThan and IsZero against
// math/big on arbitrary 32-byte operands (reduced mod m first).
func FuzzArith(f *testing.F) { p256test.FuzzOperands(f, checkOps) }

func BenchmarkMontMul(b *testing.B) {
	x, y := p256.Elem{1, 2, 3, 4}, p256.Elem{5, 6, 7, 8}
	for b.Loop() {
		p256.MontMul(&x, &x, &y, &p256.OrderN)
	}
}
