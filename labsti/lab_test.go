package labsti_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/shakenline/shakenline/labsti"
	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/tnauth"
	"github.com/shakenline/shakenline/verify"
)

type lab struct {
	*labsti.Server
	dir    string
	client *http.Client
	crlURL string
}

// startLab runs a lab on loopback with ports the kernel picks.
func startLab(t *testing.T, mod func(*labsti.Config)) *lab {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := labsti.Config{Dir: dir, Listen: ln.Addr().String(), CRLListen: cln.Addr().String(), Lifetime: time.Minute,
		SPCs: []string{"1234", "5678"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&cfg)
	}
	s, err := labsti.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, cln) }()
	t.Cleanup(func() { cancel(); <-done })
	roots := x509.NewCertPool()
	b, err := os.ReadFile(filepath.Join(dir, "tls-root.pem"))
	if err != nil || !roots.AppendCertsFromPEM(b) {
		t.Fatalf("tls-root.pem: %v", err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	return &lab{Server: s, dir: dir, client: hc, crlURL: "http://" + cln.Addr().String() + "/ca/intermediate.crl"}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// client is an acmez client and account on the lab.
type client struct {
	t    *testing.T
	l    *lab
	c    *acme.Client
	acct acme.Account
}

func (l *lab) newClient(t *testing.T) *client {
	c := &acme.Client{Directory: l.DirectoryURL(), HTTPClient: l.client, PollInterval: 20 * time.Millisecond, PollTimeout: 5 * time.Second}
	acct, err := c.NewAccount(t.Context(), acme.Account{PrivateKey: newKey(t), TermsOfServiceAgreed: true})
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, l: l, c: c, acct: acct}
}

func (c *client) token(spc string, pub any) (string, error) {
	fp, err := spctoken.Fingerprint(pub)
	if err != nil {
		c.t.Fatal(err)
	}
	tv, _ := spctoken.TkValue(tnauth.List{SPCs: []string{spc}})
	src := &spctoken.APISource{BaseURL: c.l.PAURL(), Account: spc, CredentialsFile: c.l.CredentialsFile(spc), Client: c.l.client}
	return src.Token(c.t.Context(), spctoken.Request{TkValue: tv, Fingerprint: fp})
}

func tkvalue(spc string) string {
	v, _ := spctoken.TkValue(tnauth.List{SPCs: []string{spc}})
	return v
}

func csrFor(t *testing.T, key *ecdsa.PrivateKey, spc string) []byte {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "SHAKEN " + spc, Organization: []string{"Test SP"}, Country: []string{"US"}}}
	if spc != "" {
		ext, err := tnauth.List{SPCs: []string{spc}}.Extension()
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = []pkix.Extension{ext}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// order runs newOrder and the tkauth-01 answer with tok; it returns the
// order and the authorization after polling.
func (c *client) order(spc, tok string) (acme.Order, acme.Authorization, error) {
	ctx := c.t.Context()
	o, err := c.c.NewOrder(ctx, c.acct, acme.Order{Identifiers: []acme.Identifier{{Type: "TNAuthList", Value: tkvalue(spc)}}})
	if err != nil {
		return o, acme.Authorization{}, err
	}
	az, err := c.c.GetAuthorization(ctx, c.acct, o.Authorizations[0])
	if err != nil {
		return o, az, err
	}
	if len(az.Challenges) != 1 || az.Challenges[0].Type != acme.ChallengeTypeAuthorityToken || az.Challenges[0].TkAuthType != "atc" {
		c.t.Fatalf("challenges %+v", az.Challenges)
	}
	ch := az.Challenges[0]
	ch.Payload = map[string]string{"atc": tok}
	if _, err := c.c.InitiateChallenge(ctx, c.acct, ch); err != nil {
		return o, az, err
	}
	az, err = c.c.PollAuthorization(ctx, c.acct, az)
	return o, az, err
}

func (c *client) issue(spc string, key *ecdsa.PrivateKey) []*x509.Certificate {
	c.t.Helper()
	tok, err := c.token(spc, c.acct.PrivateKey.Public())
	if err != nil {
		c.t.Fatal(err)
	}
	o, _, err := c.order(spc, tok)
	if err != nil {
		c.t.Fatal(err)
	}
	o, err = c.c.FinalizeOrder(c.t.Context(), c.acct, o, csrFor(c.t, key, spc))
	if err != nil {
		c.t.Fatal(err)
	}
	chains, err := c.c.GetCertificateChain(c.t.Context(), c.acct, o.Certificate)
	if err != nil {
		c.t.Fatal(err)
	}
	chain, err := verify.ParseChain(chains[0].ChainPEM)
	if err != nil {
		c.t.Fatal(err)
	}
	return chain
}

func (l *lab) roots(t *testing.T) *x509.CertPool {
	p := x509.NewCertPool()
	b, err := os.ReadFile(filepath.Join(l.dir, "root.pem"))
	if err != nil || !p.AppendCertsFromPEM(b) {
		t.Fatal("root.pem", err)
	}
	return p
}

func verifies(chain []*x509.Certificate, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// The whole RFC 8555 flow with an independent client (acmez): the chain
// verifies to root.pem, carries the ordered TNAuthList and the CSR's key,
// lives Lifetime; a revoked certificate appears on the CRL.
func TestIssueThroughACME(t *testing.T) {
	l := startLab(t, nil)
	c := l.newClient(t)
	key := newKey(t)
	chain := c.issue("1234", key)
	if err := verifies(chain, l.roots(t)); err != nil {
		t.Fatalf("issued chain does not verify to root.pem: %v", err)
	}
	leaf := chain[0]
	tl, ok, err := tnauth.FromCertificate(leaf)
	if err != nil || !ok || len(tl.SPCs) != 1 || tl.SPCs[0] != "1234" {
		t.Fatalf("TNAuthList %+v %v %v", tl, ok, err)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatal("leaf key is not the CSR's")
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != time.Minute {
		t.Fatalf("lifetime %v", d)
	}
	if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != l.crlURL {
		t.Fatalf("CRL DP %v, want %s", leaf.CRLDistributionPoints, l.crlURL)
	}
	if l.Issued() != 1 {
		t.Fatalf("issued %d", l.Issued())
	}
	if err := c.c.RevokeCertificate(t.Context(), c.acct, leaf, c.acct.PrivateKey, 4); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(l.crlURL)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(chain[1]); err != nil {
		t.Fatalf("CRL not signed by the intermediate: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("CRL entries %+v", crl.RevokedCertificateEntries)
	}
	// The same Dir again: the same root.
	s2, err := labsti.New(labsti.Config{Dir: l.dir, Listen: "127.0.0.1:1", CRLListen: "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	_ = s2
	if err := verifies(chain, l.roots(t)); err != nil {
		t.Fatal("root.pem changed on reload")
	}
}

// tkauth-01 answers the CA must refuse: a token bound to another account
// key, for another SPC, signed by another STI-PA, and the challenge-fail
// fault. Each leaves the authorization invalid.
func TestChallengeRefused(t *testing.T) {
	l := startLab(t, nil)
	c := l.newClient(t)
	other := newKey(t)
	foreign, err := c.token("1234", other.Public())
	if err != nil {
		t.Fatal(err)
	}
	good, err := c.token("1234", c.acct.PrivateKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	tk, _ := spctoken.Parse(good)
	forged, _ := spctoken.Sign(tk.Claims, newKey(t), tk.Header.X5U)
	for name, tc := range map[string]struct{ spc, tok string }{
		"foreign-fingerprint": {"1234", foreign},
		"another-spc":         {"5678", good},
		"forged":              {"1234", forged},
		"garbage":             {"1234", "a.b.c"},
	} {
		_, az, err := c.order(tc.spc, tc.tok)
		if err == nil || az.Status != acme.StatusInvalid {
			t.Errorf("%s: authorization %q, err %v; want invalid", name, az.Status, err)
		}
	}
	if err := l.SetFault("ca", labsti.FaultChallenge); err != nil {
		t.Fatal(err)
	}
	if _, az, err := c.order("1234", good); err == nil || az.Status != acme.StatusInvalid {
		t.Fatalf("challenge-fail fault: %q %v", az.Status, err)
	}
	_ = l.SetFault("ca", "ok")
	if _, az, err := c.order("1234", good); err != nil || az.Status != acme.StatusValid {
		t.Fatalf("after the fault: %q %v", az.Status, err)
	}
}

// Orders and CSRs the CA refuses: a DNS identifier, finalize before the
// challenge, a CSR without TNAuthList or with another one.
func TestOrderAndCSRChecks(t *testing.T) {
	l := startLab(t, nil)
	c := l.newClient(t)
	ctx := t.Context()
	var p acme.Problem
	_, err := c.c.NewOrder(ctx, c.acct, acme.Order{Identifiers: []acme.Identifier{{Type: "dns", Value: "example.net"}}})
	if !errors.As(err, &p) || p.Type != "urn:ietf:params:acme:error:unsupportedIdentifier" {
		t.Fatalf("dns identifier: %v", err)
	}
	o, err := c.c.NewOrder(ctx, c.acct, acme.Order{Identifiers: []acme.Identifier{{Type: "TNAuthList", Value: tkvalue("1234")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.c.FinalizeOrder(ctx, c.acct, o, csrFor(t, newKey(t), "1234")); !errors.As(err, &p) || p.Type != acme.ProblemTypeOrderNotReady {
		// acmez treats orderNotReady as "keep polling"; the order stays pending.
		if err == nil || !strings.Contains(err.Error(), "pending") {
			t.Fatalf("finalize before the challenge: %v", err)
		}
	}
	tok, _ := c.token("1234", c.acct.PrivateKey.Public())
	for name, csr := range map[string][]byte{"no-tnauthlist": csrFor(t, newKey(t), ""), "other-spc": csrFor(t, newKey(t), "5678")} {
		o, _, err := c.order("1234", tok)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.c.FinalizeOrder(ctx, c.acct, o, csr); !errors.As(err, &p) || p.Type != acme.ProblemTypeBadCSR {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The STI-PA refuses a wrong password, another account's SPC and, under
// the faults, every request (refused) or answers 503 (down).
func TestSTIPARefusals(t *testing.T) {
	l := startLab(t, nil)
	c := l.newClient(t)
	fp, _ := spctoken.Fingerprint(c.acct.PrivateKey.Public())
	bad := filepath.Join(t.TempDir(), "cred.json")
	_ = os.WriteFile(bad, []byte(`{"user_id":"1234","password":"wrong"}`), 0o600)
	src := &spctoken.APISource{BaseURL: l.PAURL(), Account: "1234", CredentialsFile: bad, Client: l.client}
	if _, err := src.Token(t.Context(), spctoken.Request{TkValue: tkvalue("1234"), Fingerprint: fp}); !errors.Is(err, spctoken.ErrRefused) {
		t.Fatalf("wrong password: %v", err)
	}
	src = &spctoken.APISource{BaseURL: l.PAURL(), Account: "1234", CredentialsFile: l.CredentialsFile("1234"), Client: l.client}
	if _, err := src.Token(t.Context(), spctoken.Request{TkValue: tkvalue("5678"), Fingerprint: fp}); !errors.Is(err, spctoken.ErrRefused) {
		t.Fatalf("another SPC: %v", err)
	}
	_ = l.SetFault("pa", labsti.FaultRefuse)
	if _, err := src.Token(t.Context(), spctoken.Request{TkValue: tkvalue("1234"), Fingerprint: fp}); !errors.Is(err, spctoken.ErrRefused) {
		t.Fatalf("refuse fault: %v", err)
	}
	_ = l.SetFault("pa", labsti.FaultDown)
	if _, err := src.Token(t.Context(), spctoken.Request{TkValue: tkvalue("1234"), Fingerprint: fp}); !errors.Is(err, spctoken.ErrUnavailable) {
		t.Fatalf("down fault: %v", err)
	}
	_ = l.SetFault("pa", "ok")
	tok, err := src.Token(t.Context(), spctoken.Request{TkValue: tkvalue("1234"), Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := spctoken.Parse(tok)
	b, _ := os.ReadFile(filepath.Join(l.dir, "sti-pa.pem"))
	pa, _ := verify.ParseChain(b)
	if err := pt.VerifySignature(pa[0].PublicKey.(*ecdsa.PublicKey)); err != nil {
		t.Fatalf("token does not verify with sti-pa.pem: %v", err)
	}
	if err := l.SetFault("pa", "bogus"); err == nil {
		t.Fatal("unknown fault accepted")
	}
}

// The issuing faults: wrong-tnauth changes the certificate's TNAuthList,
// untrusted issues from a root that is not root.pem.
func TestIssuingFaults(t *testing.T) {
	l := startLab(t, nil)
	c := l.newClient(t)
	_ = l.SetFault("ca", labsti.FaultWrongTNAuth)
	chain := c.issue("1234", newKey(t))
	if tl, _, _ := tnauth.FromCertificate(chain[0]); len(tl.SPCs) != 1 || tl.SPCs[0] != "9999" {
		t.Fatalf("wrong-tnauth: %+v", tl)
	}
	_ = l.SetFault("ca", labsti.FaultUntrusted)
	chain = c.issue("1234", newKey(t))
	if err := verifies(chain, l.roots(t)); err == nil {
		t.Fatal("untrusted fault: chain verifies to root.pem")
	}
	_ = l.SetFault("ca", labsti.FaultDown)
	if _, err := c.c.NewOrder(t.Context(), c.acct, acme.Order{Identifiers: []acme.Identifier{{Type: "TNAuthList", Value: tkvalue("1234")}}}); err == nil {
		t.Fatal("down fault: order accepted")
	}
}

// Requests that break RFC 8555 section 6 are refused before any state
// changes.
func TestJWSRefusals(t *testing.T) {
	l := startLab(t, nil)
	resp, err := l.client.Post(strings.TrimSuffix(l.DirectoryURL(), "directory")+"new-account", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType || resp.Header.Get("Replay-Nonce") == "" {
		t.Fatalf("wrong content type: %d nonce %q", resp.StatusCode, resp.Header.Get("Replay-Nonce"))
	}
	resp, err = l.client.Post(strings.TrimSuffix(l.DirectoryURL(), "directory")+"new-account", "application/jose+json",
		strings.NewReader(`{"protected":"eyJhbGciOiJFUzI1NiIsIm5vbmNlIjoieCIsInVybCI6IngifQ","payload":"","signature":""}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "badNonce") {
		t.Fatalf("unknown nonce: %d %s", resp.StatusCode, b)
	}
}
