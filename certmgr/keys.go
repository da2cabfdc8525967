package certmgr

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
)

// ErrRotation reports a signer chain whose links cannot all move to a new
// key: a renewal would leave one on the old key (the FCC own-certificate
// rule wants every link on the certificate's key), so it is refused.
var ErrRotation = errors.New("certmgr: key rotation refused")

// keyRecord names a signing key certmgr made: a PKCS#11 object (label and
// CKA_ID on the token of the chain's first PKCS#11 link) or a PEM file.
type keyRecord struct {
	Label string `json:"pkcs11_label,omitempty"`
	ID    string `json:"pkcs11_id,omitempty"` // hex CKA_ID
	File  string `json:"file,omitempty"`      // path of a software key
}

// plan is how a chain's links take a new key: in the token of the first
// PKCS#11 link (every PKCS#11 link must see it), or in a software key
// file shared by every (software) link.
type plan struct {
	tmpl    hsm.Config
	primary *hsm.URI // nil: software
	uris    []*hsm.URI
	keyDir  string
	label   string
}

// CheckChain reports whether every link of the chain tmpl can follow a
// key rotation (ErrRotation naming the one that cannot), without opening
// anything: for `serve --check`.
func CheckChain(tmpl hsm.Config) error {
	_, err := newPlan(tmpl, "", "")
	return err
}

// newPlan checks that every link can follow a rotation: a chain with an
// HSM cannot have a software link (a key generated in a token cannot be
// copied out); a PKCS#11 link on another token must see the generated key
// (a replicated cluster), which is checked at each rotation.
func newPlan(tmpl hsm.Config, keyDir, label string) (*plan, error) {
	p := &plan{tmpl: tmpl, keyDir: keyDir, label: label, uris: make([]*hsm.URI, len(tmpl.Signers))}
	var soft []string
	for i, sc := range tmpl.Signers {
		if sc.PKCS11 == "" {
			soft = append(soft, linkName(sc, i))
			continue
		}
		u, err := hsm.ParseURI(sc.PKCS11)
		if err != nil {
			return nil, fmt.Errorf("signer %q: %w", linkName(sc, i), err)
		}
		p.uris[i] = &u
		if p.primary == nil {
			p.primary = &u
		}
	}
	if len(tmpl.Signers) == 0 {
		return nil, fmt.Errorf("%w: the chain has no signers", ErrRotation)
	}
	if p.primary != nil && len(soft) > 0 {
		return nil, fmt.Errorf("%w: signer %q (software) would keep the old key: a key generated in token %q cannot be copied to it; "+
			"leave software links out of an HSM chain under acme, or manage certificates yourself (cert/key)", ErrRotation, soft[0], p.primary.Token)
	}
	return p, nil
}

func linkName(sc hsm.SignerConfig, i int) string {
	switch {
	case sc.Name != "":
		return sc.Name
	case sc.Signer != nil:
		return sc.Signer.Name()
	case sc.PKCS11 != "":
		if u, err := hsm.ParseURI(sc.PKCS11); err == nil {
			return "pkcs11:" + u.Token
		}
	}
	return fmt.Sprintf("#%d", i+1)
}

// newKey is a key made for one renewal, not yet in use.
type newKey struct {
	rec    keyRecord
	pub    *ecdsa.PublicKey
	soft   *ecdsa.PrivateKey // software key, nil for PKCS#11
	csr    crypto.Signer     // signs the CSR
	closer func()            // releases what csr holds
}

// generate makes the key where the chain signs. For PKCS#11 every other
// PKCS#11 link on another token must see the new key, or it is destroyed
// again and the rotation refused, naming the link.
func (p *plan) generate(name string) (*newKey, error) {
	if p.primary == nil {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("certmgr: %w", err)
		}
		if err := os.MkdirAll(p.keyDir, 0o700); err != nil {
			return nil, fmt.Errorf("certmgr: %w", err)
		}
		file := filepath.Join(p.keyDir, name+".key")
		if err := writeKey(file, key); err != nil {
			return nil, err
		}
		return &newKey{rec: keyRecord{File: file}, pub: &key.PublicKey, soft: key, csr: key, closer: func() {}}, nil
	}
	id := hsm.NewKeyID()
	pub, err := hsm.GenerateKey(*p.primary, p.label, id)
	if err != nil {
		return nil, err
	}
	rec := keyRecord{Label: p.label, ID: hex.EncodeToString(id)}
	for i, u := range p.uris {
		if u == nil || hsm.SameToken(*u, *p.primary) {
			continue
		}
		ok, err := hsm.HasKey(*u, p.label, id)
		if err != nil || !ok {
			_ = hsm.DestroyKey(*p.primary, p.label, id)
			why := "it does not see the key"
			if err != nil {
				why = err.Error()
			}
			return nil, fmt.Errorf("%w: signer %q (token %q) would keep the old key: the new key was generated in token %q and %s "+
				"(only members of one replicated HSM cluster can share a generated key)", ErrRotation, linkName(p.tmpl.Signers[i], i), u.Token, p.primary.Token, why)
		}
	}
	ku := *p.primary
	ku.Object, ku.ID = p.label, id
	s, err := hsm.OpenPKCS11(ku, hsm.PKCS11Options{Want: pub, Sessions: 1})
	if err != nil {
		_ = hsm.DestroyKey(*p.primary, p.label, id)
		return nil, err
	}
	return &newKey{rec: rec, pub: pub, csr: hsm.CryptoSigner(s), closer: func() { _ = s.Close() }}, nil
}

