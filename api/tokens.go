package api

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

// MinTokenLen is the shortest bearer token a token file may hold.
const MinTokenLen = 16

// TokenSet is the set of bearer tokens the API accepts. It keeps only the
// SHA-256 of each token and compares in constant time. Reload re-reads the
// file and swaps the set atomically; a bad file leaves the running set.
// Safe for concurrent use.
type TokenSet struct {
	path string
	cur  atomic.Pointer[[][32]byte]
}

// LoadTokens reads a token file: one token per line, blank lines and lines
// starting with '#' ignored, surrounding whitespace trimmed. Every token must
// be at least MinTokenLen bytes without inner whitespace, and the file must
// hold at least one.
func LoadTokens(path string) (*TokenSet, error) {
	ts := &TokenSet{path: path}
	if err := ts.Reload(); err != nil {
		return nil, err
	}
	return ts, nil
}

// NewTokens makes a TokenSet from literal tokens (tests, lab). Its Reload is
// a no-op.
func NewTokens(tokens ...string) (*TokenSet, error) {
	set, err := parseTokens([]byte(strings.Join(tokens, "\n")), "literal")
	if err != nil {
		return nil, err
	}
	ts := &TokenSet{}
	ts.cur.Store(&set)
	return ts, nil
}

// Reload re-reads the token file. On error the running set stays.
func (ts *TokenSet) Reload() error {
	set, err := ts.read()
	if err != nil {
		return err
	}
	if set != nil {
		ts.cur.Store(&set)
	}
	return nil
}

// read parses the file without installing it (nil, nil for a literal set).
func (ts *TokenSet) read() ([][32]byte, error) {
	if ts.path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(ts.path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenFile, err)
	}
	return parseTokens(b, ts.path)
}

func (ts *TokenSet) install(set [][32]byte) {
	if set != nil {
		ts.cur.Store(&set)
	}
}

func parseTokens(b []byte, name string) ([][32]byte, error) {
	var set [][32]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if len(line) < MinTokenLen {
			return nil, fmt.Errorf("%w: %s line %d: token shorter than %d bytes", ErrTokenFile, name, n, MinTokenLen)
		}
		if bytes.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("%w: %s line %d: whitespace inside a token", ErrTokenFile, name, n)
		}
		set = append(set, sha256.Sum256(line))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrTokenFile, name, err)
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("%w: %s holds no token", ErrTokenFile, name)
	}
	return set, nil
}

// Valid reports whether tok is one of the tokens. The time it takes does not
// depend on which token matched or on how much of tok is right.
func (ts *TokenSet) Valid(tok string) bool {
	if ts == nil || tok == "" {
		return false
	}
	h := sha256.Sum256([]byte(tok))
	ok := 0
	for _, t := range *ts.cur.Load() {
		ok |= subtle.ConstantTimeCompare(h[:], t[:])
	}
	return ok == 1
}

// Len is the number of tokens in the running set.
func (ts *TokenSet) Len() int { return len(*ts.cur.Load()) }

// Path is the token file, "" for a literal set.
func (ts *TokenSet) Path() string { return ts.path }
