package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"math/big"
	"testing"

	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/p256verify"
	"github.com/shakenline/shakenline/passport"
)

// TestVerifySigMatchesPassport: verifySig agrees with
// passport.VerifySignature (crypto/ecdsa) on genuine, tampered and
// degenerate signatures, before the key has its table (first use), with it
// and without a cache.
func TestVerifySigMatchesPassport(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, err := p256verify.NewKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cache := p256verify.NewCache(1)
	n := elliptic.P256().Params().N
	sig := func(r, s *big.Int) []byte {
		b := make([]byte, 64)
		r.FillBytes(b[:32])
		s.FillBytes(b[32:])
		return b
	}
	for i := 0; i < 40; i++ {
		id := &passport.Identity{SigningInput: []byte{byte(i), 'x'}}
		var raw [64]byte
		d := sha256.Sum256(id.SigningInput)
		signertest.CryptoSigner{Key: key}.SignDigest(t.Context(), &d, &raw)
		cases := [][]byte{raw[:], append([]byte{}, raw[:63]...)}
		bad := raw
		bad[i%64] ^= 1
		cases = append(cases, bad[:], make([]byte, 64), sig(n, big.NewInt(1)), sig(big.NewInt(1), new(big.Int).Sub(n, big.NewInt(1))),
			sig(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(0x80)))
		for j, c := range cases {
			id.Signature = c
			want := passport.VerifySignature(&key.PublicKey, id) == nil
			for _, kc := range []*p256verify.Cache{cache, nil} {
				got := verifySig(kc, k, id)
				if (got == nil) != want || (got != nil && !errors.Is(got, passport.ErrBadSignature)) {
					t.Fatalf("case %d/%d (tabled %v): verifySig %v, passport ok=%v", i, j, k.Tabled(), got, want)
				}
				if j == 0 && got != nil {
					t.Fatal("genuine signature refused")
				}
			}
		}
	}
	if !k.Tabled() {
		t.Error("key used 40 times has no table")
	}
}
