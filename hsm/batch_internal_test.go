package hsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

// tokenURI makes a SoftHSM token holding a P-256 key and returns its URI
// and public key.
func tokenURI(t *testing.T, label string) (URI, *ecdsa.PublicKey) {
	t.Helper()
	tk := softhsmtest.New(t).NewToken(label, nil)
	u, err := ParseURI(tk.URI())
	if err != nil {
		t.Fatal(err)
	}
	return u, tk.Cert.PublicKey.(*ecdsa.PublicKey)
}

// TestDirectSigning checks that the signer reaches SoftHSM's function list
// (the miekg/pkcs11 context layout it relies on still holds), and that a
// batch signed in one call and the same digests signed through miekg/pkcs11
// all verify.
func TestDirectSigning(t *testing.T) {
	u, pub := tokenURI(t, "direct")
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

// TestSignAfterModuleReleased: a signing call or a recovery attempt that
// reaches the module after the last signer on it closed (it loaded the
// token just before Close, or its backoff timer fired then) fails with
// ErrSessionLost instead of calling into a finalised, unloaded module
// (miekg/pkcs11's destroyed context, a dangling function list: SIGSEGV).
func TestSignAfterModuleReleased(t *testing.T) {
	u, pub := tokenURI(t, "released")
	for _, noDirect := range []bool{false, true} {
		p, err := OpenPKCS11(u, PKCS11Options{Sessions: 1, Want: pub, NoDirect: noDirect})
		if err != nil {
			t.Fatal(err)
		}
		var d [32]byte
		var sig [64]byte
		if err := p.SignDigest(context.Background(), &d, &sig); err != nil {
			t.Fatal(err)
		}
		old := p.tok.Load()
		_ = p.Close()
		// The state of a call that loaded the token before Close.
		p.tok.Store(old)
		p.pool <- &session{}
		if err := p.SignDigest(context.Background(), &d, &sig); !errors.Is(err, ErrSessionLost) {
			t.Fatalf("noDirect=%v: sign after release: %v, want ErrSessionLost", noDirect, err)
		}
		if _, err := p.discover(); err == nil {
			t.Fatalf("noDirect=%v: discover after release succeeded", noDirect)
		}
		if _, err := p.mod.reinit(p.mod.gen); err == nil {
			t.Fatalf("noDirect=%v: reinit after release succeeded", noDirect)
		}
	}
}

// Recovery stops only on a login the token refused for the PIN itself.
func TestPINRefused(t *testing.T) {
	login := func(code uint) error {
		return fmt.Errorf("%w: token %q: %w", ErrLogin, "t", pkcs11.Error(code))
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{login(pkcs11.CKR_PIN_INCORRECT), true},
		{login(pkcs11.CKR_PIN_LOCKED), true},
		{login(pkcs11.CKR_PIN_EXPIRED), true},
		{fmt.Errorf("%w: no code", ErrLogin), true},
		{login(pkcs11.CKR_USER_PIN_NOT_INITIALIZED), false},
		{login(pkcs11.CKR_TOKEN_NOT_PRESENT), false},
		{fmt.Errorf("hsm: x: C_Login: %w", pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)), false},
		{ErrTokenNotFound, false},
	} {
		if got := pinRefused(c.err); got != c.want {
			t.Errorf("pinRefused(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
