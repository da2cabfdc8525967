package p256verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"sync"
	"sync/atomic"

	"filippo.io/nistec"

	"github.com/shakenline/shakenline/internal/p256"
)

// ErrKey reports a public key that is not an ECDSA P-256 point.
var ErrKey = errors.New("p256verify: not a P-256 public key")

// Table geometry: u·Q is computed from signed base-2^w digits of u,
// d_i in [-2^(w-1), 2^(w-1)], as Σ d_i·2^(w·i)·Q, so the table holds
// j·2^(w·i)·Q for windows i < windows and j in [1, 2^(w-1)]; a negative
// digit negates the entry.
const (
	window  = 7
	windows = 256/window + 1 // one more for the carry out of the top digit
	digits  = 1 << (window - 1)
)

// TableBytes is the memory one key's table takes.
const TableBytes = windows * digits * pointBytes

const pointBytes = 96 // nistec.P256Point: three 4-limb coordinates

// table holds table[i][j-1] = j·2^(w·i)·Q. Immutable once built.
type table [windows][digits]nistec.P256Point

// Key is a P-256 public key prepared for repeated verification. It is
// cheap (one point decode); the table that makes verification fast is
// built by a Cache. Safe for concurrent use.
type Key struct {
	pub  *ecdsa.PublicKey
	q    nistec.P256Point
	freq atomic.Uint64 // epoch<<32 | uses in that epoch (see Cache)
	tab  atomic.Pointer[table]

	owner    atomic.Pointer[Cache] // the one Cache that may table k, set by its first admit
	building bool                  // guarded by owner's mutex
}

// NewKey decodes pub. It fails with ErrKey unless pub is a point on P-256
// (never the point at infinity).
func NewKey(pub *ecdsa.PublicKey) (*Key, error) {
	if pub == nil || pub.Curve != elliptic.P256() || pub.X == nil || pub.Y == nil { // Bytes panics on nil coordinates
		return nil, ErrKey
	}
	b, err := pub.Bytes() // uncompressed; fails for points off the curve
	if err != nil {
		return nil, ErrKey
	}
	jacobianTestRun.Do(func() { useJacobian = p256.JacobianOK() })
	k := &Key{pub: pub}
	if _, err := k.q.SetBytes(b); err != nil || len(b) != 65 { // SetBytes checks again
		return nil, ErrKey
	}
	return k, nil
}

// Public returns the key NewKey was given.
func (k *Key) Public() *ecdsa.PublicKey { return k.pub }

// Tabled reports whether k currently has its precomputed table.
func (k *Key) Tabled() bool { return k.tab.Load() != nil }

// newTable computes the fixed-base table of q: windows·digits point
// additions (2368 for w = 7), no doublings except one per window.
func newTable(q *nistec.P256Point) *table {
	t := new(table)
	base := new(nistec.P256Point).Set(q) // 2^(w·i)·Q
	for i := range t {
		t[i][0].Set(base)
		for j := 1; j < digits; j++ {
			t[i][j].Add(&t[i][j-1], base)
		}
		base.Double(&t[i][digits-1]) // 2·2^(w-1)·2^(w·i)·Q = 2^(w·(i+1))·Q
	}
	return t
}

// mulTable sets p = u·Q from t, for u < 2^256: one addition per non-zero
// signed digit. The digit selects the table entry directly and its sign
// decides a negation (variable time: u is derived from public data only).
// nistec's Add is complete, so no digit pattern is exceptional.
func mulTable(p *nistec.P256Point, t *table, u *p256.Elem) {
	p.Set(nistec.NewP256Point())
	var neg nistec.P256Point
	carry := uint(0)
	for i := 0; i < windows; i++ {
		d := rawDigit(u, i) + carry
		carry = 0
		switch {
		case d == 0:
		case d <= digits:
			p.Add(p, &t[i][d-1])
		default: // d - 2^w < 0
			d = 1<<window - d
			carry = 1
			if d != 0 {
				p.Add(p, neg.Negate(&t[i][d-1]))
			}
		}
	}
}

// rawDigit returns bits [w·i, w·i+w) of the little-endian u (zero past bit
// 255).
func rawDigit(u *p256.Elem, i int) uint {
	bit := uint(i * window)
	if bit >= 256 {
		return 0
	}
	limb, off := bit/64, bit%64
	d := u[limb] >> off
	if off+window > 64 && limb < 3 {
		d |= u[limb+1] << (64 - off)
	}
	return uint(d) & (1<<window - 1)
}

