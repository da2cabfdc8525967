package es256

import (
	"math/big"
	"testing"

	"github.com/shakenline/shakenline/internal/p256"
	"github.com/shakenline/shakenline/internal/p256/p256test"
)

// checkOps compares es256's own arithmetic (modAdd, invert) on (a, b) with
// math/big. internal/p256 checks the arithmetic it builds on.
func checkOps(t *testing.T, mc p256test.Case, a, b *big.Int) {
	t.Helper()
	m := mc.Big
	x, y := p256test.FromBig(a), p256test.FromBig(b)

	var z p256.Elem
	modAdd(&z, &x, &y, mc.M)
	want := new(big.Int).Add(a, b)
	want.Mod(want, m)
	if got := p256test.ToBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: modAdd(%x, %x) = %x, want %x", mc.Name, a, b, got, want)
	}

	// invert works in the Montgomery domain: feed a·R, expect a⁻¹·R.
	p256.ToMont(&z, &x, mc.M)
	invert(&z, &z, mc.M)
	p256.FromMont(&z, &z, mc.M)
	want = new(big.Int).ModInverse(a, m)
	if want == nil {
		want = new(big.Int) // 0 has no inverse; invert returns 0
	}
	if got := p256test.ToBig(&z); got.Cmp(want) != 0 {
		t.Fatalf("%s: invert(%x) = %x, want %x", mc.Name, a, got, want)
	}
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

func TestBatchInvert(t *testing.T) {
	for _, mc := range p256test.Moduli {
		vals := p256test.EdgeValues(mc.Big)[1:3] // 1, 2
		vals = append(vals, p256test.EdgeValues(mc.Big)[4:]...)
		var in, out, scratch []p256.Elem
		for _, v := range vals {
			if v.Sign() == 0 {
				continue
			}
			var e p256.Elem
			x := p256test.FromBig(v)
			p256.ToMont(&e, &x, mc.M)
			in = append(in, e)
		}
		out = make([]p256.Elem, len(in))
		scratch = make([]p256.Elem, len(in))
		batchInvert(out, in, scratch, mc.M)
		for i := range in {
			var prod p256.Elem
			p256.MontMul(&prod, &out[i], &in[i], mc.M)
			if prod != mc.M.One {
				t.Fatalf("%s: batchInvert element %d: x·x⁻¹ = %x", mc.Name, i, p256test.ToBig(&prod))
			}
		}
		for i := range scratch {
			if scratch[i] != (p256.Elem{}) {
				t.Fatalf("%s: batchInvert left scratch[%d] unwiped", mc.Name, i)
			}
		}
		// A zero input zeroes every output (the batch then yields r = 0 and
		// is discarded), never a wrong inverse.
		in[2] = p256.Elem{}
		batchInvert(out, in, scratch, mc.M)
		for i := range out {
			if out[i] != (p256.Elem{}) {
				t.Fatalf("%s: batchInvert with a zero input: out[%d] = %x", mc.Name, i, p256test.ToBig(&out[i]))
			}
		}
	}
}

// FuzzArith checks modAdd and invert against math/big on arbitrary
// 32-byte operands (reduced mod m first).
func FuzzArith(f *testing.F) { p256test.FuzzOperands(f, checkOps) }
