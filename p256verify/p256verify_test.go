package p256verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"sync"
	"testing"

	"filippo.io/nistec"

	"github.com/shakenline/shakenline/internal/p256"
)

var (
	curve = elliptic.P256()
	n     = curve.Params().N
)

// keyFromD returns the P-256 key with private scalar d (1 <= d < n).
func keyFromD(d *big.Int) *ecdsa.PrivateKey {
	k := &ecdsa.PrivateKey{D: new(big.Int).Set(d)}
	k.Curve = curve
	k.X, k.Y = curve.ScalarBaseMult(d.FillBytes(make([]byte, 32)))
	return k
}

// signWithK is textbook ECDSA with a chosen nonce k, so tests can build
// signatures with chosen properties. ok is false when r or s is zero.
func signWithK(priv *ecdsa.PrivateKey, digest []byte, k *big.Int) (sig [64]byte, ok bool) {
	x, _ := curve.ScalarBaseMult(new(big.Int).Mod(k, n).FillBytes(make([]byte, 32)))
	r := new(big.Int).Mod(x, n)
	e := new(big.Int).SetBytes(digest)
	s := new(big.Int).Mul(r, priv.D)
	s.Add(s, e)
	s.Mul(s, new(big.Int).ModInverse(k, n))
	s.Mod(s, n)
	if r.Sign() == 0 || s.Sign() == 0 {
		return sig, false
	}
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, true
}

func rawSig(r, s *big.Int) (sig [64]byte) {
	new(big.Int).Mod(r, new(big.Int).Lsh(big.NewInt(1), 256)).FillBytes(sig[:32])
	new(big.Int).Mod(s, new(big.Int).Lsh(big.NewInt(1), 256)).FillBytes(sig[32:])
	return sig
}

// check compares the cold path, the table path and crypto/ecdsa on one
// input and returns the common verdict.
func check(t testing.TB, k *Key, tab *table, digest *[32]byte, sig *[64]byte) bool {
	t.Helper()
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	want := ecdsa.Verify(k.pub, digest[:], r, s)
	cold := k.verify(nil, digest, sig)
	hot := k.verify(tab, digest, sig)
	if cold != want || hot != want {
		t.Fatalf("key %x digest %x sig %x: crypto/ecdsa %v, cold %v, table %v", k.pub.X, digest, sig, want, cold, hot)
	}
	return want
}

func mustKey(t testing.TB, priv *ecdsa.PrivateKey) (*Key, *table) {
	t.Helper()
	k, err := NewKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, newTable(&k.q)
}

// TestMatchesECDSA: random keys, messages and genuine signatures, each
// also mutated (flipped bits, wrong key, r or s out of range, high s).
func TestMatchesECDSA(t *testing.T) {
	nMinus1 := new(big.Int).Sub(n, big.NewInt(1))
	max256 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	privs := []*ecdsa.PrivateKey{keyFromD(big.NewInt(1)), keyFromD(big.NewInt(2)), keyFromD(nMinus1)}
	for range 12 {
		p, _ := ecdsa.GenerateKey(curve, rand.Reader)
		privs = append(privs, p)
	}
	other, _ := ecdsa.GenerateKey(curve, rand.Reader)
	otherKey, otherTab := mustKey(t, other)
	for ki, priv := range privs {
		k, tab := mustKey(t, priv)
		for i := range 12 {
			digest := sha256.Sum256([]byte{byte(ki), byte(i)})
			switch i {
			case 0:
				digest = [32]byte{} // e = 0: u1 = 0
			case 1:
				for j := range digest {
					digest[j] = 0xff // e > n: reduced
				}
			case 2:
				n.FillBytes(digest[:]) // e = n ≡ 0
			}
			r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
			if err != nil {
				t.Fatal(err)
			}
			sig := rawSig(r, s)
			if !check(t, k, tab, &digest, &sig) {
				t.Fatal("genuine signature refused")
			}
			high := rawSig(r, new(big.Int).Sub(n, s)) // high/low s: both valid ECDSA
			if !check(t, k, tab, &digest, &high) {
				t.Fatal("negated s refused")
			}
			if check(t, otherKey, otherTab, &digest, &sig) {
				t.Fatal("wrong key accepted")
			}
			for _, bad := range []struct{ r, s *big.Int }{
				{big.NewInt(0), s}, {r, big.NewInt(0)}, {n, s}, {r, n},
				{new(big.Int).Add(r, n), s}, {r, new(big.Int).Add(s, n)},
				{max256, s}, {r, max256}, {nMinus1, nMinus1}, {big.NewInt(1), big.NewInt(1)},
			} {
				if bad.r.BitLen() > 256 || bad.s.BitLen() > 256 {
					continue
				}
				b := rawSig(bad.r, bad.s)
				if check(t, k, tab, &digest, &b) {
					t.Fatalf("bad r/s accepted: %x", b)
				}
			}
			for bit := i; bit < 512; bit += 37 {
				b := sig
				b[bit/8] ^= 1 << (bit % 8)
				check(t, k, tab, &digest, &b)
			}
			d2 := digest
			d2[i] ^= 0x40
			if check(t, k, tab, &d2, &sig) {
				t.Fatal("flipped digest accepted")
			}
		}
	}
}

