package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/spctoken"
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

// Fingerprint is the ATIS-1000080 account key fingerprint (package
// spctoken): "SHA256 " and the colon-separated hex SHA-256 of the DER
// public key.
func Fingerprint(pub *ecdsa.PublicKey) (string, error) { return spctoken.Fingerprint(pub) }

// Token issues an SPC token (spctoken: a compact ES256 JWT) authorising the
// holder of account to obtain a certificate with TNAuthList tn, valid for
// ttl.
func (pa *PolicyAdministrator) Token(tn tnauth.List, account *ecdsa.PublicKey, now time.Time, ttl time.Duration) (string, error) {
	tv, err := spctoken.TkValue(tn)
	if err != nil {
		return "", fmt.Errorf("interop: %w", err)
	}
	fp, err := Fingerprint(account)
	if err != nil {
		return "", err
	}
	c := spctoken.Claims{Iat: now.Unix(), Exp: now.Add(ttl).Unix(), Iss: pa.Name,
		Jti: fmt.Sprintf("%x", sha256.Sum256([]byte(tv+fp)))[:32],
		ATC: spctoken.ATC{TkType: spctoken.TkType, TkValue: tv, Fingerprint: fp}}
	return spctoken.Sign(c, pa.key, "https://pa.lab/"+string(pa.Jurisdiction)+"/cert.pem")
}

// checkToken verifies tok against pa and returns the authorised TNAuthList.
func (pa *PolicyAdministrator) checkToken(tok string, account *ecdsa.PublicKey, now time.Time) (tnauth.List, error) {
	t, err := spctoken.Parse(tok)
	if err != nil {
		return tnauth.List{}, fmt.Errorf("%w: %w", ErrToken, err)
	}
	if err := t.VerifySignature(&pa.key.PublicKey); err != nil {
		return tnauth.List{}, ErrForeignToken
	}
	fp, err := Fingerprint(account)
	if err != nil {
		return tnauth.List{}, err
	}
	switch err := t.Check(spctoken.Want{Fingerprint: fp, Now: now}); {
	case errors.Is(err, spctoken.ErrExpired):
		return tnauth.List{}, ErrTokenExpired
	case errors.Is(err, spctoken.ErrFingerprint):
		return tnauth.List{}, ErrFingerprint
	case err != nil:
		return tnauth.List{}, fmt.Errorf("%w: %w", ErrToken, err)
	}
	_, l, err := spctoken.DecodeTkValue(t.Claims.ATC.TkValue)
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
