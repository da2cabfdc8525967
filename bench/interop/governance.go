package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/tnauth"
)

// Governance errors.
var (
	ErrToken        = errors.New("interop: bad SPC token")
	ErrForeignToken = errors.New("interop: SPC token from a policy administrator this CA does not serve")
	ErrTokenExpired = errors.New("interop: SPC token expired")
	ErrFingerprint  = errors.New("interop: SPC token bound to another account key")
)

// Jurisdiction names the trust domain of a policy administrator and its
// certification authority: "GLOBAL" for the non-jurisdictional G-PA/G-CA,
// otherwise an ISO 3166 code ("US", "FR").
type Jurisdiction string

// Global is the non-jurisdictional trust domain.
const Global Jurisdiction = "GLOBAL"

// PolicyAdministrator is an STI-PA (ATIS-1000080 section 5): it admits
// service providers, assigns their service provider codes (SPCs) and issues
// the SPC tokens that a CA requires before it issues a certificate. The
// Global Policy Administrator (G-PA) is one with Jurisdiction Global.
type PolicyAdministrator struct {
	Name         string
	Jurisdiction Jurisdiction
	key          *ecdsa.PrivateKey
	prefix       string

	mu   sync.Mutex
	next int
}

// NewPolicyAdministrator makes a PA whose SPCs are prefix followed by a
// three-digit sequence number ("G001", "US001").
func NewPolicyAdministrator(name string, j Jurisdiction, prefix string) (*PolicyAdministrator, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("interop: %w", err)
	}
	return &PolicyAdministrator{Name: name, Jurisdiction: j, key: key, prefix: prefix}, nil
}

// AssignSPC admits a new service provider and returns its code.
func (pa *PolicyAdministrator) AssignSPC() string {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	pa.next++
	return fmt.Sprintf("%s%03d", pa.prefix, pa.next)
}

// Public is the key CAs use to check this PA's tokens.
func (pa *PolicyAdministrator) Public() *ecdsa.PublicKey { return &pa.key.PublicKey }

// spcToken is the payload of an ATIS-1000080 SPC token.
type spcToken struct {
	Exp int64  `json:"exp"`
	Iat int64  `json:"iat"`
	Iss string `json:"iss"`
	Jti string `json:"jti"`
	ATC struct {
		TkType      string `json:"tktype"`
		TkValue     string `json:"tkvalue"`
		CA          bool   `json:"ca"`
		Fingerprint string `json:"fingerprint"`
	} `json:"atc"`
}

// Fingerprint is the ATIS-1000080 account key fingerprint:
// "SHA256 " and the colon-separated hex SHA-256 of the DER public key.
func Fingerprint(pub *ecdsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("interop: %w", err)
	}
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return "SHA256 " + strings.Join(parts, ":"), nil
}

var b64 = base64.RawURLEncoding

