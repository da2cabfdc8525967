package hsm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// discover finds the token and key, logs in and checks the key. It holds
// the module's read lock.
func (p *PKCS11) discover() (*token, error) {
	m := p.mod
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed { // a recovery attempt racing Close
		return nil, errReleased
	}
	c := m.ctx
	slot, err := p.findSlot()
	if err != nil {
		return nil, err
	}
	sh, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return nil, fmt.Errorf("hsm: %s: C_OpenSession: %w", p.name, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = c.CloseSession(sh)
		}
	}()
	if err := c.Login(sh, pkcs11.CKU_USER, p.pin); err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		if sessionLost(err) {
			return nil, fmt.Errorf("hsm: %s: C_Login: %w", p.name, err)
		}
		return nil, fmt.Errorf("%w: token %q: %w", ErrLogin, p.uri.Token, err)
	}
	key, err := p.findKey(sh)
	if err != nil {
		return nil, err
	}
	if err := p.checkKey(sh, key); err != nil {
		return nil, err
	}
	ok = true
	return &token{modGen: m.gen, gen: p.gen.Add(1), slot: slot, key: key, anchor: sh}, nil
}

func (p *PKCS11) findSlot() (uint, error) {
	c := p.mod.ctx
	slots, err := c.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("%w: C_GetSlotList: %w", ErrTokenNotFound, err)
	}
	u := p.uri
	for _, s := range slots {
		if u.HasSlotID && s != u.SlotID {
			continue
		}
		if u.SlotDescription != "" {
			si, err := c.GetSlotInfo(s)
			if err != nil || trimPad(si.SlotDescription) != u.SlotDescription {
				continue
			}
		}
		ti, err := c.GetTokenInfo(s)
		if err != nil {
			continue // a token going away answers CKR_GENERAL_ERROR here
		}
		if u.Token != "" && trimPad(ti.Label) != u.Token ||
			u.Manufacturer != "" && trimPad(ti.ManufacturerID) != u.Manufacturer ||
			u.Model != "" && trimPad(ti.Model) != u.Model ||
			u.Serial != "" && trimPad(ti.SerialNumber) != u.Serial {
			continue
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		return s, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrTokenNotFound, p.tokenDesc())
}

func (p *PKCS11) tokenDesc() string {
	u := p.uri
	switch {
	case u.Token != "":
		return "token=" + u.Token
	case u.Serial != "":
		return "serial=" + u.Serial
	case u.HasSlotID:
		return fmt.Sprintf("slot-id=%d", u.SlotID)
	}
	return "any token"
}

func trimPad(s string) string { return string(bytes.TrimRight([]byte(s), " \x00")) }

func (p *PKCS11) findKey(sh pkcs11.SessionHandle) (pkcs11.ObjectHandle, error) {
	c := p.mod.ctx
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
	}
	if p.uri.Object != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, p.uri.Object))
	}
	if len(p.uri.ID) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, p.uri.ID))
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return 0, fmt.Errorf("hsm: %s: C_FindObjectsInit: %w", p.name, err)
	}
	objs, _, err := c.FindObjects(sh, 2)
	_ = c.FindObjectsFinal(sh)
	if err != nil {
		return 0, fmt.Errorf("hsm: %s: C_FindObjects: %w", p.name, err)
	}
	switch len(objs) {
	case 0:
		return 0, fmt.Errorf("%w: object=%q id=%x on %s", ErrObjectNotFound, p.uri.Object, p.uri.ID, p.tokenDesc())
	case 1:
		return objs[0], nil
	}
	return 0, fmt.Errorf("%w: object=%q id=%x", ErrAmbiguousKey, p.uri.Object, p.uri.ID)
}

// p256OID is the DER of namedCurve prime256v1 (1.2.840.10045.3.1.7).
var p256OID = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

// checkKey makes sure key is P-256 and belongs to the certificate: the public
// key object's CKA_EC_POINT when there is one, then a test signature verified
// with the expected key (which also proves CKM_ECDSA works).
func (p *PKCS11) checkKey(sh pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
	c := p.mod.ctx
	attrs, err := c.GetAttributeValue(sh, key, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
	})
	if err != nil {
		return fmt.Errorf("hsm: %s: C_GetAttributeValue: %w", p.name, err)
	}
	if !bytes.Equal(attrs[0].Value, p256OID) {
		return ErrNotP256
	}
	tokPub := p.publicFromToken(sh, attrs[1].Value)
	switch {
	case p.pub == nil && tokPub == nil:
		return fmt.Errorf("%w: no public key object next to the private key and no certificate to check against", ErrObjectNotFound)
	case p.pub == nil:
		p.pub = tokPub
	case tokPub != nil && !tokPub.Equal(p.pub):
		return fmt.Errorf("%w: token %s", ErrKeyMismatch, p.tokenDesc())
	}
	var d [32]byte
	_, _ = rand.Read(d[:])
	if err := c.SignInit(sh, p.mech, key); err != nil {
		return fmt.Errorf("hsm: %s: C_SignInit: %w", p.name, err)
	}
	sig, err := c.Sign(sh, d[:])
	if err != nil {
		return fmt.Errorf("hsm: %s: C_Sign: %w", p.name, err)
	}
	if len(sig) != 64 {
		return ErrSignature
	}
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(p.pub, d[:], r, s) {
		return fmt.Errorf("%w: test signature from token %s", ErrKeyMismatch, p.tokenDesc())
	}
	return nil
}

// publicFromToken reads CKA_EC_POINT of the public key object sharing the
// private key's CKA_ID; nil when there is none.
func (p *PKCS11) publicFromToken(sh pkcs11.SessionHandle, id []byte) *ecdsa.PublicKey {
	c := p.mod.ctx
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return nil
	}
	objs, _, err := c.FindObjects(sh, 1)
	_ = c.FindObjectsFinal(sh)
	if err != nil || len(objs) == 0 {
		return nil
	}
	attrs, err := c.GetAttributeValue(sh, objs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil
	}
	pub, err := parseECPoint(attrs[0].Value)
	if err != nil {
		return nil
	}
	return pub
}

// parseECPoint accepts CKA_EC_POINT as the DER OCTET STRING the standard
// asks for, or the bare uncompressed point some tokens return.
func parseECPoint(b []byte) (*ecdsa.PublicKey, error) {
	switch {
	case len(b) == 67 && b[0] == 0x04 && b[1] == 65:
		b = b[2:]
	case len(b) == 68 && b[0] == 0x04 && b[1] == 0x81 && b[2] == 65:
		b = b[3:]
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
	if err != nil {
		return nil, fmt.Errorf("hsm: CKA_EC_POINT: %w", err)
	}
	return pub, nil
}
