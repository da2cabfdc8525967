package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shakenline/shakenline/p256verify"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/rcd"
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
	ErrRevoked         = errors.New("verify: certificate revoked")
	ErrCRLUnavailable  = errors.New("verify: no current CRL")
	ErrDivChain        = errors.New("verify: no div PASSporT chain links the PASSporT's dest to the called number")

	// Configuration and reload errors.
	ErrTrustFile = errors.New("verify: bad trust store file")
	ErrPreload   = errors.New("verify: bad preload file")
	ErrCacheFile = errors.New("verify: bad x5u cache file")
	ErrCRL       = errors.New("verify: bad CRL")
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
	// FailureTTL is how long a failed x5u fetch is remembered: calls that
	// name that URL meanwhile fail at once (436) instead of each waiting
	// on a repository that is down. Default 5s; negative: not remembered.
	FailureTTL time.Duration
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

	// CacheDir, when set, persists fetched x5u chains there (one PEM file
	// per URL, written atomically) and loads the unexpired ones at New.
	// Created with mode 0700 if missing.
	CacheDir string
	// PreloadFile, when set, names a file of x5u URLs (one per line, '#'
	// comments) fetched in the background after New; see PreloadDone.
	PreloadFile string

	// DisableCRL turns revocation checking off.
	DisableCRL bool
	// CRLFailClosed makes a certificate whose CRL cannot be obtained (or
	// is stale, or fails validation) fail with 437. Default: fail open,
	// counted in shakenline_verify_crl_fail_open_total and Stats.
	CRLFailClosed bool
	// MaxCRLBytes bounds one CRL download; default 1 MiB.
	MaxCRLBytes int64
	// CRLRefresh is the longest a CRL is used before it is fetched again,
	// even when its NextUpdate is later; default 1h.
	CRLRefresh time.Duration
	// CRLRetry is the background refresher's tick and the delay before a
	// failed CRL fetch is retried; default 1m.
	CRLRetry time.Duration
	// CRLCacheSize bounds the number of cached CRL URLs; default 256.
	CRLCacheSize int

	// FastKeys bounds the number of certificate keys that get a
	// precomputed verification table (package p256verify, about 222 KiB
	// each); default p256verify.DefaultMaxKeys (32). Negative: no tables.
	FastKeys int

	// Linked content of Rich Call Data (content.go): MaxContentBytes
	// bounds one response (default 512 KiB), ContentCacheSize the cached
	// URLs (default 256) and ContentCacheBytes their bytes (default
	// 32 MiB).
	MaxContentBytes   int64
	ContentCacheSize  int
	ContentCacheBytes int64
}

// MaxDivChain is the most div PASSporTs (RFC 8946) a call's chain may
// have: a call forwarded up to five times verifies (docs/STANDARDS.md,
// "div").
const MaxDivChain = 5

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

	// Forwarded calls: the div PASSporTs (RFC 8946) that took the shaken
	// PASSporT's dest to the called number, 0 when it was the called
	// number already.
	DivChain int
	// Rich Call Data (RFC 9795): what a verified call may show, nil when
	// it sent none or they failed (RCDErr says why; a failed rcd never
	// fails the call).
	RCD    *rcd.Display
	RCDErr error
}

// ReasonHeader returns the RFC 9410 Reason header value, or "" on pass.
func (r Result) ReasonHeader() string {
	if r.Code == 0 {
		return ""
	}
	return fmt.Sprintf("STIR;cause=%d;text=%q", r.Code, r.Reason)
}

// Verifier verifies Identity headers. Safe for concurrent use. Close stops
// its background work (CRL refresh, preload, cache writes).
type Verifier struct {
	cfg      Config
	trust    atomic.Pointer[trustSnap]
	trustMu  sync.Mutex // serialises SetTrust (generation numbers)
	fetcher  *fetcher
	crls     *crlCache
	static   map[string]*entry
	replay   *replayFilter
	keys     *p256verify.Cache // nil when Config.FastKeys < 0
	contents *contentCache
	stats    counters

	ctx         context.Context // cancelled by Close
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	persistCh   chan persistJob
	preloadDone chan struct{}
	closeOnce   sync.Once
}

