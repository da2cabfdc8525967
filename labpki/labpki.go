package labpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/shakenline/shakenline/tnauth"
)

// ShakenPolicy is the ATIS SHAKEN certificate policy OID (ATIS-1000080).
var ShakenPolicy = mustOID("2.16.840.1.114569.1.1.1")

func mustOID(s string) x509.OID {
	o, err := x509.ParseOID(s)
	if err != nil {
		panic(err)
	}
	return o
}

// Errors.
var (
	ErrBadName = errors.New("labpki: bad hierarchy name")
	ErrNoTN    = errors.New("labpki: neither SPC nor TN authorization list given")
)

// Options for Generate. Zero values take the defaults noted.
type Options struct {
	SPC       string         // service provider code, default "1234"
	Countries []string       // extra hierarchies written under DIR/<name>/
	ValidFor  time.Duration  // SP certificate lifetime, default 1 year (CAs: 10x)
	Now       time.Time      // start of validity, default time.Now(); backdated 1 hour
	TNRanges  []tnauth.Range // when set, the SP certificate uses the TN range form
	CRLURL    string         // CRL distribution point placed in issued certificates
}

// CA is a certificate authority with its key.
type CA struct {
	Cert   *x509.Certificate
	Key    *ecdsa.PrivateKey
	Parent *CA // nil for a root
	crlURL string
}

// CAOption adjusts NewCA.
type CAOption func(*caConfig)

type caConfig struct {
	notBefore, notAfter time.Time
	crlURL              string
	country             string
}

// WithValidity sets the CA certificate's validity period.
func WithValidity(notBefore, notAfter time.Time) CAOption {
	return func(c *caConfig) { c.notBefore, c.notAfter = notBefore, notAfter }
}

// WithCRLURL puts url as CRL distribution point in the certificates this CA
// issues: SP certificates and subordinate CAs. A CA's own certificate
// carries its parent's URL, so with a URL on the root and one on the
// intermediate the whole chain below the anchor is covered by (*CA).CRL
// lists published at those URLs.
func WithCRLURL(url string) CAOption { return func(c *caConfig) { c.crlURL = url } }

// WithCountry sets the subject country (C=) of the CA certificate.
func WithCountry(cc string) CAOption { return func(c *caConfig) { c.country = cc } }

// NewCA creates a CA named name (subject CN). With a nil parent it is a
// self-signed root; otherwise parent signs it as an intermediate
// (path length 0). Default validity: now-1h to now+10y.
func NewCA(name string, parent *CA, opts ...CAOption) (*CA, error) {
	now := time.Now()
	cfg := caConfig{notBefore: now.Add(-time.Hour), notAfter: now.Add(10 * 365 * 24 * time.Hour)}
	for _, o := range opts {
		o(&cfg)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("labpki: %w", err)
	}
	subj := pkix.Name{CommonName: name, Organization: []string{"Shakenline Lab"}}
	if cfg.country != "" {
		subj.Country = []string{cfg.country}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               subj,
		NotBefore:             cfg.notBefore,
		NotAfter:              cfg.notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
		tmpl.AuthorityKeyId = parent.Cert.SubjectKeyId
		if parent.crlURL != "" {
			tmpl.CRLDistributionPoints = []string{parent.crlURL}
		}
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("labpki: create CA %q: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("labpki: %w", err)
	}
	return &CA{Cert: cert, Key: key, Parent: parent, crlURL: cfg.crlURL}, nil
}

// IssueSP issues an STI-SP certificate for spc with a fresh P-256 key. The
// TNAuthList extension is tn when it has entries, else the SPC form {spc}.
// The subject CN is "SHAKEN <spc>" (or "SHAKEN TN" when spc is empty).
func (ca *CA) IssueSP(spc string, tn tnauth.List, notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("labpki: %w", err)
	}
	cert, err := ca.IssueSPKey(&key.PublicKey, spc, tn, pkix.Name{}, notBefore, notAfter)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// IssueSPKey is IssueSP for a key the provider holds (the public key of an
// ACME CSR). subj's Organization and Country, when set, replace the lab's;
// the CN is always "SHAKEN <spc>" (ATIS-1000080 certificate profile).
func (ca *CA) IssueSPKey(pub *ecdsa.PublicKey, spc string, tn tnauth.List, subj pkix.Name, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	if tn.Empty() {
		if spc == "" {
			return nil, ErrNoTN
		}
		tn = tnauth.List{SPCs: []string{spc}}
	}
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, errors.New("labpki: SP key is not P-256")
	}
	ext, err := tn.Extension()
	if err != nil {
		return nil, fmt.Errorf("labpki: %w", err)
	}
	cn := "SHAKEN " + spc
	if spc == "" {
		cn = "SHAKEN TN"
	}
	name := pkix.Name{CommonName: cn, Organization: []string{"Shakenline Lab SP"}}
	if len(subj.Organization) > 0 {
		name.Organization = subj.Organization
	}
	if len(subj.Country) > 0 {
		name.Country = subj.Country
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               name,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          keyID(pub),
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
		Policies:              []x509.OID{ShakenPolicy},
		ExtraExtensions:       []pkix.Extension{ext},
	}
	if ca.crlURL != "" {
		tmpl.CRLDistributionPoints = []string{ca.crlURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("labpki: issue SP %q: %w", spc, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("labpki: %w", err)
	}
	return cert, nil
}

// LoadCA makes a CA from a certificate and its key (as a lab tool keeps
// them on disk between runs). crlURL is the distribution point placed in
// what it issues (see WithCRLURL); parent is nil for a root.
func LoadCA(cert *x509.Certificate, key *ecdsa.PrivateKey, parent *CA, crlURL string) (*CA, error) {
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("labpki: CA key does not match its certificate")
	}
	return &CA{Cert: cert, Key: key, Parent: parent, crlURL: crlURL}, nil
}

// IssueTLS issues a certificate for SIP over TLS (not an STI
// certificate: the two are kept apart) with a fresh P-256 key: subject CN
// name, the IP addresses and DNS names as subject alternative names, for
// server and client authentication.
func (ca *CA) IssueTLS(name string, ips []net.IP, dns []string, notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("labpki: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Shakenline Lab SIP"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          keyID(&key.PublicKey),
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
		IPAddresses:           ips,
		DNSNames:              dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("labpki: issue TLS %q: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("labpki: %w", err)
	}
	return cert, key, nil
}

// CRL returns a DER CRL signed by ca that lists revoked, valid for 24 hours.
func (ca *CA) CRL(revoked []*x509.Certificate) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(now.UnixNano()),
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(24 * time.Hour),
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("labpki: CRL: %w", err)
	}
	return der, nil
}

