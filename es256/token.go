package es256

import (
	"crypto/rand"
	"fmt"
	"runtime"

	"filippo.io/nistec"

	"github.com/shakenline/shakenline/internal/p256"
)

// token is one precomputed ECDSA nonce, used for exactly one signature:
//
//	kinv = k⁻¹·2²⁵⁶ mod n (Montgomery form, so p256.MontMul(kinv, e) = k⁻¹·e)
//	t    = k⁻¹·r·d mod n  (plain)
//	r    = x(k·G) mod n, big-endian
//
// The online step is then s = p256.MontMul(kinv, e) + t mod n: one Montgomery
// multiplication and one modular addition. k itself is never stored.
type token struct {
	kinv p256.Elem
	t    p256.Elem
	r    [32]byte
}

// batch is the scratch space for computing up to cap tokens at once. All of
// it is wiped by wipe after every use; a batch is owned by one goroutine at
// a time.
type batch struct {
	kbuf []byte      // 32 random bytes per token: the candidate k, big-endian
	k    []p256.Elem // k, then k·R, then k⁻¹·R (mod n)
	x    []p256.Elem // Jacobian X, then affine x, then r (mod p, then mod n)
	z    []p256.Elem // Jacobian Z, then Z², then Z⁻² (mod p, Montgomery form)
	tmp  []p256.Elem // batchInvert scratch
	pts  []*nistec.P256Point
	toks []token
	dM   p256.Elem // copy of the signer's d·R mod n, taken under its lock

	jacobian bool // read Jacobian X, Z from nistec (p256.JacobianXZ)
}

func newBatch(n int) *batch {
	b := &batch{
		kbuf: make([]byte, 32*n),
		k:    make([]p256.Elem, n),
		x:    make([]p256.Elem, n),
		z:    make([]p256.Elem, n),
		tmp:  make([]p256.Elem, n),
		pts:  make([]*nistec.P256Point, n),
		toks: make([]token, n),

		jacobian: p256.JacobianOK(),
	}
	for i := range b.pts {
		b.pts[i] = nistec.NewP256Point()
	}
	return b
}

var infinity = nistec.NewP256Point()

// wipe zeroes every secret the batch held.
func (b *batch) wipe() {
	clear(b.kbuf)
	clear(b.k)
	clear(b.x)
	clear(b.z)
	clear(b.tmp)
	clear(b.toks)
	b.dM = p256.Elem{}
	for _, p := range b.pts {
		p.Set(infinity)
	}
}

// drawK fills the first n nonces with k uniform in [1, n-1] from the system
// CSPRNG by rejection sampling: a 32-byte candidate is accepted iff
// 0 < k < n (the test itself is constant time). A rejection (probability
// about 2⁻³²) reveals only that a discarded value was out of range.
func (b *batch) drawK(n int) error {
	if _, err := rand.Read(b.kbuf[:32*n]); err != nil {
		return fmt.Errorf("%w: %w", ErrRandom, err)
	}
	for i := 0; i < n; i++ {
		kb := (*[32]byte)(b.kbuf[32*i : 32*i+32])
		for {
			p256.SetBytes(&b.k[i], kb)
			if p256.LessThan(&b.k[i], &p256.OrderN)&(1^p256.IsZero(&b.k[i])) == 1 {
				break
			}
			if _, err := rand.Read(kb[:]); err != nil {
				return fmt.Errorf("%w: %w", ErrRandom, err)
			}
		}
	}
	return nil
}

// finish turns the first n nonces (b.k and b.kbuf, both holding k) into
// tokens in b.toks and returns how many it made (n, unless some r was 0).
// b.dM must hold the private key in Montgomery form mod n. When yield is true the
// goroutine yields after every scalar multiplication so that refill work
// never keeps a signing goroutine waiting for a P for long.
func (b *batch) finish(n int, yield bool) int {
	for i := 0; i < n; i++ {
		b.mult(i)
		if yield {
			runtime.Gosched()
		}
	}
	return b.complete(n)
}

// mult computes the i-th nonce's k·G with nistec's constant-time fixed-base
// comb (Booth-encoded windows, constant-time table selects): the bulk of a
// token's cost, about 11 µs on the reference machine.
func (b *batch) mult(i int) {
	if _, err := b.pts[i].ScalarBaseMult(b.kbuf[32*i : 32*i+32]); err != nil {
		panic("es256: ScalarBaseMult rejected a 32-byte scalar")
	}
}

// complete turns the first n nonces, whose k·G mult has computed, into
// tokens (see finish) and returns how many it made.
func (b *batch) complete(n int) int {
	// Affine x = X/Z² with one field inversion for the whole batch.
	if b.jacobian {
		for i := 0; i < n; i++ {
			p256.JacobianXZ(b.pts[i], &b.x[i], &b.z[i])
			p256.MontMul(&b.z[i], &b.z[i], &b.z[i], &p256.FieldP)
		}
		batchInvert(b.z[:n], b.z[:n], b.tmp[:n], &p256.FieldP)
		for i := 0; i < n; i++ {
			p256.MontMul(&b.x[i], &b.x[i], &b.z[i], &p256.FieldP) // x·R
			p256.FromMont(&b.x[i], &b.x[i], &p256.FieldP)         // x
		}
	} else {
		for i := 0; i < n; i++ {
			var xb [32]byte
			bx, err := b.pts[i].BytesX()
			if err != nil { // infinity: impossible for 0 < k < n
				panic("es256: k·G is the point at infinity")
			}
			copy(xb[:], bx)
			p256.SetBytes(&b.x[i], &xb)
			clear(xb[:])
		}
	}

	// r = x mod n (x < p < 2n).
	for i := 0; i < n; i++ {
		p256.ReduceOnce(&b.x[i], &b.x[i], &p256.OrderN)
	}

	// k⁻¹ for the whole batch with one scalar inversion.
	for i := 0; i < n; i++ {
		p256.ToMont(&b.k[i], &b.k[i], &p256.OrderN)
	}
	batchInvert(b.k[:n], b.k[:n], b.tmp[:n], &p256.OrderN)

	made := 0
	for i := 0; i < n; i++ {
		if p256.IsZero(&b.x[i]) == 1 {
			// r = 0 (probability ~2⁻²⁵⁶): the nonce must not be used. The
			// branch reveals only that this discarded nonce was bad.
			continue
		}
		tok := &b.toks[made]
		tok.kinv = b.k[i]
		p256.MontMul(&tok.t, &b.k[i], &b.dM, &p256.OrderN)  // (k⁻¹R)(dR)/R = k⁻¹·d·R
		p256.MontMul(&tok.t, &tok.t, &b.x[i], &p256.OrderN) // (k⁻¹dR)(r)/R = k⁻¹·r·d
		p256.PutBytes(&tok.r, &b.x[i])
		made++
	}
	clear(b.kbuf[:32*n])
	clear(b.k[:n])
	clear(b.x[:n])
	clear(b.z[:n])
	return made
}

// online computes the signature (r, s) for the reduced digest e with tok and
// reports whether s is non-zero (a zero s must not be released).
func online(tok *token, e *p256.Elem, sig *[64]byte) bool {
	var s p256.Elem
	p256.MontMul(&s, &tok.kinv, e, &p256.OrderN) // k⁻¹·e
	modAdd(&s, &s, &tok.t, &p256.OrderN)         // k⁻¹·(e + r·d)
	*(*[32]byte)(sig[:32]) = tok.r
	p256.PutBytes((*[32]byte)(sig[32:]), &s)
	return p256.IsZero(&s) == 0
}