// New checks cfg, fills defaults and builds a Verifier. With
// Config.CacheDir it loads the persisted x5u chains; with
// Config.PreloadFile it reads the URL list (an unreadable or malformed file
// is an error) and starts fetching them in the background.
func New(cfg Config) (*Verifier, error) {
	snap, err := newTrustSnap(cfg.Trust, 1)
	if err != nil {
		return nil, err
	}
	if cfg.Freshness <= 0 {
		cfg.Freshness = 60 * time.Second
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 3 * time.Second
	}
	if cfg.FailureTTL == 0 {
		cfg.FailureTTL = 5 * time.Second
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
	if cfg.MaxCRLBytes <= 0 {
		cfg.MaxCRLBytes = 1 << 20
	}
	if cfg.CRLRefresh <= 0 {
		cfg.CRLRefresh = time.Hour
	}
	if cfg.CRLRetry <= 0 {
		cfg.CRLRetry = time.Minute
	}
	if cfg.CRLCacheSize <= 0 {
		cfg.CRLCacheSize = 256
	}
	if cfg.MaxContentBytes <= 0 {
		cfg.MaxContentBytes = 512 << 10
	}
	if cfg.ContentCacheSize <= 0 {
		cfg.ContentCacheSize = 256
	}
	if cfg.ContentCacheBytes <= 0 {
		cfg.ContentCacheBytes = 32 << 20
	}
	cfg.Trust = nil // the snapshot owns the stores; SetTrust replaces it
	var preload []string
	if cfg.PreloadFile != "" {
		if preload, err = readPreload(cfg.PreloadFile); err != nil {
			return nil, err
		}
	}
	v := &Verifier{cfg: cfg, static: map[string]*entry{}}
	if cfg.FastKeys >= 0 {
		v.keys = p256verify.NewCache(cfg.FastKeys)
	}
	v.trust.Store(snap)
	for u, chain := range cfg.Static {
		e, err := newEntry(chain, time.Time{})
		if err != nil {
			return nil, fmt.Errorf("verify: static certificate for %q: %w", u, err)
		}
		v.static[u] = e
	}
	v.fetcher = newFetcher(&v.cfg)
	v.contents = newContentCache(cfg.ContentCacheSize, cfg.ContentCacheBytes)
	v.crls = newCRLCache(v)
	v.replay = newReplayFilter(2*cfg.Freshness, cfg.ReplayCapacity)
	v.ctx, v.cancel = context.WithCancel(context.Background())
	if cfg.CacheDir != "" {
		if err := v.loadCache(); err != nil {
			v.cancel()
			return nil, err
		}
		v.persistCh = make(chan persistJob, persistQueue)
		v.wg.Add(1)
		go v.persistLoop()
	}
	if !cfg.DisableCRL {
		v.wg.Add(1)
		go v.crlRefreshLoop()
	}
	v.preloadDone = make(chan struct{})
	if len(preload) > 0 {
		v.wg.Add(1)
		go v.preload(preload)
	} else {
		close(v.preloadDone)
	}
	return v, nil
}

// Close stops the background work, waits for it and writes out queued
// cache files. Verify keeps working after Close (without background CRL
// refresh or persistence). Close is idempotent.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		v.cancel()
		v.wg.Wait()
	})
	return nil
}

// Verify checks the Identity headers of one call.
func (v *Verifier) Verify(ctx context.Context, in Input) Result {
	now := in.Time
	if now.IsZero() {
		now = v.cfg.Now()
	}
	r := v.verify(ctx, in, now)
	countResult(r.Verstat, r.Code)
	return r
}

func (v *Verifier) verify(ctx context.Context, in Input, now time.Time) Result {
	if len(in.Identity) == 0 {
		return Result{Verstat: NoTN, Code: CodeUseIdentity, Reason: reasonUseIdentity, Detail: ErrNoIdentity.Error(), Err: ErrNoIdentity}
	}
	// Every Identity header: the shaken PASSporTs are candidates, the div
	// and rcd ones serve them (RFC 8946, RFC 9795), others are skipped.
	var first *Result
	failed := func(r Result) {
		if first == nil {
			first = &r
		}
	}
	var shakens, divs, rcds []*passport.Identity
	for _, h := range in.Identity {
		id, err := passport.ParseIdentityAny(h)
		switch {
		case errors.Is(err, passport.ErrUnsupportedPPT):
			countPassport(pptOther, false)
			continue
		case errors.Is(err, passport.ErrUnsupportedAlg):
			countPassport(pptOf(id), false)
			failed(fail(CodeUnsupported, err, id))
			continue
		case err != nil:
			countPassport(pptOther, false)
			failed(fail(CodeInvalid, err, nil))
			continue
		}
		switch id.PPT {
		case passport.PPTShaken:
			shakens = append(shakens, id)
		case passport.PPTDiv:
			divs = append(divs, id)
		default:
			rcds = append(rcds, id)
		}
	}
	for _, id := range shakens {
		r := v.verifyShaken(ctx, id, divs, in, now)
		if r.Verstat == Passed {
			v.richCallData(ctx, &r, id, rcds, in, now)
			return r
		}
		failed(r)
	}
	if first != nil {
		return *first
	}
	return Result{Verstat: NoTN, Code: CodeInvalid, Reason: reasonInvalid, Detail: ErrNoShaken.Error(), Err: ErrNoShaken}
}