// Chain returns the certificates from ca up to, but not including, the root.
func (ca *CA) Chain() []*x509.Certificate {
	var out []*x509.Certificate
	for c := ca; c != nil && c.Parent != nil; c = c.Parent {
		out = append(out, c.Cert)
	}
	return out
}

// Root returns the root of ca's hierarchy.
func (ca *CA) Root() *CA {
	c := ca
	for c.Parent != nil {
		c = c.Parent
	}
	return c
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

// keyID is the RFC 5280 section 4.2.1.2 method (1) key identifier.
func keyID(pub *ecdsa.PublicKey) []byte {
	b, err := pub.Bytes()
	if err != nil {
		panic(err)
	}
	h := sha1.Sum(b)
	return h[:]
}

// EncodeCerts returns certs as concatenated PEM CERTIFICATE blocks.
func EncodeCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// EncodeKey returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("labpki: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteCerts writes certs as PEM to path (mode 0644).
func WriteCerts(path string, certs ...*x509.Certificate) error {
	if err := os.WriteFile(path, EncodeCerts(certs...), 0o644); err != nil {
		return fmt.Errorf("labpki: %w", err)
	}
	return nil
}

// WriteKey writes key as PKCS#8 PEM to path with mode 0600 (also when the
// file already existed with a wider mode).
func WriteKey(path string, key *ecdsa.PrivateKey) error {
	b, err := EncodeKey(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("labpki: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("labpki: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("labpki: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("labpki: %w", err)
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)

// Hierarchy is one generated root, intermediate and SP certificate.
type Hierarchy struct {
	Root, Intermediate *CA
	SP                 *x509.Certificate
	SPKey              *ecdsa.PrivateKey
}

// NewHierarchy makes a root, an intermediate and an SP certificate as
// Generate does, without writing files. name labels the CAs' subjects.
func NewHierarchy(name string, o Options) (*Hierarchy, error) {
	o = o.withDefaults()
	nb := o.Now.Add(-time.Hour)
	caOpts := []CAOption{WithValidity(nb, o.Now.Add(10*o.ValidFor))}
	if len(name) == 2 {
		caOpts = append(caOpts, WithCountry(name))
	}
	label := "Shakenline Lab"
	if name != "" {
		label += " " + name
	}
	root, err := NewCA(label+" Root CA", nil, caOpts...)
	if err != nil {
		return nil, err
	}
	inter, err := NewCA(label+" Intermediate CA", root, append(caOpts, WithCRLURL(o.CRLURL))...)
	if err != nil {
		return nil, err
	}
	var tl tnauth.List
	if len(o.TNRanges) > 0 {
		tl.Ranges = o.TNRanges
	}
	sp, key, err := inter.IssueSP(o.SPC, tl, nb, o.Now.Add(o.ValidFor))
	if err != nil {
		return nil, err
	}
	return &Hierarchy{Root: root, Intermediate: inter, SP: sp, SPKey: key}, nil
}

// Write stores h in dir (created with mode 0755 if missing).
func (h *Hierarchy) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("labpki: %w", err)
	}
	if err := WriteCerts(filepath.Join(dir, "root.pem"), h.Root.Cert); err != nil {
		return err
	}
	if err := WriteCerts(filepath.Join(dir, "intermediate.pem"), h.Intermediate.Cert); err != nil {
		return err
	}
	if err := WriteCerts(filepath.Join(dir, "sp.pem"), h.SP, h.Intermediate.Cert); err != nil {
		return err
	}
	return WriteKey(filepath.Join(dir, "sp.key"), h.SPKey)
}

func (o Options) withDefaults() Options {
	if o.SPC == "" {
		o.SPC = "1234"
	}
	if o.ValidFor <= 0 {
		o.ValidFor = 365 * 24 * time.Hour
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	return o
}

// Generate writes a lab PKI to dir: the default hierarchy at the top level
// and one independent hierarchy per Options.Countries name in DIR/<name>/.
// Names are 1 to 32 letters, digits, '-' or '_' (ISO codes such as US, FR,
// or GLOBAL).
func Generate(dir string, o Options) error {
	for _, c := range o.Countries {
		if !nameRE.MatchString(c) {
			return fmt.Errorf("%w: %q", ErrBadName, c)
		}
	}
	h, err := NewHierarchy("", o)
	if err != nil {
		return err
	}
	if err := h.Write(dir); err != nil {
		return err
	}
	for _, c := range o.Countries {
		h, err := NewHierarchy(c, o)
		if err != nil {
			return err
		}
		if err := h.Write(filepath.Join(dir, c)); err != nil {
			return err
		}
	}
	return nil
}
