package verify

import (
	"container/list"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"
)

type fetcher struct {
	cfg    *Config
	client *http.Client
	group  singleflight.Group

	mu    sync.Mutex
	lru   *list.List // of *cacheItem, front = most recent
	items map[string]*list.Element
	fails map[string]failure // recent fetch failures, at most CacheSize
}

// failure is a remembered x5u fetch failure.
type failure struct {
	err   error
	until time.Time
}

type cacheItem struct {
	url string
	e   *entry
}

func newFetcher(cfg *Config) *fetcher {
	f := &fetcher{cfg: cfg, lru: list.New(), items: map[string]*list.Element{}, fails: map[string]failure{}}
	d := &net.Dialer{Timeout: cfg.FetchTimeout, Control: f.control}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would dial for us and bypass control
		DialContext:            d.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: cfg.TLSRootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.FetchTimeout,
		ResponseHeaderTimeout:  cfg.FetchTimeout,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
	}
	f.client = &http.Client{Transport: tr, Timeout: cfg.FetchTimeout, CheckRedirect: f.checkRedirect}
	return f
}

// control runs after DNS resolution, on the address actually dialled.
func (f *fetcher) control(network, address string, _ syscall.RawConn) error {
	if f.cfg.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrForbiddenTarget, address)
	}
	if !publicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenTarget, ap.Addr())
	}
	return nil
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 (could reach private v4)
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:2::/48"),   // benchmarking
	netip.MustParsePrefix("2001:db8::/32"), // documentation
	netip.MustParsePrefix("100::/64"),      // discard
	netip.MustParsePrefix("::/96"),         // IPv4-compatible (deprecated): embeds any IPv4
	netip.MustParsePrefix("2002::/16"),     // 6to4: embeds any IPv4, private ones too
	netip.MustParsePrefix("2001::/32"),     // Teredo: embeds an IPv4 server and client
}

// publicAddr reports whether a is a globally routable unicast address.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsMulticast() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// crlRequest marks a request context as a CRL download: http is allowed
// for CRLs (they are signed by their issuer, and RFC 5280 section 4.2.1.13
// distribution points are normally http), also without Config.AllowHTTP.
type crlRequest struct{}

func (f *fetcher) checkScheme(u *url.URL, crl bool) error {
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (f.cfg.AllowHTTP || crl):
	default:
		return fmt.Errorf("%w: %q", ErrScheme, u.Scheme)
	}
	if u.Host == "" || u.User != nil {
		return fmt.Errorf("%w: bad host in %q", ErrScheme, u.Redacted())
	}
	return nil
}

func (f *fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > f.cfg.MaxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrRedirect, max(f.cfg.MaxRedirects, 0))
	}
	if req.URL.Scheme != via[0].URL.Scheme {
		return fmt.Errorf("%w: %s to %s", ErrRedirect, via[0].URL.Scheme, req.URL.Scheme)
	}
	return f.checkScheme(req.URL, req.Context().Value(crlRequest{}) != nil)
}

// certs returns the parsed chain for x5u: static, cached or fetched.
func (v *Verifier) certs(ctx context.Context, x5u string) (*entry, error) {
	if e, ok := v.static[x5u]; ok {
		return e, nil
	}
	f := v.fetcher
	now := v.cfg.Now()
	if e := f.get(x5u, now); e != nil {
		v.stats.hits.Add(1)
		mX5UHits.Inc()
		return e, nil
	}
	if err := f.failed(x5u, now); err != nil {
		v.stats.failureHits.Add(1)
		mX5UFailureHits.Inc()
		return nil, err
	}
	v.stats.misses.Add(1)
	mX5UMisses.Inc()
	u, err := url.Parse(x5u)
	if err != nil {
		v.fetchFailed()
		return nil, fmt.Errorf("%w: %w", ErrScheme, err)
	}
	if err := f.checkScheme(u, false); err != nil {
		v.fetchFailed()
		return nil, err
	}
	ch := f.group.DoChan(x5u, func() (any, error) {
		// Not tied to one caller: others may be waiting on this fetch.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.cfg.FetchTimeout)
		defer cancel()
		chain, ttl, err := f.fetch(fctx, x5u)
		if err != nil {
			v.fetchFailed()
			f.putFailure(x5u, err, v.cfg.Now())
			return nil, err
		}
		var exp time.Time
		if ttl > 0 {
			exp = v.cfg.Now().Add(ttl)
		}
		e, err := newEntry(chain, exp)
		if err != nil {
			v.fetchFailed()
			f.putFailure(x5u, err, v.cfg.Now())
			return nil, err
		}
		// A failure remembered meanwhile (by a fetch this caller did not
		// wait for) is older than this answer.
		f.clearFailure(x5u)
		if ttl > 0 {
			f.put(x5u, e)
			v.queuePersist(x5u, e)
		}
		return e, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*entry), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrFetch, ctx.Err())
	}
}

