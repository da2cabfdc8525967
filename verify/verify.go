package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/tnauth"
)

// Verstat values (ATIS-1000074 section 5.3.1).
const (
	Passed = "TN-Validation-Passed"
	Failed = "TN-Validation-Failed"
	NoTN   = "No-TN-Validation"
)

// SIP response codes used in Result.Code (RFC 8224 section 13, RFC 3261).
const (
	CodeUseIdentity   = 428
	CodeBadInfo       = 436
	CodeUnsupported   = 437
	CodeInvalid       = 438
	CodeStaleDate     = 403
	reasonUseIdentity = "Use Identity Header"
	reasonBadInfo     = "Bad Identity Info"
	reasonUnsupported = "Unsupported Credential"
	reasonInvalid     = "Invalid Identity Header"
	reasonStale       = "Stale Date"
)

// Errors.
var (
	ErrNoTrust         = errors.New("verify: no trust store configured")
	ErrScheme          = errors.New("verify: x5u scheme not allowed")
	ErrForbiddenTarget = errors.New("verify: x5u target address not allowed")
	ErrRedirect        = errors.New("verify: x5u redirect not allowed")
	ErrTooLarge        = errors.New("verify: x5u response too large")
	ErrFetch           = errors.New("verify: x5u fetch failed")
	ErrBadCert         = errors.New("verify: bad x5u certificate")

	// Verification failures (Result.Err).
	ErrNoIdentity      = errors.New("verify: no Identity header")
	ErrNoShaken        = errors.New("verify: no SHAKEN PASSporT")
	ErrInfoMismatch    = errors.New("verify: info parameter differs from x5u claim")
	ErrAttest          = errors.New("verify: bad attest claim")
	ErrStale           = errors.New("verify: iat outside the freshness window")
	ErrOrigMismatch    = errors.New("verify: orig does not match the caller number")
	ErrDestMismatch    = errors.New("verify: dest does not match the called number")
	ErrUntrusted       = errors.New("verify: certificate chain not trusted at iat")
	ErrNoTNAuthList    = errors.New("verify: certificate has no valid TNAuthList")
	ErrTNNotAuthorized = errors.New("verify: orig TN not authorized by the certificate")
	ErrReplay          = errors.New("verify: replayed PASSporT")
)

// Config configures a Verifier. Zero values take the defaults noted.
type Config struct {
	// Trust maps a store name (a jurisdiction: "US", "FR", ...) to its
	// trust anchors. At least one is required.
	Trust map[string]*x509.CertPool
	// Freshness is the accepted |verification time - iat|; default 60s.
	Freshness time.Duration
	// AllowHTTP allows http:// x5u URLs (lab).
	AllowHTTP bool
	// AllowPrivate allows loopback, private and other non-public x5u
	// targets (lab).
	AllowPrivate bool
	// FetchTimeout bounds one x5u fetch; default 3s.
	FetchTimeout time.Duration
	// MaxCertBytes bounds the x5u response body; default 16 KiB.
	MaxCertBytes int64
	// MaxRedirects bounds redirects per fetch; default 3 (negative: none).
	MaxRedirects int
	// CacheSize bounds the number of cached x5u URLs; default 1024.
	CacheSize int
	// DefaultCacheTTL applies when the response has no max-age; default 1h.
	DefaultCacheTTL time.Duration
	// MaxCacheTTL caps max-age; default 24h.
	MaxCacheTTL time.Duration
	// ReplayCapacity bounds one generation of the replay filter; default
	// 1<<20 (two generations of 32-byte keys: ~100 MB worst case).
	ReplayCapacity int
	// DisableReplay turns the replay check off.
	DisableReplay bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Static maps x5u URLs to certificate chains (leaf first) that are used
	// instead of fetching (the CLI's --cert, tests).
	Static map[string][]*x509.Certificate
	// TLSRootCAs verifies https x5u servers; nil means the system roots.
	TLSRootCAs *x509.CertPool
}

// Input is one call to verify.
type Input struct {
	Identity []string  // every Identity header value of the INVITE
	OrigTN   string    // caller number (E.164 digits) to match orig; "" skips
	DestTNs  []string  // called numbers to match dest; empty skips
	Time     time.Time // verification time; zero means Config.Now()
}

// Result is the outcome of Verify.
type Result struct {
	Verstat    string // Passed, Failed or NoTN
	Code       int    // 0 on pass, else 428, 436, 437, 438 or 403
	Reason     string // RFC 9410 text for Code
	Detail     string // what exactly failed, for logs and the API
	Err        error  // the failure, for errors.Is; nil on pass
	Attest     string
	OrigID     string
	TrustStore string // the trust store that anchored the chain
	SPC        string // from the TNAuthList SPC form
	X5U        string
}

