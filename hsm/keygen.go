package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// ErrKeyExists reports a GenerateKey whose label and CKA_ID are already
// taken on the token.
var ErrKeyExists = errors.New("hsm: a key with this label and id is already on the token")

// GenerateKey creates a P-256 key pair inside the token u selects
// (C_GenerateKeyPair, CKM_EC_KEY_PAIR_GEN), labelled label with CKA_ID id:
// the private key is a token object, private, sensitive and not
// extractable, usable for signing only; the public key is a token object
// next to it (same label and id), which is what OpenPKCS11 and
// publicFromToken read back. u's object= and id= are ignored; its module,
// token selectors and pin-source are used. The module is shared with the
// signers of the process (loaded once); GenerateKey never logs out, so
// their sessions keep their login. It returns the new public key.
//
// The key never leaves the token: certificates for it are requested with a
// CSR signed through PKCS#11 (CryptoSigner over the PKCS11 signer that
// OpenPKCS11 makes for URI u with object=label and id=id).
func GenerateKey(u URI, label string, id []byte) (*ecdsa.PublicKey, error) {
	if label == "" || len(id) == 0 {
		return nil, fmt.Errorf("%w: a generated key needs a label and an id", ErrURI)
	}
	var pub *ecdsa.PublicKey
	err := withTokenSession(u, func(p *PKCS11, c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		if n, err := countKeys(c, sh, label, id); err != nil {
			return err
		} else if n > 0 {
			return fmt.Errorf("%w: object=%q id=%x on %s", ErrKeyExists, label, id, p.tokenDesc())
		}
		pubTmpl := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p256OID),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
		privTmpl := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}
		pubH, _, err := c.GenerateKeyPair(sh, mech, pubTmpl, privTmpl)
		if err != nil {
			return fmt.Errorf("hsm: %s: C_GenerateKeyPair: %w", p.tokenDesc(), err)
		}
		attrs, err := c.GetAttributeValue(sh, pubH, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err != nil {
			return fmt.Errorf("hsm: %s: reading the new public key: %w", p.tokenDesc(), err)
		}
		pub, err = parseECPoint(attrs[0].Value)
		return err
	})
	return pub, err
}

// DestroyKey removes the private and public key objects labelled label with
// CKA_ID id from the token u selects (a retired signing key). Removing a
// key that is not there is not an error. Signers still open on that key
// fail their next signature.
func DestroyKey(u URI, label string, id []byte) error {
	if label == "" || len(id) == 0 {
		return fmt.Errorf("%w: DestroyKey needs a label and an id", ErrURI)
	}
	return withTokenSession(u, func(p *PKCS11, c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
			objs, err := findObjects(c, sh, class, label, id, 4)
			if err != nil {
				return err
			}
			for _, o := range objs {
				if err := c.DestroyObject(sh, o); err != nil {
					return fmt.Errorf("hsm: %s: C_DestroyObject: %w", p.tokenDesc(), err)
				}
			}
		}
		return nil
	})
}

// HasKey reports whether the token u selects holds a private key labelled
// label with CKA_ID id: how a rotation checks that a second token (a
// replicated HSM cluster) sees the key generated in the first.
func HasKey(u URI, label string, id []byte) (bool, error) {
	var n int
	err := withTokenSession(u, func(_ *PKCS11, c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		objs, err := findObjects(c, sh, pkcs11.CKO_PRIVATE_KEY, label, id, 1)
		n = len(objs)
		return err
	})
	return n > 0, err
}

// SameToken reports whether a and b select the same token of the same
// module (the object selectors are not compared).
func SameToken(a, b URI) bool {
	ma, _ := a.Module()
	mb, _ := b.Module()
	return ma == mb && a.Token == b.Token && a.Manufacturer == b.Manufacturer && a.Model == b.Model &&
		a.Serial == b.Serial && a.HasSlotID == b.HasSlotID && a.SlotID == b.SlotID &&
		a.SlotDescription == b.SlotDescription
}

// withTokenSession loads u's module (shared), finds the token, opens a
// read-write session, logs in with u's PIN and runs f; the session is
// closed after it. The module's read lock is held throughout, as every
// Cryptoki call of this package does.
func withTokenSession(u URI, f func(p *PKCS11, c *pkcs11.Ctx, sh pkcs11.SessionHandle) error) error {
	path, err := u.Module()
	if err != nil {
		return err
	}
	pin, err := u.PIN()
	if err != nil {
		return err
	}
	m, err := openModule(path)
	if err != nil {
		return err
	}
	defer m.release()
	p := &PKCS11{uri: u, mod: m, name: "pkcs11:" + u.Token}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return errReleased
	}
	c := m.ctx
	slot, err := p.findSlot()
	if err != nil {
		return err
	}
	sh, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("hsm: %s: C_OpenSession: %w", p.tokenDesc(), err)
	}
	defer func() { _ = c.CloseSession(sh) }()
	if err := c.Login(sh, pkcs11.CKU_USER, pin); err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return fmt.Errorf("%w: token %q: %w", ErrLogin, u.Token, err)
	}
	return f(p, c, sh)
}

func findObjects(c *pkcs11.Ctx, sh pkcs11.SessionHandle, class uint, label string, id []byte, max int) ([]pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return nil, fmt.Errorf("hsm: C_FindObjectsInit: %w", err)
	}
	objs, _, err := c.FindObjects(sh, max)
	_ = c.FindObjectsFinal(sh)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_FindObjects: %w", err)
	}
	return objs, nil
}

func countKeys(c *pkcs11.Ctx, sh pkcs11.SessionHandle, label string, id []byte) (int, error) {
	n := 0
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
		objs, err := findObjects(c, sh, class, label, id, 1)
		if err != nil {
			return 0, err
		}
		n += len(objs)
	}
	return n, nil
}

// CryptoSigner adapts s to crypto.Signer for crypto/x509 (a CSR for a key
// that lives in a token): Sign takes a SHA-256 digest and returns the ASN.1
// DER ECDSA-Sig-Value x509 expects, converted from s's raw r||s. Other
// hashes are refused.
func CryptoSigner(s Signer) crypto.Signer { return derSigner{s} }

type derSigner struct{ s Signer }

func (d derSigner) Public() crypto.PublicKey { return d.s.Public() }

func (d derSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, fmt.Errorf("hsm: %s signs SHA-256 digests only", d.s.Name())
	}
	var dg [32]byte
	var sig [64]byte
	copy(dg[:], digest)
	if err := d.s.SignDigest(context.Background(), &dg, &sig); err != nil {
		return nil, err
	}
	return RawToDER(&sig), nil
}

// RawToDER converts a raw r||s ES256 signature into an ASN.1 DER
// ECDSA-Sig-Value (the inverse of DERToRaw).
func RawToDER(sig *[64]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(sig[:32]))
		b.AddASN1BigInt(new(big.Int).SetBytes(sig[32:]))
	})
	return b.BytesOrPanic()
}

// randomID returns n random bytes for a CKA_ID.
func randomID(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// NewKeyID returns a fresh random 8-byte CKA_ID for GenerateKey.
func NewKeyID() []byte { return randomID(8) }