func (v *Verifier) fetchFailed() {
	v.stats.fetchFailures.Add(1)
	mX5UFetchFailures.Inc()
}

func (f *fetcher) get(u string, now time.Time) *entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	el, ok := f.items[u]
	if !ok {
		return nil
	}
	it := el.Value.(*cacheItem)
	if !now.Before(it.e.expires) {
		f.lru.Remove(el)
		delete(f.items, u)
		return nil
	}
	f.lru.MoveToFront(el)
	return it.e
}

func (f *fetcher) put(u string, e *entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if el, ok := f.items[u]; ok {
		el.Value.(*cacheItem).e = e
		f.lru.MoveToFront(el)
		return
	}
	f.items[u] = f.lru.PushFront(&cacheItem{url: u, e: e})
	for f.lru.Len() > f.cfg.CacheSize {
		old := f.lru.Back()
		f.lru.Remove(old)
		delete(f.items, old.Value.(*cacheItem).url)
	}
}

// failed returns the remembered error of a fetch of u that failed less
// than FailureTTL before now, or nil.
func (f *fetcher) failed(u string, now time.Time) error {
	if f.cfg.FailureTTL < 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.fails[u]
	if !ok {
		return nil
	}
	if !now.Before(fl.until) {
		delete(f.fails, u)
		return nil
	}
	return fl.err
}

// putFailure remembers err for u until now+FailureTTL. The set is bounded
// by CacheSize: when full, expired entries are dropped, and if it is still
// full the failure is not remembered (a flood of distinct bad URLs then
// costs each call its own fetch, as without this set, and no memory).
func (f *fetcher) putFailure(u string, err error, now time.Time) {
	if f.cfg.FailureTTL < 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fails[u]; !ok && len(f.fails) >= f.cfg.CacheSize {
		for k, fl := range f.fails {
			if !now.Before(fl.until) {
				delete(f.fails, k)
			}
		}
		if len(f.fails) >= f.cfg.CacheSize {
			return
		}
	}
	f.fails[u] = failure{err: err, until: now.Add(f.cfg.FailureTTL)}
}

// clearFailure forgets a remembered failure of u.
func (f *fetcher) clearFailure(u string) {
	f.mu.Lock()
	delete(f.fails, u)
	f.mu.Unlock()
}

// cacheLen is for tests.
func (f *fetcher) cacheLen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lru.Len()
}

func (f *fetcher) fetch(ctx context.Context, x5u string) ([]*x509.Certificate, time.Duration, error) {
	body, h, err := f.download(ctx, x5u, f.cfg.MaxCertBytes, "application/pem-certificate-chain, application/pkix-cert;q=0.5")
	if err != nil {
		return nil, 0, err
	}
	chain, err := ParseChain(body)
	if err != nil {
		return nil, 0, err
	}
	return chain, f.ttl(h.Values("Cache-Control")), nil
}

// download GETs rawURL through the hardened client and returns at most
// limit bytes of a 200 response. Scheme rules: checkScheme; a context
// carrying crlRequest allows http.
func (f *fetcher) download(ctx context.Context, rawURL string, limit int64, accept string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	if err := f.checkScheme(req.URL, ctx.Value(crlRequest{}) != nil); err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w: HTTP %d", ErrFetch, resp.StatusCode)
	}
	if resp.ContentLength > limit {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, resp.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	if int64(len(body)) > limit {
		return nil, nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	return body, resp.Header, nil
}

// ttl applies RFC 9111 max-age / no-store / no-cache to the configured
// default and cap.
func (f *fetcher) ttl(cc []string) time.Duration {
	ttl := f.cfg.DefaultCacheTTL
	for _, h := range cc {
		for _, d := range strings.Split(h, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err != nil || n < 0 {
					return 0
				}
				if n > int64(f.cfg.MaxCacheTTL/time.Second) {
					return f.cfg.MaxCacheTTL
				}
				ttl = time.Duration(n) * time.Second
			}
		}
	}
	return ttl
}

// ParseChain decodes a certificate chain, leaf first: PEM CERTIFICATE blocks
// (application/pem-certificate-chain, RFC 8555 section 9.1) or DER.
func ParseChain(b []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadCert, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		certs, err := x509.ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("%w: neither PEM nor DER: %w", ErrBadCert, err)
		}
		chain = certs
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrBadCert)
	}
	return chain, nil
}