// TestExceptionalSums builds signatures whose u1·G and u2·Q are equal (the
// final addition is a doubling) or opposite (the sum is the point at
// infinity): e = ±r·d mod n.
func TestExceptionalSums(t *testing.T) {
	for i := range 8 {
		priv, _ := ecdsa.GenerateKey(curve, rand.Reader)
		k, tab := mustKey(t, priv)
		nonce, _ := rand.Int(rand.Reader, n)
		if nonce.Sign() == 0 {
			continue
		}
		x, _ := curve.ScalarBaseMult(nonce.FillBytes(make([]byte, 32)))
		r := new(big.Int).Mod(x, n)
		// Equal: e = r·d, s = 2·r·d/k makes R = k·G and the signature valid.
		e := new(big.Int).Mul(r, priv.D)
		e.Mod(e, n)
		var digest [32]byte
		e.FillBytes(digest[:])
		sig, ok := signWithK(priv, digest[:], nonce)
		if !ok {
			continue
		}
		if !check(t, k, tab, &digest, &sig) {
			t.Fatalf("case %d: valid signature with u1·G = u2·Q refused", i)
		}
		// Opposite: e = -r·d gives u1·G + u2·Q = O for any s.
		e.Sub(n, e)
		e.FillBytes(digest[:])
		for _, s := range []*big.Int{big.NewInt(1), big.NewInt(7), nonce} {
			b := rawSig(r, s)
			if check(t, k, tab, &digest, &b) {
				t.Fatalf("case %d: sum at infinity accepted", i)
			}
		}
	}
}

// TestXModN: the x coordinate is reduced mod n before the comparison (a
// point with n <= x < p matches r = x - n).
func TestXModN(t *testing.T) {
	p := curve.Params().P
	x := new(big.Int).Set(n)
	for ; x.Cmp(p) < 0; x.Add(x, big.NewInt(1)) {
		y2 := new(big.Int).Mul(x, x)
		y2.Mul(y2, x)
		y2.Sub(y2, new(big.Int).Mul(big.NewInt(3), x))
		y2.Add(y2, curve.Params().B)
		y2.Mod(y2, p)
		y := new(big.Int).ModSqrt(y2, p)
		if y == nil {
			continue
		}
		var b [65]byte
		b[0] = 4
		x.FillBytes(b[1:33])
		y.FillBytes(b[33:])
		pt, err := nistec.NewP256Point().SetBytes(b[:])
		if err != nil {
			t.Fatal(err)
		}
		var r, r1 p256.Elem
		var rb [32]byte
		new(big.Int).Sub(x, n).FillBytes(rb[:])
		p256.SetBytes(&r, &rb)
		r1 = r
		r1[0] ^= 1
		for name, f := range map[string]func(*nistec.P256Point, *p256.Elem) bool{
			"affine": xModNEqualsAffine, "jacobian": xModNEqualsJacobian, "chosen": xModNEquals} {
			if name == "jacobian" && !p256.JacobianAvailable {
				continue
			}
			if !f(pt, &r) {
				t.Fatalf("%s: x = %x: x - n not matched", name, x)
			}
			if f(pt, &r1) {
				t.Fatalf("%s: x = %x: x - n ^ 1 matched", name, x)
			}
			if f(nistec.NewP256Point(), &r) || f(nistec.NewP256Point(), &p256.Elem{}) {
				t.Fatalf("%s: point at infinity matched", name)
			}
			// The same point with Z ≠ 1: 2·pt - pt.
			q := nistec.NewP256Point().Double(pt)
			q.Add(q, nistec.NewP256Point().Negate(pt))
			if !f(q, &r) {
				t.Fatalf("%s: Z != 1: x - n not matched", name)
			}
		}
		jacobianTestRun.Do(func() { useJacobian = p256.JacobianOK() })
		if p256.JacobianAvailable && !useJacobian {
			t.Error("Jacobian self-test failed on an assembly backend")
		}
		pn := new(big.Int).Sub(curve.Params().P, n).FillBytes(make([]byte, 32))
		var pns p256.Elem
		p256.SetBytes(&pns, (*[32]byte)(pn))
		if pns != pMinusN {
			t.Errorf("pMinusN = %x, want %x", pMinusN, pns)
		}
		return
	}
	t.Fatal("no point with n <= x < p found")
}