// destroy removes a key certmgr made (a key refused or retired).
func (p *plan) destroy(rec keyRecord) error {
	switch {
	case rec.File != "":
		if err := os.Remove(rec.File); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("certmgr: %w", err)
		}
		return nil
	case rec.Label != "" && p.primary != nil:
		id, err := hex.DecodeString(rec.ID)
		if err != nil {
			return fmt.Errorf("certmgr: key id %q: %w", rec.ID, err)
		}
		return hsm.DestroyKey(*p.primary, rec.Label, id)
	}
	return nil
}

// chainConfig is the template chain with every link on rec's key. The
// software signers it makes are returned for closing.
func (p *plan) chainConfig(rec keyRecord) (hsm.Config, []*hsm.Software, error) {
	cfg := p.tmpl
	cfg.Signers = make([]hsm.SignerConfig, len(p.tmpl.Signers))
	var soft []*hsm.Software
	var key *ecdsa.PrivateKey
	for i, sc := range p.tmpl.Signers {
		name := linkName(sc, i)
		sc.Name = name
		if u := p.uris[i]; u != nil {
			if rec.Label == "" {
				return cfg, soft, fmt.Errorf("certmgr: signer %q is PKCS#11 but the key is a file", name)
			}
			id, err := hex.DecodeString(rec.ID)
			if err != nil {
				return cfg, soft, fmt.Errorf("certmgr: key id %q: %w", rec.ID, err)
			}
			ku := *u
			ku.Object, ku.ID = rec.Label, id
			sc.PKCS11, sc.Signer = ku.String(), nil
		} else {
			if rec.File == "" {
				return cfg, soft, fmt.Errorf("certmgr: signer %q is software but the key is in a token", name)
			}
			if key == nil {
				var err error
				if key, err = credential.ReadKeyFile(rec.File); err != nil {
					return cfg, soft, err
				}
			}
			s, err := hsm.NewSoftware(name, key)
			if err != nil {
				return cfg, soft, err
			}
			soft = append(soft, s)
			sc.Signer, sc.PKCS11 = s, ""
		}
		cfg.Signers[i] = sc
	}
	return cfg, soft, nil
}

// writeKey writes key as PKCS#8 PEM with mode 0600.
func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certmgr: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// AccountKeyFile returns the ACME account key in path, generating a P-256
// key there (mode 0600) when the file does not exist.
func AccountKeyFile(path string) (crypto.Signer, error) {
	if _, err := os.Stat(path); os.IsNotExist(err) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("certmgr: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("certmgr: %w", err)
		}
		if err := writeKey(path, key); err != nil {
			return nil, err
		}
		return key, nil
	}
	return credential.ReadKeyFile(path)
}

// AccountKeyPKCS11 returns the ACME account key in the token: the key the
// URI selects, generated there (label object=, id= or one derived from the
// label) when it is missing. The returned signer's Sign answers the raw
// r||s a JWS carries, which is what acmez expects of a crypto.Signer that
// is not an *ecdsa.PrivateKey. close releases its session.
func AccountKeyPKCS11(uri string) (s crypto.Signer, close func(), err error) {
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return nil, nil, err
	}
	if u.Object == "" {
		return nil, nil, fmt.Errorf("%w: the account key URI needs object=", hsm.ErrURI)
	}
	p, err := hsm.OpenPKCS11(u, hsm.PKCS11Options{Sessions: 1, Name: "acme-account"})
	if errors.Is(err, hsm.ErrObjectNotFound) {
		id := u.ID
		if len(id) == 0 {
			sum := sha256.Sum256([]byte(u.Object))
			id = sum[:8]
		}
		if _, err = hsm.GenerateKey(u, u.Object, id); err != nil {
			return nil, nil, err
		}
		u.ID = id
		p, err = hsm.OpenPKCS11(u, hsm.PKCS11Options{Sessions: 1, Name: "acme-account"})
	}
	if err != nil {
		return nil, nil, err
	}
	return jwsSigner{p}, func() { _ = p.Close() }, nil
}

// jwsSigner signs SHA-256 digests with an hsm.Signer and answers r||s.
type jwsSigner struct{ s hsm.Signer }

func (j jwsSigner) Public() crypto.PublicKey { return j.s.Public() }

func (j jwsSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, errors.New("certmgr: the account key signs SHA-256 (ES256) only")
	}
	var d [32]byte
	var sig [64]byte
	copy(d[:], digest)
	if err := j.s.SignDigest(context.Background(), &d, &sig); err != nil {
		return nil, err
	}
	return sig[:], nil
}
