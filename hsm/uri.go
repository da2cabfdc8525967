package hsm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// URI errors.
var (
	ErrURI      = errors.New("hsm: bad pkcs11 URI")
	ErrPINValue = errors.New("hsm: pin-value in a pkcs11 URI is refused; use pin-source=file:...")
	ErrNoPIN    = errors.New("hsm: pkcs11 URI has no pin-source")
)

// URI is a parsed RFC 7512 "pkcs11:" URI selecting one private key.
// Empty fields match anything. The PIN itself is never held here: PINSource
// names the file it is read from at open time.
type URI struct {
	// Token selectors (CK_TOKEN_INFO), RFC 7512 section 2.3.
	Token        string // token=
	Manufacturer string // manufacturer=
	Model        string // model=
	Serial       string // serial=
	// Slot selectors.
	SlotID          uint // slot-id=
	HasSlotID       bool
	SlotDescription string // slot-description=
	// Object selectors.
	Object string // object= (CKA_LABEL)
	ID     []byte // id= (CKA_ID, pct-encoded bytes)
	Type   string // type=; only "private" (or empty) is meaningful here

	// Query attributes, RFC 7512 section 2.4.
	ModulePath string // module-path=: the module file
	ModuleName string // module-name=: joined to ModulePath when that is a directory
	PINSource  string // pin-source=: a file path (the "file:" prefix removed)
}

// ParseURI parses an RFC 7512 pkcs11: URI. Attributes are pct-decoded;
// a path attribute given twice, an unknown standard attribute or pin-value
// (a PIN on the command line) is an error. Vendor attributes ("x-...") are
// ignored.
func ParseURI(s string) (URI, error) {
	var u URI
	rest, ok := cutPrefixFold(s, "pkcs11:")
	if !ok {
		return u, fmt.Errorf("%w: missing pkcs11: scheme", ErrURI)
	}
	path, query, _ := strings.Cut(rest, "?")
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return u, fmt.Errorf("%w: path attribute %q without value", ErrURI, name)
			}
			if seen[name] {
				return u, fmt.Errorf("%w: path attribute %q repeated", ErrURI, name)
			}
			seen[name] = true
			v, err := pctDecode(raw)
			if err != nil {
				return u, fmt.Errorf("%w: attribute %q: %w", ErrURI, name, err)
			}
			switch name {
			case "token":
				u.Token = string(v)
			case "manufacturer":
				u.Manufacturer = string(v)
			case "model":
				u.Model = string(v)
			case "serial":
				u.Serial = string(v)
			case "slot-id":
				n, err := strconv.ParseUint(string(v), 10, 32)
				if err != nil {
					return u, fmt.Errorf("%w: slot-id %q", ErrURI, v)
				}
				u.SlotID, u.HasSlotID = uint(n), true
			case "slot-description":
				u.SlotDescription = string(v)
			case "object":
				u.Object = string(v)
			case "id":
				u.ID = v
			case "type":
				switch string(v) {
				case "private", "public", "cert", "secret-key", "data":
				default:
					return u, fmt.Errorf("%w: type %q", ErrURI, v)
				}
				u.Type = string(v)
			case "library-manufacturer", "library-description", "library-version", "slot-manufacturer":
				// Accepted, not used for selection.
			default:
				if !strings.HasPrefix(name, "x-") {
					return u, fmt.Errorf("%w: unknown attribute %q", ErrURI, name)
				}
			}
		}
	}
	if query != "" {
		for _, attr := range strings.Split(query, "&") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return u, fmt.Errorf("%w: query attribute %q without value", ErrURI, name)
			}
			v, err := pctDecode(raw)
			if err != nil {
				return u, fmt.Errorf("%w: attribute %q: %w", ErrURI, name, err)
			}
			switch name {
			case "pin-value":
				return u, ErrPINValue
			case "pin-source":
				src := string(v)
				if rest, ok := cutPrefixFold(src, "file:"); ok {
					src = rest
					// file:///path form.
					if strings.HasPrefix(src, "//") {
						src = src[2:]
					}
				}
				if src == "" || strings.HasPrefix(src, "|") {
					return u, fmt.Errorf("%w: pin-source must name a file", ErrURI)
				}
				u.PINSource = src
			case "module-path":
				u.ModulePath = string(v)
			case "module-name":
				u.ModuleName = string(v)
			default:
				if !strings.HasPrefix(name, "x-") {
					return u, fmt.Errorf("%w: unknown query attribute %q", ErrURI, name)
				}
			}
		}
	}
	if u.Type != "" && u.Type != "private" {
		return u, fmt.Errorf("%w: type=%s does not select a private key", ErrURI, u.Type)
	}
	return u, nil
}

// Module returns the module file to load: ModulePath, or ModuleName inside
// the directory ModulePath.
func (u URI) Module() (string, error) {
	if u.ModulePath == "" {
		return "", fmt.Errorf("%w: module-path missing", ErrURI)
	}
	if u.ModuleName != "" {
		if fi, err := os.Stat(u.ModulePath); err == nil && fi.IsDir() {
			return strings.TrimSuffix(u.ModulePath, "/") + "/" + u.ModuleName + ".so", nil
		}
	}
	return u.ModulePath, nil
}

// PIN reads the PIN from PINSource, dropping one trailing newline (LF or
// CRLF). The value must never be logged.
func (u URI) PIN() (string, error) {
	if u.PINSource == "" {
		return "", ErrNoPIN
	}
	b, err := os.ReadFile(u.PINSource)
	if err != nil {
		return "", fmt.Errorf("hsm: reading pin-source: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	return string(b), nil
}

// String renders the URI (the PIN file's name, never its contents), safe to
// log.
func (u URI) String() string {
	var path, query []string
	add := func(dst *[]string, k, v string) {
		if v != "" {
			*dst = append(*dst, k+"="+pctEncode([]byte(v)))
		}
	}
	add(&path, "token", u.Token)
	add(&path, "manufacturer", u.Manufacturer)
	add(&path, "model", u.Model)
	add(&path, "serial", u.Serial)
	if u.HasSlotID {
		add(&path, "slot-id", strconv.FormatUint(uint64(u.SlotID), 10))
	}
	add(&path, "slot-description", u.SlotDescription)
	add(&path, "object", u.Object)
	add(&path, "id", string(u.ID))
	add(&path, "type", u.Type)
	add(&query, "module-path", u.ModulePath)
	add(&query, "module-name", u.ModuleName)
	if u.PINSource != "" {
		scheme := "file:"
		if strings.HasPrefix(u.PINSource, "//") {
			// ParseURI reads file://x as the file:///path form and drops
			// the "//": a path that itself starts with "//" needs it twice.
			scheme = "file://"
		}
		query = append(query, "pin-source="+scheme+pctEncode([]byte(u.PINSource)))
	}
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

func pctDecode(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			out = append(out, c)
			continue
		}
		if i+2 >= len(s) {
			return nil, errors.New("truncated %-escape")
		}
		h, ok1 := unhex(s[i+1])
		l, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return nil, errors.New("bad %-escape")
		}
		out = append(out, h<<4|l)
		i += 2
	}
	return out, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// pctEncode escapes everything outside RFC 3986 unreserved characters, '/'
// and ':' (allowed in pchar).
func pctEncode(v []byte) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	for _, c := range v {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '/' || c == ':' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	return b.String()
}