// TestScalarArith checks invertVartime mod n against math/big.
func TestScalarArith(t *testing.T) {
	for i := range 300 {
		a, _ := rand.Int(rand.Reader, n)
		switch i {
		case 0:
			a = big.NewInt(1)
		case 1:
			a = new(big.Int).Sub(n, big.NewInt(1))
		case 2:
			a = big.NewInt(2)
		}
		if a.Sign() == 0 {
			continue
		}
		var s, w, one, p p256.Elem
		p256.SetBytes(&s, (*[32]byte)(a.FillBytes(make([]byte, 32))))
		invertVartime(&w, &s, &p256.OrderN)
		p256.ToMont(&p, &w, &p256.OrderN)      // w·R
		p256.MontMul(&p, &p, &s, &p256.OrderN) // w·s
		if one = (p256.Elem{1}); p != one {
			t.Fatalf("MontMul(1/%x, %x) = %x, want 1", a, a, p)
		}
		var wb [32]byte
		p256.PutBytes(&wb, &w)
		if want := new(big.Int).ModInverse(a, n); new(big.Int).SetBytes(wb[:]).Cmp(want) != 0 {
			t.Fatalf("1/%x = %x, want %x", a, wb, want)
		}
	}
}

func TestNewKey(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(curve, rand.Reader)
	if _, err := NewKey(&priv.PublicKey); err != nil {
		t.Fatal(err)
	}
	bad := priv.PublicKey
	bad.Y = new(big.Int).Add(bad.Y, big.NewInt(1))
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, pub := range []*ecdsa.PublicKey{nil, &bad, &p384.PublicKey, {Curve: curve, X: big.NewInt(0), Y: big.NewInt(0)}, {Curve: curve}} {
		if _, err := NewKey(pub); err == nil {
			t.Errorf("NewKey(%v) accepted", pub)
		}
	}
}

// TestTableEntries: table entries are j·2^(w·i)·Q.
func TestTableEntries(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(curve, rand.Reader)
	k, tab := mustKey(t, priv)
	for i := 0; i < windows; i += 7 {
		for j := 1; j <= digits; j += 5 {
			e := new(big.Int).Lsh(big.NewInt(int64(j)), uint(window*i))
			want, _ := nistec.NewP256Point().ScalarMult(&k.q, new(big.Int).Mod(e, n).FillBytes(make([]byte, 32)))
			if tab[i][j-1].Equal(want) != 1 {
				t.Fatalf("table[%d][%d] != %d·2^%d·Q", i, j-1, j, window*i)
			}
		}
	}
	// mulTable on scalars with extreme digits (all ones: every digit
	// negative with a carry; 2^(w-1) patterns; n-1) matches ScalarMult.
	nm1 := new(big.Int).Sub(n, big.NewInt(1))
	for _, u := range []*big.Int{big.NewInt(0), big.NewInt(1), nm1, new(big.Int).Rsh(nm1, 1),
		new(big.Int).Lsh(big.NewInt(1), 255), new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))} {
		for j := 0; j < 2; j++ {
			var ub [32]byte
			u.FillBytes(ub[:])
			if j == 1 {
				for b := range ub {
					ub[b] ^= 0x40 // alternate digit signs
				}
			}
			var us p256.Elem
			p256.SetBytes(&us, &ub)
			var got nistec.P256Point
			mulTable(&got, tab, &us)
			red := new(big.Int).Mod(new(big.Int).SetBytes(ub[:]), n)
			want, _ := nistec.NewP256Point().ScalarMult(&k.q, red.FillBytes(make([]byte, 32)))
			if got.Equal(want) != 1 {
				t.Fatalf("mulTable(%x) != ScalarMult", ub)
			}
		}
	}
}

