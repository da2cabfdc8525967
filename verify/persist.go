package verify

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Cache files: CacheDir/<first 32 hex digits of SHA-256(url)>.pem holding a
// "SHAKENLINE X5U CACHE" PEM block whose headers carry the URL and the
// expiry (RFC 3339), then the chain as CERTIFICATE blocks, leaf first.
// Files are written to a temporary name, synced and renamed, so a crash
// leaves the old file or the new one. A loaded chain is trusted no more
// than a fetched one: it is verified against the current trust stores and
// CRLs before use, so editing the directory cannot add trust.
const (
	cacheBlockType = "SHAKENLINE X5U CACHE"
	cacheSuffix    = ".pem"
	persistQueue   = 256
	maxCacheFile   = 64 << 10
	maxPreloadURLs = 100000
	preloadWorkers = 4
)

type persistJob struct {
	url string
	e   *entry
}

func cacheFileName(u string) string {
	h := sha256.Sum256([]byte(u))
	return hex.EncodeToString(h[:16]) + cacheSuffix
}

func encodeCacheFile(u string, e *entry) []byte {
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: cacheBlockType, Headers: map[string]string{
		"URL": u, "Expires": e.expires.UTC().Format(time.RFC3339Nano),
	}})
	for _, c := range e.chain {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// decodeCacheFile parses a cache file into its URL, expiry and chain.
func decodeCacheFile(b []byte) (string, time.Time, []*x509.Certificate, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != cacheBlockType {
		return "", time.Time{}, nil, fmt.Errorf("%w: no %s block", ErrCacheFile, cacheBlockType)
	}
	u := blk.Headers["URL"]
	if pu, err := url.Parse(u); err != nil || pu.Host == "" {
		return "", time.Time{}, nil, fmt.Errorf("%w: bad URL %q", ErrCacheFile, u)
	}
	exp, err := time.Parse(time.RFC3339Nano, blk.Headers["Expires"])
	if err != nil {
		return "", time.Time{}, nil, fmt.Errorf("%w: %w", ErrCacheFile, err)
	}
	chain, err := ParseChain(rest)
	if err != nil {
		return "", time.Time{}, nil, fmt.Errorf("%w: %w", ErrCacheFile, err)
	}
	return u, exp, chain, nil
}

// loadCache creates CacheDir if needed and loads the unexpired chains,
// latest expiry first, up to CacheSize. Expired files are removed;
// unreadable ones are skipped and counted.
func (v *Verifier) loadCache() error {
	dir := v.cfg.CacheDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("verify: cache dir: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*"+cacheSuffix))
	if err != nil {
		return fmt.Errorf("verify: cache dir: %w", err)
	}
	type loaded struct {
		url string
		e   *entry
	}
	var ok []loaded
	now := v.cfg.Now()
	for _, name := range names {
		b, err := readLimited(name, maxCacheFile)
		if err != nil {
			v.stats.loadFailures.Add(1)
			continue
		}
		u, exp, chain, err := decodeCacheFile(b)
		if err != nil || filepath.Base(name) != cacheFileName(u) {
			v.stats.loadFailures.Add(1)
			continue
		}
		if !now.Before(exp) {
			os.Remove(name)
			continue
		}
		e, err := newEntry(chain, exp)
		if err != nil {
			v.stats.loadFailures.Add(1)
			continue
		}
		ok = append(ok, loaded{u, e})
	}
	slices.SortFunc(ok, func(a, b loaded) int { return a.e.expires.Compare(b.e.expires) })
	if len(ok) > v.cfg.CacheSize {
		ok = ok[len(ok)-v.cfg.CacheSize:]
	}
	for _, l := range ok { // put latest last: it ends up most recently used
		v.fetcher.put(l.url, l.e)
	}
	v.stats.loaded.Add(uint64(len(ok)))
	mX5ULoaded.Add(len(ok))
	return nil
}

func readLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s over %d bytes", ErrCacheFile, name, limit)
	}
	return b, nil
}

// queuePersist hands a fetched chain to the writer without blocking; when
// the queue is full the chain is not persisted (counted).
func (v *Verifier) queuePersist(u string, e *entry) {
	if v.persistCh == nil {
		return
	}
	select {
	case v.persistCh <- persistJob{u, e}:
	default:
		v.stats.persistFailures.Add(1)
		mX5UPersistFailures.Inc()
	}
}

// persistLoop writes queued chains until Close, then writes what is
// still queued.
func (v *Verifier) persistLoop() {
	defer v.wg.Done()
	for {
		select {
		case j := <-v.persistCh:
			v.persist(j)
		case <-v.ctx.Done():
			for {
				select {
				case j := <-v.persistCh:
					v.persist(j)
				default:
					return
				}
			}
		}
	}
}

func (v *Verifier) persist(j persistJob) {
	if err := writeAtomic(filepath.Join(v.cfg.CacheDir, cacheFileName(j.url)), encodeCacheFile(j.url, j.e)); err != nil {
		v.stats.persistFailures.Add(1)
		mX5UPersistFailures.Inc()
		return
	}
	v.stats.persisted.Add(1)
	mX5UPersisted.Inc()
}

func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// ParsePreload reads an x5u preload list: one absolute http or https URL
// per line; blank lines and lines starting with '#' are skipped;
// surrounding whitespace is trimmed. The scheme is written in lower case,
// its canonical form (RFC 3986 section 6.2.2.1), so that "HTTPS://a/x" and
// "https://a/x" are one URL; duplicates are dropped. A malformed line is an
// error naming its number.
func ParsePreload(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 8192)
	seen := map[string]bool{}
	var out []string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		u, err := url.Parse(line)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			strings.ContainsFunc(line, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("%w: line %d: not an http(s) URL", ErrPreload, n)
		}
		line = u.Scheme + line[len(u.Scheme):] // url.Parse lower-cases the scheme
		if seen[line] {
			continue
		}
		if len(out) == maxPreloadURLs {
			return nil, fmt.Errorf("%w: more than %d URLs", ErrPreload, maxPreloadURLs)
		}
		seen[line] = true
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPreload, err)
	}
	return out, nil
}

func readPreload(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPreload, err)
	}
	defer f.Close()
	return ParsePreload(f)
}

// preload fetches urls with a few workers; a URL already cached (loaded
// from CacheDir) is not fetched again. Failures are counted as fetch
// failures and otherwise ignored.
func (v *Verifier) preload(urls []string) {
	defer v.wg.Done()
	defer close(v.preloadDone)
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(preloadWorkers, len(urls)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				if _, err := v.certs(v.ctx, u); err == nil {
					v.stats.preloaded.Add(1)
				}
			}
		}()
	}
	for _, u := range urls {
		select {
		case work <- u:
		case <-v.ctx.Done():
		}
		if v.ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
}

// PreloadDone is closed when the Config.PreloadFile fetches have finished
// (at once without a preload file).
func (v *Verifier) PreloadDone() <-chan struct{} { return v.preloadDone }