// scalars checks r and s and returns r (plain) and u1 = e/s, u2 = r/s mod n
// (plain), or ok = false when r or s is not in [1, n-1].
func scalars(digest *[32]byte, sig *[64]byte) (r, u1, u2 p256.Elem, ok bool) {
	var s, e, w p256.Elem
	p256.SetBytes(&r, (*[32]byte)(sig[:32]))
	p256.SetBytes(&s, (*[32]byte)(sig[32:]))
	if p256.IsZero(&r)|p256.IsZero(&s) == 1 || p256.LessThan(&r, &p256.OrderN)&p256.LessThan(&s, &p256.OrderN) == 0 {
		return r, u1, u2, false
	}
	// e is the digest as an integer (SHA-256 is exactly as long as n, so no
	// truncation, FIPS 186-5 section 6.4.2), reduced mod n.
	p256.SetBytes(&e, digest)
	p256.ReduceOnce(&e, &e, &p256.OrderN)
	invertVartime(&w, &s, &p256.OrderN)     // s⁻¹
	p256.ToMont(&w, &w, &p256.OrderN)       // s⁻¹·R
	p256.MontMul(&u1, &e, &w, &p256.OrderN) // e·s⁻¹ (plain)
	p256.MontMul(&u2, &r, &w, &p256.OrderN) // r·s⁻¹ (plain)
	return r, u1, u2, true
}

// verify checks sig (r||s, 32 bytes each, big-endian) over digest:
// R = u1·G + u2·Q must not be the point at infinity and x(R) mod n = r.
// With t == nil u2·Q is computed by nistec's ScalarMult (the cold path).
func (k *Key) verify(t *table, digest *[32]byte, sig *[64]byte) bool {
	r, u1, u2, ok := scalars(digest, sig)
	if !ok {
		return false
	}
	var b [32]byte
	var p1, p2 nistec.P256Point
	p256.PutBytes(&b, &u1)
	if _, err := p1.ScalarBaseMult(b[:]); err != nil {
		return false
	}
	if t != nil {
		mulTable(&p2, t, &u2)
	} else {
		p256.PutBytes(&b, &u2)
		if _, err := p2.ScalarMult(&k.q, b[:]); err != nil {
			return false
		}
	}
	p1.Add(&p1, &p2)
	return xModNEquals(&p1, &r)
}

// useJacobian is set, once by the first NewKey, when p256.JacobianXZ may be
// used (p256.JacobianOK).
var (
	useJacobian     bool
	jacobianTestRun sync.Once
)

// pMinusN is p - n: r + n < p exactly when r < p - n.
var pMinusN = p256.Elem{0x0c46353d039cdaae, 0x4319055358e8617b, 0, 0}

// xModNEquals reports whether p is not the point at infinity and its affine
// x coordinate reduced mod n equals r (r < n).
func xModNEquals(p *nistec.P256Point, r *p256.Elem) bool {
	if useJacobian {
		return xModNEqualsJacobian(p, r)
	}
	return xModNEqualsAffine(p, r)
}

func xModNEqualsAffine(p *nistec.P256Point, r *p256.Elem) bool {
	xb, err := p.BytesX() // fails for the point at infinity
	if err != nil {
		return false
	}
	var x p256.Elem
	p256.SetBytes(&x, (*[32]byte)(xb))
	p256.ReduceOnce(&x, &x, &p256.OrderN)
	return x == *r
}

// xModNEqualsJacobian: x = X/Z² is r or r + n (the only values < p that
// are r mod n, the latter when r + n < p) exactly when X = x·Z², all in
// the Montgomery domain mod p. Z = 0 is the point at infinity.
func xModNEqualsJacobian(p *nistec.P256Point, r *p256.Elem) bool {
	var x, z p256.Elem
	p256.JacobianXZ(p, &x, &z)
	if p256.IsZero(&z) == 1 {
		return false
	}
	var zz, t p256.Elem
	p256.MontMul(&zz, &z, &z, &p256.FieldP)
	p256.ToMont(&t, r, &p256.FieldP)
	p256.MontMul(&t, &t, &zz, &p256.FieldP)
	if t == x {
		return true
	}
	if !lessScalar(r, &pMinusN) {
		return false
	}
	var rn p256.Elem
	addNoCarry(&rn, r, &p256.OrderN.M)
	p256.ToMont(&t, &rn, &p256.FieldP)
	p256.MontMul(&t, &t, &zz, &p256.FieldP)
	return t == x
}