// verifyShaken verifies one shaken PASSporT. When its dest is not the
// called number, the div PASSporTs may link them (divChain).
func (v *Verifier) verifyShaken(ctx context.Context, id *passport.Identity, divs []*passport.Identity, in Input, now time.Time) Result {
	destOK := len(in.DestTNs) == 0 || destMatch(id.Payload.Dest.TN, in.DestTNs)
	if !destOK && len(divs) == 0 {
		// No div to link it: refused before any fetch.
		countPassport(passport.PPTShaken, false)
		return fail(CodeInvalid, ErrDestMismatch, id)
	}
	r := v.check(ctx, id, in, now, id.Payload.Orig.TN)
	countPassport(passport.PPTShaken, r.Verstat == Passed)
	if r.Verstat != Passed || destOK {
		return r
	}
	n, err := v.divChain(ctx, id, divs, in, now)
	if err != nil {
		return fail(CodeInvalid, fmt.Errorf("%w: %w", ErrDestMismatch, err), id)
	}
	r.DivChain = n
	return r
}

// check runs the checks of one PASSporT of any type but its dest (the
// caller matches dest): info = x5u, attest (shaken), freshness, orig
// against the call, the x5u chain at iat, the TNAuthList covering
// authority (orig; the div number for a div PASSporT), the signature and
// replay.
func (v *Verifier) check(ctx context.Context, id *passport.Identity, in Input, now time.Time, authority string) Result {
	p := &id.Payload
	if id.Info != id.Header.X5U {
		return fail(CodeBadInfo, ErrInfoMismatch, id)
	}
	if id.PPT == passport.PPTShaken {
		switch p.Attest {
		case "A", "B", "C":
		default:
			return fail(CodeInvalid, fmt.Errorf("%w: %q", ErrAttest, p.Attest), id)
		}
	}
	if d := now.Sub(time.Unix(p.IAT, 0)); d > v.cfg.Freshness || d < -v.cfg.Freshness {
		return fail(CodeStaleDate, fmt.Errorf("%w: iat %d is %v from %d", ErrStale, p.IAT, d.Round(time.Second), now.Unix()), id)
	}
	if in.OrigTN != "" && canon(p.Orig.TN) != canon(in.OrigTN) {
		return fail(CodeInvalid, ErrOrigMismatch, id)
	}
	e, err := v.certs(ctx, id.Header.X5U)
	if err != nil {
		if errors.Is(err, ErrBadCert) {
			return fail(CodeUnsupported, err, id)
		}
		return fail(CodeBadInfo, err, id)
	}
	store, err := v.trusted(ctx, e, time.Unix(p.IAT, 0), now)
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
	case !e.tn.Covers(canon(authority)):
		return fail(CodeInvalid, ErrTNNotAuthorized, id)
	}
	if err := verifySig(v.keys, e.key, id); err != nil {
		return fail(CodeInvalid, err, id)
	}
	if !v.cfg.DisableReplay && v.replay.seen(sha256.Sum256(id.SigningInput), now) {
		return fail(CodeInvalid, ErrReplay, id)
	}
	return Result{Verstat: Passed, Attest: p.Attest, OrigID: p.OrigID, X5U: id.Header.X5U, TrustStore: store, SPC: spc}
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
// The chain is immutable; the trust decision is replaced atomically when
// the trust snapshot or the CRLs change.
type entry struct {
	chain   []*x509.Certificate
	inter   *x509.CertPool
	key     *p256verify.Key
	tn      tnauth.List
	tnErr   error
	expires time.Time // zero: never
	dec     atomic.Pointer[decision]
}

func newEntry(chain []*x509.Certificate, expires time.Time) (*entry, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrBadCert)
	}
	pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve.Params().Name != "P-256" {
		return nil, fmt.Errorf("%w: key is not ECDSA P-256", ErrBadCert)
	}
	key, err := p256verify.NewKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCert, err)
	}
	e := &entry{chain: chain, inter: x509.NewCertPool(), key: key, expires: expires}
	for _, c := range chain[1:] {
		e.inter.AddCert(c)
	}
	l, ok, err := tnauth.FromCertificate(chain[0])
	if ok {
		e.tn, e.tnErr = l, err
	}
	return e, nil
}
