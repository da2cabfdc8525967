package p256verify

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

func benchKey(b testing.TB) (*ecdsa.PrivateKey, *Key, [32]byte, [64]byte) {
	priv, _ := ecdsa.GenerateKey(curve, rand.Reader)
	k, err := NewKey(&priv.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("benchmark"))
	r, s, err := ecdsa.Sign(rand.Reader, priv, d[:])
	if err != nil {
		b.Fatal(err)
	}
	return priv, k, d, rawSig(r, s)
}

// BenchmarkVerifyTable is one verification of a key with its table (the
// warm path of a Cache).
func BenchmarkVerifyTable(b *testing.B) {
	_, k, d, sig := benchKey(b)
	c := NewCache(0)
	if !c.Prepare(k) {
		b.Fatal("no table")
	}
	b.ReportAllocs()
	for b.Loop() {
		if !c.Verify(k, &d, &sig) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkVerifyCold is one verification without a table (nistec
// ScalarMult for u2·Q).
func BenchmarkVerifyCold(b *testing.B) {
	_, k, d, sig := benchKey(b)
	b.ReportAllocs()
	for b.Loop() {
		if !k.verify(nil, &d, &sig) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkCryptoECDSA is the reference: crypto/ecdsa.VerifyASN1.
func BenchmarkCryptoECDSA(b *testing.B) {
	priv, _, d, _ := benchKey(b)
	der, err := ecdsa.SignASN1(rand.Reader, priv, d[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.VerifyASN1(&priv.PublicKey, d[:], der) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkBuildTable is the one-off cost of a key's table.
func BenchmarkBuildTable(b *testing.B) {
	_, k, _, _ := benchKey(b)
	b.ReportAllocs()
	for b.Loop() {
		newTable(&k.q)
	}
}

func BenchmarkScalars(b *testing.B) {
	_, _, d, sig := benchKey(b)
	for b.Loop() {
		scalars(&d, &sig)
	}
}

func BenchmarkVerifyTableParallel(b *testing.B) {
	_, k, d, sig := benchKey(b)
	c := NewCache(0)
	c.Prepare(k)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !c.Verify(k, &d, &sig) {
				b.Error("refused")
				return
			}
		}
	})
}
