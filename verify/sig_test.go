package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	"github.com/shakenline/shakenline/passport"
)

// TestVerifySigMatchesPassport: verifySig agrees with
// passport.VerifySignature on genuine, tampered and degenerate signatures,
// and appendDERSig equals encoding/asn1's DER (edge values included).
func TestVerifySigMatchesPassport(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
		keySigner{key}.SignDigest(t.Context(), &d, &raw)
		cases := [][]byte{raw[:], append([]byte{}, raw[:63]...)}
		bad := raw
		bad[i%64] ^= 1
		cases = append(cases, bad[:], make([]byte, 64), sig(n, big.NewInt(1)), sig(big.NewInt(1), new(big.Int).Sub(n, big.NewInt(1))),
			sig(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(0x80)))
		for j, c := range cases {
			id.Signature = c
			want := passport.VerifySignature(&key.PublicKey, id) == nil
			got := verifySig(&key.PublicKey, id)
			if (got == nil) != want || (got != nil && !errors.Is(got, passport.ErrBadSignature)) {
				t.Fatalf("case %d/%d: verifySig %v, passport ok=%v", i, j, got, want)
			}
			if j == 0 && got != nil {
				t.Fatal("genuine signature refused")
			}
			if len(c) == 64 {
				r, s := new(big.Int).SetBytes(c[:32]), new(big.Int).SetBytes(c[32:])
				ref, _ := asn1.Marshal(struct{ R, S *big.Int }{r, s})
				if der := appendDERSig(nil, c[:32], c[32:]); string(der) != string(ref) {
					t.Fatalf("DER %x, want %x", der, ref)
				}
			}
		}
	}
}
