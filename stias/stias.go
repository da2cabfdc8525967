package stias

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sync/singleflight"

	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/tnauth"
	"github.com/shakenline/shakenline/verify"
)

// Errors of a call; each is a signer error for the chain.
var (
	ErrConfig      = errors.New("stias: bad configuration")
	ErrHTTP        = errors.New("stias: the STI-AS refused or failed")
	ErrAnswer      = errors.New("stias: the STI-AS answer is not a usable Identity header")
	ErrClaims      = errors.New("stias: the STI-AS signed other claims than asked for")
	ErrForeignCert = errors.New("stias: the STI-AS signs with a certificate whose SPC is not ours (own_cert: enforce)")
)

// Own-certificate modes (Config.OwnCert).
const (
	OwnCertWarn    = "warn"
	OwnCertEnforce = "enforce"
)

// MaxResponse bounds an answer's body.
const MaxResponse = 64 << 10

// recheck is how long an x5u's own-certificate verdict is kept.
const recheck = time.Hour

// Config configures a Client. Zero values take the defaults shown.
type Config struct {
	Name        string        // the link's name; default "sti-as"
	URL         string        // the signing endpoint, https://host/stir/v1/signing
	Token       string        // bearer token (LoadToken); none: no Authorization header
	Timeout     time.Duration // one request, connecting included; default 1s
	MaxInFlight int           // connections kept and requests at once; default 16
	Lab         bool          // allow an http URL
	OwnCert     string        // OwnCertWarn (default) or OwnCertEnforce
	OwnSPCs     []string      // the SPCs of the provider's certificate (tnauth)
	// Fetch is how the remote's x5u is fetched (verify.FetchX5U, the
	// verifiers' hardened client); nil: http and private targets only
	// with Lab.
	Fetch      *verify.Config
	TLSRootCAs *x509.CertPool // the STI-AS's server certificate; nil: the system roots
	Logger     *slog.Logger
}

// Client is one remote STI-AS. It implements hsm.RemoteSigner and is safe
// for concurrent use.
type Client struct {
	cfg    Config
	url    string
	auth   string
	client *http.Client
	log    *slog.Logger

	group    singleflight.Group
	mu       sync.Mutex
	verdicts map[string]*verdict

	mForeign               *metrics.Gauge
	mHTTP, mAnswer, mClaim *metrics.Counter
	mForeignRejected       *metrics.Counter
	foreign                float64 // guarded by mu: the gauge's value
}

// verdict is the own-certificate check of one x5u.
type verdict struct {
	at      time.Time
	foreign bool
	spcs    []string
	err     error // the fetch failed
}

// New checks cfg and returns a Client; it opens no connection.
func New(cfg Config) (*Client, error) {
	if cfg.Name == "" {
		cfg.Name = "sti-as"
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || u.User != nil || !(u.Scheme == "https" || cfg.Lab && u.Scheme == "http") {
		return nil, fmt.Errorf("%w: sti_as %q: want an https URL (http only with lab)", ErrConfig, cfg.URL)
	}
	switch cfg.OwnCert {
	case "":
		cfg.OwnCert = OwnCertWarn
	case OwnCertWarn, OwnCertEnforce:
	default:
		return nil, fmt.Errorf("%w: own_cert %q: want warn or enforce", ErrConfig, cfg.OwnCert)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.Fetch == nil {
		cfg.Fetch = &verify.Config{AllowHTTP: cfg.Lab, AllowPrivate: cfg.Lab}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.TLSRootCAs},
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxIdleConns:           cfg.MaxInFlight,
		MaxIdleConnsPerHost:    cfg.MaxInFlight,
		MaxConnsPerHost:        cfg.MaxInFlight,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
	}
	c := &Client{
		cfg: cfg,
		url: u.String(),
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		log:      cfg.Logger,
		verdicts: map[string]*verdict{},
	}
	if cfg.Token != "" {
		c.auth = "Bearer " + cfg.Token
	}
	lab := `signer="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", " ").Replace(cfg.Name) + `"`
	c.mHTTP = metrics.GetOrCreateCounter(`shakenline_sti_as_rejected_total{` + lab + `,reason="http"}`)
	c.mAnswer = metrics.GetOrCreateCounter(`shakenline_sti_as_rejected_total{` + lab + `,reason="answer"}`)
	c.mClaim = metrics.GetOrCreateCounter(`shakenline_sti_as_rejected_total{` + lab + `,reason="claims"}`)
	c.mForeignRejected = metrics.GetOrCreateCounter(`shakenline_sti_as_rejected_total{` + lab + `,reason="foreign-cert"}`)
	c.mForeign = metrics.GetOrCreateGauge(`shakenline_sti_as_foreign_cert{`+lab+`}`, nil)
	return c, nil
}

// LoadToken reads a bearer token file: the first line that is neither
// empty nor a '#' comment, trimmed. The token is never logged.
func LoadToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: token_file: %w", ErrConfig, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" && !strings.HasPrefix(t, "#") {
			return t, nil
		}
	}
	return "", fmt.Errorf("%w: token_file %s holds no token", ErrConfig, path)
}

