package hsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"math/big"
	"testing"

	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

// TestDirectSigning checks that the signer reaches SoftHSM's function list
// (the miekg/pkcs11 context layout it relies on still holds), and that a
// batch signed in one call and the same digests signed through miekg/pkcs11
// all verify.
func TestDirectSigning(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("direct", nil)
	u, err := ParseURI(tk.URI())
	if err != nil {
		t.Fatal(err)
	}
	pub := tk.Cert.PublicKey.(*ecdsa.PublicKey)
	for _, noDirect := range []bool{false, true} {
		p, err := OpenPKCS11(u, PKCS11Options{Sessions: 1, Want: pub, NoDirect: noDirect})
		if err != nil {
			t.Fatal(err)
		}
		if p.mod.direct == nil {
			t.Fatal("SoftHSM's function list not reached: signing falls back to miekg/pkcs11")
		}
		b := new(signBuf)
		const n = 5
		for i := range n {
			b.digest[i] = sha256.Sum256(fmt.Appendf(nil, "%v %d", noDirect, i))
		}
		errs := make([]error, n)
		if err := p.signBatch(context.Background(), b, n, errs); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("noDirect=%v digest %d: %v", noDirect, i, errs[i])
			}
			if !ecdsa.Verify(pub, b.digest[i][:], new(big.Int).SetBytes(b.sig[i][:32]), new(big.Int).SetBytes(b.sig[i][32:])) {
				t.Fatalf("noDirect=%v digest %d: signature does not verify", noDirect, i)
			}
		}
		_ = p.Close()
	}
}
