package p256verify

import (
	"crypto/ecdsa"
	"math/big"
	"sync"
	"testing"
)

var fuzzKeys struct {
	once  sync.Once
	privs []*ecdsa.PrivateKey
	keys  []*Key
	tabs  []*table
}

// fuzzKeySet is a fixed set of keys (d = 1, 2, n-1 and two larger ones)
// with their tables, built once.
func fuzzKeySet(t testing.TB) {
	fuzzKeys.once.Do(func() {
		d1, _ := new(big.Int).SetString("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721", 16)
		d2, _ := new(big.Int).SetString("7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8", 16)
		for _, d := range []*big.Int{big.NewInt(1), big.NewInt(2), new(big.Int).Sub(n, big.NewInt(1)), d1, d2} {
			p := keyFromD(d)
			k, err := NewKey(&p.PublicKey)
			if err != nil {
				panic(err)
			}
			fuzzKeys.privs = append(fuzzKeys.privs, p)
			fuzzKeys.keys = append(fuzzKeys.keys, k)
			fuzzKeys.tabs = append(fuzzKeys.tabs, newTable(&k.q))
		}
	})
}

// FuzzVerify is a differential check against crypto/ecdsa.Verify: the
// cold path and the table path must give its verdict on arbitrary
// digests and signatures, and on genuine signatures (made with the fuzzed
// nonce) with fuzzed bits flipped.
func FuzzVerify(f *testing.F) {
	f.Add(byte(3), []byte("digest"), []byte{}, []byte{7}, []byte{})
	f.Add(byte(0), []byte{}, []byte{}, []byte{1}, []byte{0, 0, 1})
	f.Add(byte(4), make([]byte, 32), make([]byte, 64), []byte{}, []byte{})
	f.Add(byte(1), []byte{0xff, 0xff}, n.Bytes(), []byte{}, []byte{})
	f.Add(byte(2), []byte("x"), []byte{}, []byte{0xff, 0xff, 0xff, 0xff}, make([]byte, 63))
	f.Fuzz(func(t *testing.T, ki byte, digestIn, sigIn, nonce, flip []byte) {
		fuzzKeySet(t)
		i := int(ki) % len(fuzzKeys.keys)
		var digest [32]byte
		copy(digest[:], digestIn)
		var sig [64]byte
		if len(nonce) > 0 {
			k := new(big.Int).SetBytes(nonce)
			k.Mod(k, n)
			if k.Sign() == 0 {
				return
			}
			var ok bool
			if sig, ok = signWithK(fuzzKeys.privs[i], digest[:], k); !ok {
				return
			}
			if len(flip) == 0 && !check(t, fuzzKeys.keys[i], fuzzKeys.tabs[i], &digest, &sig) {
				t.Fatal("genuine signature refused")
			}
			for j := 0; j < len(flip) && j < 64; j++ {
				sig[j] ^= flip[j]
			}
		} else {
			copy(sig[:], sigIn)
		}
		check(t, fuzzKeys.keys[i], fuzzKeys.tabs[i], &digest, &sig)
	})
}
