package certmgr

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/tnauth"
	"github.com/shakenline/shakenline/verify"
)

// Stages of a renewal, the stage label of a failed attempt.
const (
	StageToken     = "token"     // the SPC token: STI-PA unreachable or refusing, or a token that does not fit
	StageOrder     = "order"     // account or newOrder at the STI-CA
	StageChallenge = "challenge" // the tkauth-01 answer was not accepted
	StageKey       = "key"       // generating the new key or its CSR
	StageFinalize  = "finalize"  // finalize or the chain download
	StageValidate  = "validate"  // the issued chain: trust, TNAuthList, key, validity
	StagePublish   = "publish"   // publishing at the x5u and seeing it there
	StageSwitch    = "switch"    // opening the signers on the new key
)

// stageError is a failed attempt at a stage.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func fail(stage string, err error) error { return &stageError{stage: stage, err: err} }

// Stage returns the stage a renewal error failed at ("" when it is not one).
func Stage(err error) string {
	var se *stageError
	if errors.As(err, &se) {
		return se.stage
	}
	return ""
}

// issued is a certificate obtained, validated, not yet in use.
type issued struct {
	name  string
	key   *newKey
	chain []*x509.Certificate
	pem   []byte
	url   string
}

// obtain runs one ACME order: account, SPC token, newOrder with the
// TNAuthList identifier, the tkauth-01 answer, a new key and its CSR,
// finalize, download; then validate. The key is made only once the
// authorization is valid, and removed again when anything after fails.
func (m *Manager) obtain(ctx context.Context) (*issued, error) {
	acct, err := m.account(ctx)
	if err != nil {
		return nil, err
	}
	fp, err := spctoken.Fingerprint(m.cfg.AccountKey.Public())
	if err != nil {
		return nil, fail(StageToken, err)
	}
	raw, err := m.cfg.Tokens.Token(ctx, spctoken.Request{TkValue: m.tkvalue, Fingerprint: fp})
	if err != nil {
		return nil, fail(StageToken, err)
	}
	tok, err := spctoken.Parse(raw)
	if err == nil {
		err = tok.Check(spctoken.Want{TNAuthList: m.tnDER, Fingerprint: fp, Now: m.now(), MinLife: 10 * time.Second})
	}
	if err != nil {
		return nil, fail(StageToken, err)
	}
	name := m.nextName()
	var nk *newKey
	defer func() {
		if nk != nil {
			nk.closer()
		}
	}()
	keep := false
	defer func() {
		if nk != nil && !keep {
			if err := m.plan.destroy(nk.rec); err != nil {
				m.log.Warn("acme: could not remove the key of a refused certificate", "err", err)
			}
		}
	}()
	// The identifier value is the token's tkvalue as the STI-PA wrote it,
	// so a CA that compares the two as strings agrees.
	ids := []acme.Identifier{{Type: "TNAuthList", Value: tok.Claims.ATC.TkValue}}
	chain, err := m.order(ctx, acct, ids, tok.Raw, func() ([]byte, error) {
		var err error
		if nk, err = m.plan.generate(name); err != nil {
			return nil, err
		}
		return m.csr(nk)
	})
	if err != nil {
		return nil, err
	}
	if err := m.validate(chain, nk.pub); err != nil {
		return nil, fail(StageValidate, err)
	}
	keep = true
	return &issued{name: name, key: nk, chain: chain, pem: encodeChain(chain)}, nil
}

// account registers the account key, or finds its account: newAccount
// with an existing key answers that account (RFC 8555 section 7.3.1), so
// asking at every renewal serves a first run and a CA that lost it alike.
func (m *Manager) account(ctx context.Context) (acme.Account, error) {
	acct, err := m.client.NewAccount(ctx, acme.Account{PrivateKey: m.cfg.AccountKey, TermsOfServiceAgreed: true, Contact: m.cfg.Contact})
	if err != nil {
		return acct, fail(StageOrder, fmt.Errorf("account: %w", err))
	}
	return acct, nil
}