// ReasonHeader returns the RFC 9410 Reason header value, or "" on pass.
func (r Result) ReasonHeader() string {
	if r.Code == 0 {
		return ""
	}
	return fmt.Sprintf("STIR;cause=%d;text=%q", r.Code, r.Reason)
}

// Verifier verifies Identity headers. Safe for concurrent use.
type Verifier struct {
	cfg     Config
	stores  []string // sorted names of cfg.Trust
	fetcher *fetcher
	static  map[string]*entry
	replay  *replayFilter
}

// New checks cfg, fills defaults and builds a Verifier.
func New(cfg Config) (*Verifier, error) {
	if len(cfg.Trust) == 0 {
		return nil, ErrNoTrust
	}
	if cfg.Freshness <= 0 {
		cfg.Freshness = 60 * time.Second
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 3 * time.Second
	}
	if cfg.MaxCertBytes <= 0 {
		cfg.MaxCertBytes = 16 << 10
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = 3
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 1024
	}
	if cfg.DefaultCacheTTL <= 0 {
		cfg.DefaultCacheTTL = time.Hour
	}
	if cfg.MaxCacheTTL <= 0 {
		cfg.MaxCacheTTL = 24 * time.Hour
	}
	if cfg.ReplayCapacity <= 0 {
		cfg.ReplayCapacity = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{cfg: cfg, static: map[string]*entry{}}
	for name, pool := range cfg.Trust {
		if pool == nil {
			return nil, fmt.Errorf("%w: store %q is nil", ErrNoTrust, name)
		}
		v.stores = append(v.stores, name)
	}
	slices.Sort(v.stores)
	for u, chain := range cfg.Static {
		e, err := v.newEntry(chain, time.Time{})
		if err != nil {
			return nil, fmt.Errorf("verify: static certificate for %q: %w", u, err)
		}
		v.static[u] = e
	}
	v.fetcher = newFetcher(&v.cfg)
	v.replay = newReplayFilter(2*cfg.Freshness, cfg.ReplayCapacity)
	return v, nil
}

// Verify checks the Identity headers of one call.
func (v *Verifier) Verify(ctx context.Context, in Input) Result {
	now := in.Time
	if now.IsZero() {
		now = v.cfg.Now()
	}
	if len(in.Identity) == 0 {
		return Result{Verstat: NoTN, Code: CodeUseIdentity, Reason: reasonUseIdentity, Detail: ErrNoIdentity.Error(), Err: ErrNoIdentity}
	}
	var first *Result
	for _, h := range in.Identity {
		r := v.verifyOne(ctx, h, in, now)
		if r.Verstat == Passed {
			return r
		}
		if r.Verstat == Failed && first == nil {
			first = &r
		}
	}
	if first != nil {
		return *first
	}
	return Result{Verstat: NoTN, Code: CodeInvalid, Reason: reasonInvalid, Detail: ErrNoShaken.Error(), Err: ErrNoShaken}
}

func fail(code int, err error, id *passport.Identity) Result {
	r := Result{Verstat: Failed, Code: code, Err: err}
	if err != nil {
		r.Detail = err.Error()
	}
	switch code {
	case CodeBadInfo:
		r.Reason = reasonBadInfo
	case CodeUnsupported:
		r.Reason = reasonUnsupported
	case CodeStaleDate:
		r.Reason = reasonStale
	default:
		r.Reason = reasonInvalid
	}
	if id != nil {
		r.Attest, r.OrigID, r.X5U = id.Payload.Attest, id.Payload.OrigID, id.Header.X5U
	}
	return r
}

func (v *Verifier) verifyOne(ctx context.Context, h string, in Input, now time.Time) Result {
	id, err := passport.ParseIdentity(h)
	switch {
	case errors.Is(err, passport.ErrUnsupportedPPT):
		return Result{Verstat: NoTN, Detail: err.Error(), Err: err}
	case errors.Is(err, passport.ErrUnsupportedAlg):
		return fail(CodeUnsupported, err, id)
	case err != nil:
		return fail(CodeInvalid, err, nil)
	}
	p := &id.Payload
	if id.Info != id.Header.X5U {
		return fail(CodeBadInfo, ErrInfoMismatch, id)
	}
	switch p.Attest {
	case "A", "B", "C":
	default:
		return fail(CodeInvalid, fmt.Errorf("%w: %q", ErrAttest, p.Attest), id)
	}
	if d := now.Sub(time.Unix(p.IAT, 0)); d > v.cfg.Freshness || d < -v.cfg.Freshness {
		return fail(CodeStaleDate, fmt.Errorf("%w: iat %d is %v from %d", ErrStale, p.IAT, d.Round(time.Second), now.Unix()), id)
	}
	if in.OrigTN != "" && canon(p.Orig.TN) != canon(in.OrigTN) {
		return fail(CodeInvalid, ErrOrigMismatch, id)
	}
	if len(in.DestTNs) > 0 && !destMatch(p.Dest.TN, in.DestTNs) {
		return fail(CodeInvalid, ErrDestMismatch, id)
	}
	e, err := v.certs(ctx, id.Header.X5U)
	if err != nil {
		if errors.Is(err, ErrBadCert) {
			return fail(CodeUnsupported, err, id)
		}
		return fail(CodeBadInfo, err, id)
	}
	store, err := v.trusted(e, time.Unix(p.IAT, 0))
	if err != nil {
		return fail(CodeUnsupported, err, id)
	}
	var spc string
	switch {
	case e.tnErr != nil:
		return fail(CodeUnsupported, fmt.Errorf("%w: %w", ErrNoTNAuthList, e.tnErr), id)
	case e.tn.Empty():
		return fail(CodeUnsupported, ErrNoTNAuthList, id)
	case len(e.tn.SPCs) > 0:
		spc = e.tn.SPCs[0]
	case !e.tn.Covers(canon(p.Orig.TN)):
		return fail(CodeInvalid, ErrTNNotAuthorized, id)
	}
	if err := passport.VerifySignature(e.pub, id); err != nil {
		return fail(CodeInvalid, err, id)
	}
	if !v.cfg.DisableReplay && v.replay.seen(sha256.Sum256(id.SigningInput), now) {
		return fail(CodeInvalid, ErrReplay, id)
	}
	return Result{Verstat: Passed, Attest: p.Attest, OrigID: p.OrigID, X5U: id.Header.X5U, TrustStore: store, SPC: spc}
}

func canon(tn string) string { return strings.TrimPrefix(tn, "+") }

func destMatch(claim, want []string) bool {
	for _, c := range claim {
		for _, w := range want {
			if canon(c) == canon(w) {
				return true
			}
		}
	}
	return false
}

// entry is a parsed certificate chain with what verification needs from it.
type entry struct {
	chain   []*x509.Certificate
	inter   *x509.CertPool
	pub     *ecdsa.PublicKey
	tn      tnauth.List
	tnErr   error
	expires time.Time // zero: never
	// The store that validated the chain at creation, and the period in
	// which every certificate of that chain is valid.
	store    string
	validNB  time.Time
	validNA  time.Time
	verified bool
}

func (v *Verifier) newEntry(chain []*x509.Certificate, expires time.Time) (*entry, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrBadCert)
	}
	pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve.Params().Name != "P-256" {
		return nil, fmt.Errorf("%w: key is not ECDSA P-256", ErrBadCert)
	}
	e := &entry{chain: chain, inter: x509.NewCertPool(), pub: pub, expires: expires}
	for _, c := range chain[1:] {
		e.inter.AddCert(c)
	}
	l, ok, err := tnauth.FromCertificate(chain[0])
	if ok {
		e.tn, e.tnErr = l, err
	}
	now := v.cfg.Now()
	if store, chains, err := v.verifyChain(e, now); err == nil {
		e.store, e.verified = store, true
		e.validNB, e.validNA = time.Time{}, time.Unix(1<<40, 0)
		for _, c := range chains[0] {
			if c.NotBefore.After(e.validNB) {
				e.validNB = c.NotBefore
			}
			if c.NotAfter.Before(e.validNA) {
				e.validNA = c.NotAfter
			}
		}
	}
	return e, nil
}

func (v *Verifier) verifyChain(e *entry, at time.Time) (string, [][]*x509.Certificate, error) {
	var firstErr error
	for _, name := range v.stores {
		chains, err := e.chain[0].Verify(x509.VerifyOptions{
			Roots:         v.cfg.Trust[name],
			Intermediates: e.inter,
			CurrentTime:   at,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err == nil {
			return name, chains, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return "", nil, firstErr
}

// trusted returns the store that anchors e's chain with every certificate
// valid at iat.
func (v *Verifier) trusted(e *entry, iat time.Time) (string, error) {
	if e.verified && !iat.Before(e.validNB) && !iat.After(e.validNA) {
		return e.store, nil
	}
	store, _, err := v.verifyChain(e, iat)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	return store, nil
}
