package p256

import (
	"crypto/rand"
	"testing"

	"filippo.io/nistec"
)

// TestJacobianOK: on the assembly backends the self-test passes (if it
// failed there, nistec's layout changed and both es256 and p256verify
// would silently lose their fast path); elsewhere JacobianOK is false.
func TestJacobianOK(t *testing.T) {
	if got := JacobianOK(); got != JacobianAvailable {
		t.Fatalf("JacobianOK() = %v on a build with JacobianAvailable = %v", got, JacobianAvailable)
	}
}

// TestJacobianXZ compares JacobianXZ with BytesX on random points reached
// by scalar multiplication, addition and doubling (X = x·Z², Z ≠ 0), and
// expects Z = 0 for the point at infinity.
func TestJacobianXZ(t *testing.T) {
	if !JacobianAvailable {
		t.Skip("no assembly backend: JacobianXZ is not used")
	}
	for i := 0; i < 64; i++ {
		var k1, k2 [32]byte
		rand.Read(k1[:])
		rand.Read(k2[:])
		k1[0] &= 0x7f // < n
		k2[0] &= 0x7f
		p, err := nistec.NewP256Point().ScalarBaseMult(k1[:])
		if err != nil {
			t.Fatal(err)
		}
		q, err := nistec.NewP256Point().ScalarMult(p, k2[:])
		if err != nil {
			t.Fatal(err)
		}
		q.Add(q, p)
		q.Double(q)
		for _, pt := range []*nistec.P256Point{p, q} {
			if !jacobianMatches(pt) {
				t.Fatalf("JacobianXZ disagrees with BytesX for k1 = %x, k2 = %x", k1, k2)
			}
		}
	}
	if jacobianMatches(nistec.NewP256Point()) {
		t.Fatal("the point at infinity matched")
	}
	var x, z Elem
	JacobianXZ(nistec.NewP256Point(), &x, &z)
	if IsZero(&z) != 1 {
		t.Fatalf("point at infinity: Z = %x, want 0", z)
	}
}
