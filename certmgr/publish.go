package certmgr

import (
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Publisher puts certificate chains where verifiers fetch them (the x5u
// repository). Names are file names ([A-Za-z0-9._-], no leading dot).
type Publisher interface {
	Put(name string, pemChain []byte, notAfter time.Time) error
	Remove(name string) error
}

func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
	}) {
		return fmt.Errorf("certmgr: bad repository name %q", name)
	}
	return nil
}

// DirPublisher writes chains into a directory that another web server
// serves at the publish URL (mode 0644, through a temporary file and a
// rename, so a reader never sees half a file).
type DirPublisher struct{ Dir string }

// Put implements Publisher.
func (d DirPublisher) Put(name string, pemChain []byte, _ time.Time) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return fmt.Errorf("certmgr: publish dir: %w", err)
	}
	return writeFileAtomic(filepath.Join(d.Dir, name), pemChain, 0o644)
}

// Remove implements Publisher.
func (d DirPublisher) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(d.Dir, name)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("certmgr: unpublish: %w", err)
	}
	return nil
}

// Repository is the built-in x5u repository: an http.Handler serving GET
// <Prefix><name> with Content-Type application/pem-certificate-chain and
// Cache-Control max-age up to the certificate's expiry (a name is never
// reused for other content). Everything else is 404.
type Repository struct {
	Prefix string // URL path of the publish URL, ending in "/"

	mu    sync.RWMutex
	files map[string]repoFile
}

type repoFile struct {
	body     []byte
	notAfter time.Time
}

// NewRepository serves under the path of publishURL.
func NewRepository(prefix string) *Repository {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Repository{Prefix: prefix, files: map[string]repoFile{}}
}

// Put implements Publisher.
func (r *Repository) Put(name string, pemChain []byte, notAfter time.Time) error {
	if err := checkName(name); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[name] = repoFile{body: append([]byte(nil), pemChain...), notAfter: notAfter}
	return nil
}

// Remove implements Publisher.
func (r *Repository) Remove(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.files, name)
	return nil
}

// Names lists what is published.
func (r *Repository) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.files))
	for n := range r.files {
		out = append(out, n)
	}
	return out
}

func (r *Repository) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := strings.CutPrefix(path.Clean(req.URL.Path), strings.TrimSuffix(r.Prefix, "/")+"/")
	r.mu.RLock()
	f, found := r.files[name]
	r.mu.RUnlock()
	if !ok || !found {
		http.NotFound(w, req)
		return
	}
	age := time.Until(f.notAfter)
	if age < 0 {
		age = 0
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(age.Seconds())))
	w.Header().Set("Content-Length", strconv.Itoa(len(f.body)))
	if req.Method == http.MethodGet {
		_, _ = w.Write(f.body)
	}
}

// writeFileAtomic writes b to p through p.tmp, fsync and rename.
func writeFileAtomic(p string, b []byte, perm os.FileMode) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("certmgr: %w", err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("certmgr: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("certmgr: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("certmgr: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certmgr: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("certmgr: %w", err)
	}
	return nil
}