// TestCacheAdmission: a key gets its table on the second use, the cache
// holds at most max tables, a full cache evicts only for a key used at
// least twice as often, and verdicts never change.
func TestCacheAdmission(t *testing.T) {
	c := NewCache(2)
	var keys []*Key
	var privs []*ecdsa.PrivateKey
	for range 3 {
		p, _ := ecdsa.GenerateKey(curve, rand.Reader)
		k, err := NewKey(&p.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		keys, privs = append(keys, k), append(privs, p)
	}
	use := func(i int) {
		t.Helper()
		d := sha256.Sum256([]byte{byte(i)})
		r, s, _ := ecdsa.Sign(rand.Reader, privs[i], d[:])
		sig := rawSig(r, s)
		if !c.Verify(keys[i], &d, &sig) {
			t.Fatalf("key %d: genuine signature refused", i)
		}
		sig[5] ^= 1
		if c.Verify(keys[i], &d, &sig) {
			t.Fatalf("key %d: bad signature accepted", i)
		}
	}
	use(0) // two uses: tabled on the second
	if !keys[0].Tabled() {
		t.Fatal("key 0 not tabled after its second use")
	}
	use(1)
	use(1)
	if !keys[1].Tabled() || c.Len() != 2 {
		t.Fatalf("key 1 tabled %v, len %d", keys[1].Tabled(), c.Len())
	}
	use(2) // 2 uses vs 2 and 4: refused
	if keys[2].Tabled() {
		t.Fatal("key 2 evicted a key used as often")
	}
	for range 3 {
		use(2)
	}
	if !keys[2].Tabled() || c.Len() != 2 {
		t.Fatalf("key 2 (8 uses) not admitted over key 0 (2): tabled %v, len %d", keys[2].Tabled(), c.Len())
	}
	if keys[0].Tabled() == keys[1].Tabled() {
		t.Fatalf("exactly one of keys 0, 1 should have lost its table: %v %v", keys[0].Tabled(), keys[1].Tabled())
	}
	var nilCache *Cache
	d := sha256.Sum256([]byte{0})
	r, s, _ := ecdsa.Sign(rand.Reader, privs[0], d[:])
	sig := rawSig(r, s)
	if !nilCache.Verify(keys[0], &d, &sig) {
		t.Fatal("nil cache refused a genuine signature")
	}
	if nilCache.Prepare(keys[0]) != keys[0].Tabled() {
		t.Fatal("nil cache Prepare")
	}
}

// TestCacheConcurrent: many goroutines over more keys than tables, with
// evictions, always get crypto/ecdsa's verdict (run with -race).
func TestCacheConcurrent(t *testing.T) {
	c := NewCache(2)
	type kk struct {
		k    *Key
		priv *ecdsa.PrivateKey
	}
	var ks []kk
	for range 4 {
		p, _ := ecdsa.GenerateKey(curve, rand.Reader)
		k, _ := NewKey(&p.PublicKey)
		ks = append(ks, kk{k, p})
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				x := ks[(g*i+i)%len(ks)]
				d := sha256.Sum256([]byte{byte(g), byte(i)})
				r, s, _ := ecdsa.Sign(rand.Reader, x.priv, d[:])
				sig := rawSig(r, s)
				if i%3 == 0 {
					sig[40] ^= 2
				}
				if got := c.Verify(x.k, &d, &sig); got != (i%3 != 0) {
					t.Errorf("goroutine %d iteration %d: verdict %v", g, i, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	if c.Len() > 2 {
		t.Fatalf("%d tables, max 2", c.Len())
	}
}

// TestKeyTwoCaches: a Key handed to two Caches is tabled by one of them
// only (the first to admit it); the other verifies it correctly without a
// slot of its own. Before, both admitted it, racing on the key's building
// flag (run with -race), and an eviction by one left the other holding a
// slot whose key could never be tabled again.
func TestKeyTwoCaches(t *testing.T) {
	p, _ := ecdsa.GenerateKey(curve, rand.Reader)
	for range 20 {
		k, err := NewKey(&p.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		a, b := NewCache(1), NewCache(1)
		var wg sync.WaitGroup
		for _, c := range []*Cache{a, b} {
			wg.Go(func() {
				c.Prepare(k)
				c.Prepare(k)
			})
		}
		wg.Wait()
		if !k.Tabled() || a.Len()+b.Len() != 1 {
			t.Fatalf("tabled %v, slots %d + %d, want one slot", k.Tabled(), a.Len(), b.Len())
		}
	}
	// Sequentially: a owns the key; after a evicts it, b does not take it.
	k, _ := NewKey(&p.PublicKey)
	a, b := NewCache(1), NewCache(1)
	if !a.Prepare(k) {
		t.Fatal("a: not tabled")
	}
	p2, _ := ecdsa.GenerateKey(curve, rand.Reader)
	k2, _ := NewKey(&p2.PublicKey)
	for range 4 {
		a.Prepare(k2)
	}
	if k.Tabled() || !k2.Tabled() {
		t.Fatalf("a did not evict k for k2: %v %v", k.Tabled(), k2.Tabled())
	}
	if b.Prepare(k); b.Len() != 0 {
		t.Fatalf("b took a slot for a's key")
	}
	d := sha256.Sum256([]byte("two caches"))
	r, s, _ := ecdsa.Sign(rand.Reader, p, d[:])
	sig := rawSig(r, s)
	if !b.Verify(k, &d, &sig) || !a.Verify(k, &d, &sig) {
		t.Fatal("genuine signature refused")
	}
}

// TestVerifyXAboveN: a genuine signature whose R has n <= x(R) < p (r =
// x - n) is accepted like crypto/ecdsa does, on both paths. Such R cannot
// be reached with a random nonce (probability about 2^-128), so the key is
// made to fit: Q = u2⁻¹·(R - u1·G) for chosen u1, u2.
func TestVerifyXAboveN(t *testing.T) {
	p := curve.Params().P
	x := new(big.Int).Set(n)
	var y *big.Int
	for ; ; x.Add(x, big.NewInt(1)) {
		y2 := new(big.Int).Exp(x, big.NewInt(3), p)
		y2.Sub(y2, new(big.Int).Mul(big.NewInt(3), x))
		y2.Add(y2, curve.Params().B)
		y2.Mod(y2, p)
		if y = new(big.Int).ModSqrt(y2, p); y != nil {
			break
		}
	}
	for i := range 4 {
		u1, _ := rand.Int(rand.Reader, n)
		u2, _ := rand.Int(rand.Reader, n)
		if u2.Sign() == 0 {
			continue
		}
		gx, gy := curve.ScalarBaseMult(u1.FillBytes(make([]byte, 32)))
		qx, qy := curve.Add(x, y, gx, new(big.Int).Sub(p, gy)) // R - u1·G
		u2inv := new(big.Int).ModInverse(u2, n)
		qx, qy = curve.ScalarMult(qx, qy, u2inv.FillBytes(make([]byte, 32)))
		pub := &ecdsa.PublicKey{Curve: curve, X: qx, Y: qy}
		k, err := NewKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		r := new(big.Int).Sub(x, n)
		s := new(big.Int).Mul(r, u2inv)
		s.Mod(s, n)
		e := new(big.Int).Mul(u1, s)
		e.Mod(e, n)
		var digest [32]byte
		e.FillBytes(digest[:])
		sig := rawSig(r, s)
		if !check(t, k, newTable(&k.q), &digest, &sig) {
			t.Fatalf("case %d: signature with x(R) = r + n refused", i)
		}
		sig = rawSig(x, s) // r = x(R) itself is >= n: out of range
		if check(t, k, newTable(&k.q), &digest, &sig) {
			t.Fatalf("case %d: r >= n accepted", i)
		}
	}
}