// Token issues an SPC token (a compact ES256 JWS) authorising the holder of
// account to obtain a certificate with TNAuthList tn, valid for ttl.
func (pa *PolicyAdministrator) Token(tn tnauth.List, account *ecdsa.PublicKey, now time.Time, ttl time.Duration) (string, error) {
	der, err := tnauth.Marshal(tn)
	if err != nil {
		return "", fmt.Errorf("interop: %w", err)
	}
	fp, err := Fingerprint(account)
	if err != nil {
		return "", err
	}
	var p spcToken
	p.Iat, p.Exp, p.Iss = now.Unix(), now.Add(ttl).Unix(), pa.Name
	p.Jti = fmt.Sprintf("%x", sha256.Sum256(append(der, []byte(fp)...)))[:32]
	p.ATC.TkType, p.ATC.TkValue, p.ATC.Fingerprint = "TNAuthList", base64.StdEncoding.EncodeToString(der), fp
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "x5u": "https://pa.lab/" + string(pa.Jurisdiction) + "/cert.pem"})
	pay, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("interop: %w", err)
	}
	si := b64.EncodeToString(hdr) + "." + b64.EncodeToString(pay)
	digest := sha256.Sum256([]byte(si))
	r, s, err := ecdsa.Sign(rand.Reader, pa.key, digest[:])
	if err != nil {
		return "", fmt.Errorf("interop: %w", err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return si + "." + b64.EncodeToString(sig[:]), nil
}

// checkToken verifies tok against pa and returns the authorised TNAuthList.
func (pa *PolicyAdministrator) checkToken(tok string, account *ecdsa.PublicKey, now time.Time) (tnauth.List, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return tnauth.List{}, fmt.Errorf("%w: want three parts", ErrToken)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return tnauth.List{}, fmt.Errorf("%w: signature encoding", ErrToken)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(&pa.key.PublicKey, digest[:], r, s) {
		return tnauth.List{}, ErrForeignToken
	}
	raw, err := b64.DecodeString(parts[1])
	if err != nil {
		return tnauth.List{}, fmt.Errorf("%w: payload encoding", ErrToken)
	}
	var p spcToken
	if err := json.Unmarshal(raw, &p); err != nil {
		return tnauth.List{}, fmt.Errorf("%w: %w", ErrToken, err)
	}
	if p.ATC.TkType != "TNAuthList" || p.ATC.CA {
		return tnauth.List{}, fmt.Errorf("%w: tktype %q ca %v", ErrToken, p.ATC.TkType, p.ATC.CA)
	}
	if now.Unix() > p.Exp {
		return tnauth.List{}, ErrTokenExpired
	}
	fp, err := Fingerprint(account)
	if err != nil {
		return tnauth.List{}, err
	}
	if fp != p.ATC.Fingerprint {
		return tnauth.List{}, ErrFingerprint
	}
	der, err := base64.StdEncoding.DecodeString(p.ATC.TkValue)
	if err != nil {
		return tnauth.List{}, fmt.Errorf("%w: tkvalue: %w", ErrToken, err)
	}
	l, err := tnauth.Parse(der)
	if err != nil {
		return tnauth.List{}, fmt.Errorf("%w: %w", ErrToken, err)
	}
	return l, nil
}

// Authority is an STI-CA with a root and an issuing intermediate
// (labpki), serving exactly one policy administrator: it issues a provider
// certificate only against a valid SPC token of that PA, with the
// TNAuthList the token authorises.
type Authority struct {
	Name         string
	Jurisdiction Jurisdiction
	PA           *PolicyAdministrator
	Root         *labpki.CA
	Intermediate *labpki.CA
	// RootCRLURL and CRLURL are the distribution points placed in the
	// intermediate and in provider certificates.
	RootCRLURL, CRLURL string

	mu      sync.Mutex
	revoked []*x509.Certificate
}

// NewAuthority creates the root and intermediate of a CA named name.
// crlBase, when set, is the URL prefix of its CRLs: crlBase+"-root.crl"
// (signed by the root, listing revoked intermediates) and crlBase+".crl"
// (signed by the intermediate, listing revoked provider certificates).
func NewAuthority(name string, pa *PolicyAdministrator, crlBase string) (*Authority, error) {
	a := &Authority{Name: name, Jurisdiction: pa.Jurisdiction, PA: pa}
	var rootOpts, interOpts []labpki.CAOption
	if j := string(pa.Jurisdiction); len(j) == 2 {
		rootOpts = append(rootOpts, labpki.WithCountry(j))
		interOpts = append(interOpts, labpki.WithCountry(j))
	}
	if crlBase != "" {
		a.RootCRLURL, a.CRLURL = crlBase+"-root.crl", crlBase+".crl"
		rootOpts = append(rootOpts, labpki.WithCRLURL(a.RootCRLURL))
		interOpts = append(interOpts, labpki.WithCRLURL(a.CRLURL))
	}
	var err error
	if a.Root, err = labpki.NewCA(name+" Root", nil, rootOpts...); err != nil {
		return nil, err
	}
	if a.Intermediate, err = labpki.NewCA(name+" Issuing CA", a.Root, interOpts...); err != nil {
		return nil, err
	}
	return a, nil
}

// Credential is a provider certificate (leaf, then the intermediate) with
// its private key.
type Credential struct {
	Chain []*x509.Certificate
	Key   *ecdsa.PrivateKey
	TN    tnauth.List
}

// Issue checks token (ATIS-1000080 section 6.3.5: signed by this CA's PA,
// unexpired, tktype TNAuthList, bound to account) and issues a provider
// certificate valid from notBefore to notAfter whose TNAuthList is the one
// in the token.
func (a *Authority) Issue(token string, account *ecdsa.PublicKey, now, notBefore, notAfter time.Time) (*Credential, error) {
	l, err := a.PA.checkToken(token, account, now)
	if err != nil {
		return nil, err
	}
	spc := ""
	if len(l.SPCs) > 0 {
		spc = l.SPCs[0]
	}
	cert, key, err := a.Intermediate.IssueSP(spc, l, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	return &Credential{Chain: []*x509.Certificate{cert, a.Intermediate.Cert}, Key: key, TN: l}, nil
}

// Revoke lists c on the intermediate's CRL.
func (a *Authority) Revoke(c *x509.Certificate) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked = append(a.revoked, c)
}

// CRLs returns the DER CRLs to publish at RootCRLURL and CRLURL.
func (a *Authority) CRLs() (root, issuing []byte, err error) {
	a.mu.Lock()
	revoked := append([]*x509.Certificate(nil), a.revoked...)
	a.mu.Unlock()
	if root, err = a.Root.CRL(nil); err != nil {
		return nil, nil, err
	}
	if issuing, err = a.Intermediate.CRL(revoked); err != nil {
		return nil, nil, err
	}
	return root, issuing, nil
}