// order is the RFC 8555 section 7.4 flow for ids: newOrder, every
// authorization answered (tkauth-01 with token), the CSR csr makes,
// finalize, the chain downloaded.
func (m *Manager) order(ctx context.Context, acct acme.Account, ids []acme.Identifier, token string, csr func() ([]byte, error)) ([]*x509.Certificate, error) {
	order, err := m.client.NewOrder(ctx, acct, acme.Order{Identifiers: ids})
	if err != nil {
		return nil, fail(StageOrder, err)
	}
	for _, az := range order.Authorizations {
		if err := m.authorize(ctx, acct, az, token); err != nil {
			return nil, err
		}
	}
	der, err := csr()
	if err != nil {
		return nil, fail(StageKey, err)
	}
	order, err = m.client.FinalizeOrder(ctx, acct, order, der)
	if err != nil {
		return nil, fail(StageFinalize, err)
	}
	chains, err := m.client.GetCertificateChain(ctx, acct, order.Certificate)
	if err != nil {
		return nil, fail(StageFinalize, fmt.Errorf("download: %w", err))
	}
	if len(chains) == 0 {
		return nil, fail(StageFinalize, errors.New("download: no chain"))
	}
	chain, err := verify.ParseChain(chains[0].ChainPEM)
	if err != nil {
		return nil, fail(StageFinalize, fmt.Errorf("download: %w", err))
	}
	return chain, nil
}

// authorize answers the authorization's tkauth-01 challenge with the
// token (RFC 9447 section 3: the POST carries {"atc": token}).
func (m *Manager) authorize(ctx context.Context, acct acme.Account, url, token string) error {
	az, err := m.client.GetAuthorization(ctx, acct, url)
	if err != nil {
		return fail(StageOrder, fmt.Errorf("authorization: %w", err))
	}
	if az.Status == acme.StatusValid {
		return nil
	}
	var ch *acme.Challenge
	for i := range az.Challenges {
		if az.Challenges[i].Type == acme.ChallengeTypeAuthorityToken {
			ch = &az.Challenges[i]
		}
	}
	if ch == nil {
		if m.solve != nil { // tests against a CA for DNS identifiers
			return m.solve(ctx, m.client, acct, az)
		}
		return fail(StageChallenge, fmt.Errorf("the CA offers no tkauth-01 challenge for %s", az.Identifier.Type))
	}
	ch.Payload = map[string]string{"atc": token}
	answered, err := m.client.InitiateChallenge(ctx, acct, *ch)
	if err != nil {
		return fail(StageChallenge, err)
	}
	if answered.Status == acme.StatusValid {
		// Judged at once (as the lab's CA does): read the authorization
		// instead of polling after PollInterval.
		az, err = m.client.GetAuthorization(ctx, acct, url)
		if err == nil && az.Status != acme.StatusValid {
			err = fmt.Errorf("authorization %s after a valid challenge", az.Status)
		}
	} else {
		az, err = m.client.PollAuthorization(ctx, acct, az)
	}
	if err != nil {
		return fail(StageChallenge, err)
	}
	return nil
}

// csr is the CSR for the new key: subject CN "SHAKEN <SPC>" (with the
// configured O and C) and the TNAuthList extension (RFC 9448 section 6),
// signed where the key is.
func (m *Manager) csr(nk *newKey) ([]byte, error) {
	ext, err := m.tnList.Extension()
	if err != nil {
		return nil, err
	}
	subj := pkix.Name{CommonName: "SHAKEN " + m.cfg.SPC}
	if m.cfg.Organization != "" {
		subj.Organization = []string{m.cfg.Organization}
	}
	if m.cfg.Country != "" {
		subj.Country = []string{m.cfg.Country}
	}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subj, ExtraExtensions: []pkix.Extension{ext}}, nk.csr)
}

// validate checks an issued chain before it may be used: the leaf holds the
// new key, is valid now, ends in one of the trust anchors through the
// chain's intermediates, and its TNAuthList is exactly the configured SPC.
func (m *Manager) validate(chain []*x509.Certificate, pub *ecdsa.PublicKey) error {
	leaf := chain[0]
	if lp, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !lp.Equal(pub) {
		return errors.New("the certificate is not for the key of the CSR")
	}
	now := m.now()
	if now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
		return fmt.Errorf("the certificate is not valid now (%s to %s)", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.cfg.Trust, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("the chain does not end in a configured trust anchor: %w", err)
	}
	l, ok, err := tnauth.FromCertificate(leaf)
	if err != nil || !ok {
		return fmt.Errorf("the certificate has no readable TNAuthList (%v)", err)
	}
	got, err := tnauth.Marshal(l)
	if err != nil || !bytes.Equal(got, m.tnDER) {
		return fmt.Errorf("the certificate's TNAuthList %+v is not the configured %+v", l, m.tnList)
	}
	return nil
}

func encodeChain(chain []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range chain {
		_ = pemEncode(&b, c.Raw)
	}
	return b.Bytes()
}
