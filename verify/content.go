package verify

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"
)

// Linked content: the icons and jCards Rich Call Data links to (RFC 9795),
// fetched with the x5u client's rules (fetch.go: https unless AllowHTTP, no
// private or loopback targets unless AllowPrivate, redirects bounded, size
// capped, timeouts) and cached in a bounded LRU: at most ContentCacheSize
// entries and ContentCacheBytes bytes, each for its Cache-Control lifetime
// (DefaultCacheTTL without one, at most MaxCacheTTL; no-store or no-cache:
// not kept); failures remembered for FailureTTL like x5u ones.

// ContentConfig configures a ContentFetcher (the signing side's fetch of
// the content a policy's rcd links to, when it loads).
type ContentConfig struct {
	AllowHTTP    bool          // http:// URLs (lab)
	AllowPrivate bool          // loopback, private and other non-public targets (lab)
	Timeout      time.Duration // one fetch; default 3s
	MaxBytes     int64         // one response body; default 512 KiB
	MaxRedirects int           // default 3 (negative: none)
}

// ContentFetcher fetches linked content with the hardened client and no
// cache: each Fetch is a GET.
type ContentFetcher struct {
	f     *fetcher
	limit int64
	to    time.Duration
}

// NewContentFetcher returns a ContentFetcher for c.
func NewContentFetcher(c ContentConfig) *ContentFetcher {
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Second
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 512 << 10
	}
	if c.MaxRedirects == 0 {
		c.MaxRedirects = 3
	}
	cfg := &Config{AllowHTTP: c.AllowHTTP, AllowPrivate: c.AllowPrivate, FetchTimeout: c.Timeout, MaxRedirects: c.MaxRedirects}
	return &ContentFetcher{f: newFetcher(cfg), limit: c.MaxBytes, to: c.Timeout}
}

// Fetch GETs url and returns its body (HTTP 200 only).
func (c *ContentFetcher) Fetch(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.to)
	defer cancel()
	body, _, err := c.f.download(ctx, url, c.limit, "*/*")
	return body, err
}

// contentCache is the Verifier's cache of linked content.
type contentCache struct {
	mu     sync.Mutex
	lru    *list.List // of *contentItem, front = most recent
	items  map[string]*list.Element
	fails  map[string]failure
	bytes  int64
	max    int
	budget int64
}

type contentItem struct {
	url     string
	body    []byte
	expires time.Time
}

func newContentCache(max int, budget int64) *contentCache {
	return &contentCache{lru: list.New(), items: map[string]*list.Element{}, fails: map[string]failure{}, max: max, budget: budget}
}

func (c *contentCache) get(u string, now time.Time) ([]byte, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[u]; ok {
		it := el.Value.(*contentItem)
		if now.Before(it.expires) {
			c.lru.MoveToFront(el)
			return it.body, nil, true
		}
		c.remove(el)
	}
	if f, ok := c.fails[u]; ok {
		if now.Before(f.until) {
			return nil, f.err, true
		}
		delete(c.fails, u)
	}
	return nil, nil, false
}

func (c *contentCache) remove(el *list.Element) {
	it := el.Value.(*contentItem)
	c.lru.Remove(el)
	delete(c.items, it.url)
	c.bytes -= int64(len(it.body))
}

func (c *contentCache) put(u string, body []byte, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.fails, u)
	if el, ok := c.items[u]; ok {
		c.remove(el)
	}
	if int64(len(body)) > c.budget {
		return
	}
	c.items[u] = c.lru.PushFront(&contentItem{url: u, body: body, expires: expires})
	c.bytes += int64(len(body))
	for c.lru.Len() > c.max || c.bytes > c.budget {
		c.remove(c.lru.Back())
	}
}

func (c *contentCache) putFailure(u string, err error, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.fails[u]; !ok && len(c.fails) >= c.max {
		return // bounded: a flood of bad URLs is not remembered
	}
	c.fails[u] = failure{err: err, until: until}
}

func (c *contentCache) len() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.bytes
}

// content returns the body url links to: cached, or fetched with the x5u
// client (concurrent fetches of one URL collapse into one).
func (v *Verifier) content(ctx context.Context, url string) ([]byte, error) {
	now := v.cfg.Now()
	if body, err, ok := v.contents.get(url, now); ok {
		if err == nil {
			mContentHits.Inc()
		}
		return body, err
	}
	mContentMisses.Inc()
	ch := v.fetcher.group.DoChan("content "+url, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.cfg.FetchTimeout)
		defer cancel()
		body, h, err := v.fetcher.download(fctx, url, v.cfg.MaxContentBytes, "*/*")
		if err != nil {
			mContentFailures.Inc()
			if v.cfg.FailureTTL > 0 {
				v.contents.putFailure(url, err, v.cfg.Now().Add(v.cfg.FailureTTL))
			}
			return nil, err
		}
		if ttl := v.fetcher.ttl(h.Values("Cache-Control")); ttl > 0 {
			v.contents.put(url, body, v.cfg.Now().Add(ttl))
		}
		return body, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrFetch, ctx.Err())
	}
}

// ContentCacheLen reports the linked-content cache's entries and bytes
// (tests, diagnostics).
func (v *Verifier) ContentCacheLen() (int, int64) { return v.contents.len() }