// Name implements hsm.RemoteSigner.
func (c *Client) Name() string { return c.cfg.Name }

// MaxInFlight is the requests the client sends at once (the chain's
// workers for the link).
func (c *Client) MaxInFlight() int { return c.cfg.MaxInFlight }

// Close drops the idle connections.
func (c *Client) Close() { c.client.CloseIdleConnections() }

// signingResponse is the ATIS-1000082 answer.
type signingResponse struct {
	SigningResponse *struct {
		Identity string `json:"identity"`
	} `json:"signingResponse"`
}

// SignInput implements hsm.RemoteSigner: it has input's claims signed by
// the STI-AS, checks the answer and appends the Identity header value to
// dst.
func (c *Client) SignInput(ctx context.Context, input, dst []byte) ([]byte, error) {
	hdr, claims, err := passport.ParseSigningInput(input)
	if err != nil {
		return dst, fmt.Errorf("stias: %s: %w", c.cfg.Name, err)
	}
	body := make([]byte, 0, len(claims)+len(`{"signingRequest":}`))
	body = append(append(append(body, `{"signingRequest":`...), claims...), '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return dst, fmt.Errorf("stias: %s: %w", c.cfg.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		c.mHTTP.Inc()
		return dst, fmt.Errorf("%w: %s: %w", ErrHTTP, c.cfg.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		c.mHTTP.Inc()
		return dst, fmt.Errorf("%w: %s: reading the answer: %w", ErrHTTP, c.cfg.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		c.mHTTP.Inc()
		return dst, fmt.Errorf("%w: %s: HTTP %d %s", ErrHTTP, c.cfg.Name, resp.StatusCode, excerpt(b))
	}
	if len(b) > MaxResponse {
		c.mAnswer.Inc()
		return dst, fmt.Errorf("%w: %s: over %d bytes", ErrAnswer, c.cfg.Name, MaxResponse)
	}
	ident, x5u, err := c.answer(b, hdr, claims)
	if err != nil {
		return dst, err
	}
	if err := c.ownCert(ctx, x5u); err != nil {
		c.mForeignRejected.Inc()
		return dst, err
	}
	return append(dst, ident...), nil
}

// answer takes the Identity header value out of an HTTP 200 body and
// checks it (check); it returns the value and its x5u.
func (c *Client) answer(b []byte, hdr passport.ProtectedHeader, claims []byte) (ident, x5u string, err error) {
	var sr signingResponse
	if err := json.Unmarshal(b, &sr); err != nil || sr.SigningResponse == nil || sr.SigningResponse.Identity == "" {
		c.mAnswer.Inc()
		return "", "", fmt.Errorf("%w: %s: no signingResponse.identity in %s", ErrAnswer, c.cfg.Name, excerpt(b))
	}
	ident = sr.SigningResponse.Identity
	x5u, err = c.check(ident, hdr, claims)
	return ident, x5u, err
}

// check verifies that ident is a PASSporT of the header's alg, ppt and typ
// with exactly the claims asked for, and returns its x5u.
func (c *Client) check(ident string, hdr passport.ProtectedHeader, claims []byte) (string, error) {
	id, err := passport.ParseIdentity(ident)
	if err != nil {
		c.mAnswer.Inc()
		return "", fmt.Errorf("%w: %s: %w", ErrAnswer, c.cfg.Name, err)
	}
	if id.Alg != hdr.Alg || id.Header.Alg != hdr.Alg || id.PPT != hdr.PPT || id.Header.PPT != hdr.PPT || id.Header.Typ != hdr.Typ {
		c.mAnswer.Inc()
		return "", fmt.Errorf("%w: %s: alg %q ppt %q typ %q, asked for alg %q ppt %q typ %q", ErrAnswer, c.cfg.Name,
			id.Header.Alg, id.Header.PPT, id.Header.Typ, hdr.Alg, hdr.PPT, hdr.Typ)
	}
	if id.Header.X5U == "" {
		c.mAnswer.Inc()
		return "", fmt.Errorf("%w: %s: no x5u", ErrAnswer, c.cfg.Name)
	}
	_, got, err := passport.ParseSigningInput(id.SigningInput)
	if err == nil {
		var same bool
		if same, err = passport.SameClaims(claims, got); err == nil && !same {
			err = fmt.Errorf("asked for %s, signed %s", claims, got)
		}
	}
	if err != nil {
		c.mClaim.Inc()
		return "", fmt.Errorf("%w: %s: %w", ErrClaims, c.cfg.Name, err)
	}
	return id.Header.X5U, nil
}

// ownCert applies the own-certificate rule to x5u (see the package doc).
func (c *Client) ownCert(ctx context.Context, x5u string) error {
	if c.cfg.OwnCert != OwnCertEnforce {
		c.pendingVerdict(x5u) // warn: the verdict logs when it comes
		return nil
	}
	v, err := c.awaitVerdict(ctx, x5u)
	if err != nil {
		return fmt.Errorf("%w: %s: %s not checked yet: %w", ErrForeignCert, c.cfg.Name, x5u, err)
	}
	switch {
	case v.err != nil:
		return fmt.Errorf("%w: %s: %s cannot be checked: %w", ErrForeignCert, c.cfg.Name, x5u, v.err)
	case v.foreign:
		return fmt.Errorf("%w: %s: %s has SPC %v, ours %v", ErrForeignCert, c.cfg.Name, x5u, v.spcs, c.cfg.OwnSPCs)
	}
	return nil
}

// pendingVerdict returns x5u's stored verdict while it is fresh, or nil
// and a channel that brings a new one (one fetch for all callers).
func (c *Client) pendingVerdict(x5u string) (*verdict, <-chan singleflight.Result) {
	c.mu.Lock()
	v := c.verdicts[x5u]
	c.mu.Unlock()
	if v != nil && time.Since(v.at) <= recheck {
		return v, nil
	}
	return nil, c.group.DoChan(x5u, func() (any, error) { return c.verdict(x5u), nil })
}

// awaitVerdict returns x5u's verdict, waiting for its fetch until ctx ends.
func (c *Client) awaitVerdict(ctx context.Context, x5u string) (*verdict, error) {
	v, ch := c.pendingVerdict(x5u)
	if v != nil {
		return v, nil
	}
	select {
	case r := <-ch:
		return r.Val.(*verdict), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ProbeTN is the calling and called number of the PASSporT CheckAtStart
// has signed: a fictitious number (NANP 555-01XX, reserved for fiction).
const ProbeTN = "12025550100"

// CheckAtStart applies the own-certificate rule when the appliance starts,
// not only at the first call the link signs (for a fallback link that may
// be hours later, during an outage): it has one probe PASSporT signed
// (attest C, from and to ProbeTN, iat now; the remote signs and may audit
// it like a call), checks the answer as SignInput does, and waits for the
// verdict of the x5u it names. It logs the outcome: a warning when the
// certificate is not ours (also with own_cert warn, where calls wait for
// nothing) or when it cannot be checked, one info line when it is ours.
// own reports whether the remote's certificate carries one of our SPCs;
// err is a failure to ask or to check (the link still serves: its calls
// apply the rule again at their answers); a remote that does not answer
// or refuses (ErrHTTP) is asked again with a growing pause (250 ms to
// 4 s) until ctx ends. The probe does not go through the chain, so it
// never touches the link's breaker or shakenline_hsm_* series (a refused
// probe counts in shakenline_sti_as_rejected_total like a call's answer).
func (c *Client) CheckAtStart(ctx context.Context) (own bool, err error) {
	// A remote that does not answer (yet: it may be starting too, or the
	// first connection is slow) is asked again, until ctx ends.
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 4*time.Second) {
		own, err = c.checkAtStart(ctx)
		if !errors.Is(err, ErrHTTP) {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
			continue
		}
		break
	}
	switch {
	case err != nil:
		c.log.Warn("stias: the certificate the remote STI-AS signs with could not be checked at start (FCC own-certificate rule); its answers will be checked as they come",
			"signer", c.cfg.Name, "err", err, "own_cert", c.cfg.OwnCert)
	case own:
		c.log.Info("stias: the remote STI-AS signs with a certificate of ours", "signer", c.cfg.Name, "own_cert", c.cfg.OwnCert)
	}
	// A foreign certificate: verdict has logged the warning, once per x5u.
	return own, err
}

func (c *Client) checkAtStart(ctx context.Context) (bool, error) {
	b, err := passport.NewBuilder("https://probe.invalid/") // the header's x5u is not sent
	if err != nil {
		return false, err
	}
	cl := passport.Claims{Attest: 'C', Orig: []byte(ProbeTN), Dest: [][]byte{[]byte(ProbeTN)}, IAT: time.Now().Unix()}
	if _, err := rand.Read(cl.OrigID[:]); err != nil {
		return false, err
	}
	cl.OrigID[6] = cl.OrigID[6]&0x0f | 0x40 // a version 4 UUID
	cl.OrigID[8] = cl.OrigID[8]&0x3f | 0x80
	ident, err := c.SignInput(ctx, b.AppendSigningInput(nil, &cl), nil)
	if err != nil {
		return false, err
	}
	id, err := passport.ParseIdentity(string(ident))
	if err != nil {
		return false, err // SignInput checked it
	}
	v, err := c.awaitVerdict(ctx, id.Header.X5U)
	if err != nil {
		return false, fmt.Errorf("%s: %w", id.Header.X5U, err)
	}
	if v.err != nil {
		return false, fmt.Errorf("%s: %w", id.Header.X5U, v.err)
	}
	return !v.foreign, nil
}

// verdict fetches x5u's chain and compares its SPCs with ours; it is
// stored (a failed fetch for a minute only), logged when foreign, and
// sets the gauge.
func (c *Client) verdict(x5u string) *verdict {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v := &verdict{at: time.Now()}
	var chain []*x509.Certificate
	body, err := verify.FetchX5U(ctx, *c.cfg.Fetch, x5u)
	if err == nil {
		chain, err = verify.ParseChain(body)
	}
	if err == nil {
		var l tnauth.List
		var ok bool
		if l, ok, err = tnauth.FromCertificate(chain[0]); err == nil {
			v.spcs = l.SPCs
			v.foreign = !ok || !slices.ContainsFunc(l.SPCs, func(s string) bool { return slices.Contains(c.cfg.OwnSPCs, s) })
		}
	}
	if err != nil {
		v.err = err
		v.at = time.Now().Add(time.Minute - recheck) // retried after a minute
		c.log.Warn("stias: cannot check the certificate the remote STI-AS signs with (FCC own-certificate rule)",
			"signer", c.cfg.Name, "x5u", x5u, "err", err, "own_cert", c.cfg.OwnCert)
	} else if v.foreign {
		c.log.Warn("stias: the remote STI-AS signs with a certificate whose SPC is not ours (FCC own-certificate rule: since 18 September 2025 a provider signs with its own certificate)",
			"signer", c.cfg.Name, "x5u", x5u, "spc", v.spcs, "ours", c.cfg.OwnSPCs, "own_cert", c.cfg.OwnCert)
	}
	c.mu.Lock()
	if len(c.verdicts) >= 64 {
		clear(c.verdicts)
	}
	c.verdicts[x5u] = v
	if err == nil {
		c.foreign = 0
		if v.foreign {
			c.foreign = 1
		}
		c.mForeign.Set(c.foreign)
	}
	c.mu.Unlock()
	return v
}

// excerpt is the start of an answer body for an error message.
func excerpt(b []byte) string {
	const n = 200
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = s[:n] + "..."
	}
	return fmt.Sprintf("%q", s)
}
