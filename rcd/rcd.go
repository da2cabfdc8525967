package rcd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/shakenline/shakenline/passport"
)

// Errors.
var (
	ErrConfig    = errors.New("rcd: bad rich call data")
	ErrFetch     = errors.New("rcd: linked content could not be fetched")
	ErrIntegrity = errors.New("rcd: linked content does not match its rcdi digest")
	ErrClaims    = errors.New("rcd: bad rcd claims")
)

// Limits.
const (
	MaxName   = 256 // bytes of nam and crn
	MaxLinks  = 16  // linked resources one rcd may have (rcdi entries)
	MaxJCard  = 64 << 10
	maxURLLen = 2048
)

// Fetch gets the content a URL links to. The appliance's is package
// verify's hardened client (https, no private targets, size cap,
// timeouts) with a cache.
type Fetch func(ctx context.Context, url string) ([]byte, error)

// Config is a policy rule's rcd (YAML).
type Config struct {
	Nam string `yaml:"nam"` // display name (required)
	Icn string `yaml:"icn"` // icon URL
	Jcl string `yaml:"jcl"` // jCard URL
	Jcd any    `yaml:"jcd"` // inline jCard (RFC 7095)
	Crn string `yaml:"crn"` // call reason
}

// Claims are a rule's compiled rcd claims.
type Claims struct {
	claims passport.RCDClaims
	links  []link // linked resources, in pointer order
	jcl    string
}

type link struct{ ptr, url string }

// Compile checks c and encodes its claims. The rcdi claim is written by
// Resolve; until then Claims.Passport has none.
func Compile(c Config) (*Claims, error) {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(f, a...)) }
	if err := checkText("nam", c.Nam, true); err != nil {
		return nil, err
	}
	if err := checkText("crn", c.Crn, false); err != nil {
		return nil, err
	}
	if c.Jcl != "" && c.Jcd != nil {
		return nil, bad("jcl and jcd: give one or the other (RFC 9795)")
	}
	rcd := map[string]any{"nam": c.Nam}
	out := &Claims{}
	for _, u := range []struct{ key, v string }{{"icn", c.Icn}, {"jcl", c.Jcl}} {
		if u.v == "" {
			continue
		}
		if err := checkURL(u.v); err != nil {
			return nil, bad("%s: %v", u.key, err)
		}
		rcd[u.key] = u.v
		out.links = append(out.links, link{"/" + u.key, u.v})
	}
	out.jcl = c.Jcl
	if c.Jcd != nil {
		js, err := json.Marshal(jsonable(c.Jcd))
		if err != nil {
			return nil, bad("jcd: %v", err)
		}
		var jc any
		if err := json.Unmarshal(js, &jc); err != nil {
			return nil, bad("jcd: %v", err)
		}
		if err := checkJCard(jc); err != nil {
			return nil, bad("jcd: %v", err)
		}
		rcd["jcd"] = json.RawMessage(js)
		for _, l := range jcardURIs(jc, "/jcd") {
			if err := checkURL(l.url); err != nil {
				return nil, bad("jcd %s: %v", l.ptr, err)
			}
			out.links = append(out.links, l)
		}
	}
	if len(out.links) > MaxLinks {
		return nil, bad("%d linked resources, at most %d", len(out.links), MaxLinks)
	}
	js, err := json.Marshal(rcd)
	if err != nil {
		return nil, bad("%v", err)
	}
	if out.claims.RCD, err = passport.CanonicalJSON(js); err != nil {
		return nil, bad("%v", err)
	}
	if c.Crn != "" {
		crn, _ := json.Marshal(c.Crn)
		out.claims.CRN, _ = passport.CanonicalJSON(crn)
	}
	return out, nil
}

// jsonable turns what a YAML decoder produced (map[string]any,
// map[any]any, []any, scalars) into what encoding/json takes.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonable(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = jsonable(e)
		}
		return s
	}
	return v
}

func checkText(name, s string, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("%w: %s is required", ErrConfig, name)
	case len(s) > MaxName:
		return fmt.Errorf("%w: %s longer than %d bytes", ErrConfig, name, MaxName)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not UTF-8", ErrConfig, name)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s holds a control character", ErrConfig, name)
		}
	}
	return nil
}

// checkURL accepts absolute http(s) URLs (whether http may be fetched is
// the fetch's decision: only in the lab).
func checkURL(s string) error {
	if len(s) > maxURLLen {
		return fmt.Errorf("URL longer than %d bytes", maxURLLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q is not an https URL", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' {
			return fmt.Errorf("%q holds %q", s, c)
		}
	}
	return nil
}

// checkJCard checks the jCard form of RFC 7095 section 3.2:
// ["vcard", [ [name, {params}, type, value...], ... ]].
func checkJCard(v any) error {
	a, ok := v.([]any)
	if !ok || len(a) != 2 || a[0] != "vcard" {
		return errors.New(`not a jCard: want ["vcard", [properties]]`)
	}
	props, ok := a[1].([]any)
	if !ok {
		return errors.New("jCard properties are not an array")
	}
	for i, p := range props {
		pa, ok := p.([]any)
		if !ok || len(pa) < 4 {
			return fmt.Errorf("jCard property %d: want [name, {parameters}, type, value]", i)
		}
		if _, ok := pa[0].(string); !ok {
			return fmt.Errorf("jCard property %d: name is not a string", i)
		}
		if _, ok := pa[2].(string); !ok {
			return fmt.Errorf("jCard property %d: value type is not a string", i)
		}
	}
	return nil
}

// jcardURIs lists the values of type uri with an http(s) URL in a jCard
// (photo, logo, sound, url ...), with their JSON pointers under base.
func jcardURIs(v any, base string) []link {
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return nil
	}
	props, _ := a[1].([]any)
	var out []link
	for i, p := range props {
		pa, ok := p.([]any)
		if !ok || len(pa) < 4 || pa[2] != "uri" {
			continue
		}
		for j := 3; j < len(pa); j++ {
			if s, ok := pa[j].(string); ok && (strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")) {
				out = append(out, link{base + "/1/" + strconv.Itoa(i) + "/" + strconv.Itoa(j), s})
			}
		}
	}
	return out
}

// Links lists the URLs Resolve fetches (jcl's inner ones are found when it
// is fetched), for logs.
func (c *Claims) Links() []string {
	out := make([]string, len(c.links))
	for i, l := range c.links {
		out[i] = l.url
	}
	return out
}

// HasLinks reports whether the claims link to content (then Resolve must
// run before they are signed).
func (c *Claims) HasLinks() bool { return len(c.links) > 0 }

// Resolve fetches every linked resource and writes the rcdi claim. Any
// failure is returned with the URL, and the claims are left without rcdi.
func (c *Claims) Resolve(ctx context.Context, fetch Fetch) error {
	digests := map[string]string{}
	for _, l := range c.links {
		body, err := fetch(ctx, l.url)
		if err != nil {
			return fmt.Errorf("%w: %s (%s): %w", ErrFetch, l.url, l.ptr, err)
		}
		digests[l.ptr] = Digest(body)
		if l.ptr == "/jcl" {
			var jc any
			if err := json.Unmarshal(body, &jc); err != nil {
				return fmt.Errorf("%w: %s is not JSON: %v", ErrConfig, l.url, err)
			}
			if err := checkJCard(jc); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrConfig, l.url, err)
			}
			inner := jcardURIs(jc, "/jcl")
			if len(inner)+len(c.links) > MaxLinks {
				return fmt.Errorf("%w: %s links %d resources, more than %d in all", ErrConfig, l.url, len(inner), MaxLinks)
			}
			for _, in := range inner {
				b, err := fetch(ctx, in.url)
				if err != nil {
					return fmt.Errorf("%w: %s (%s): %w", ErrFetch, in.url, in.ptr, err)
				}
				digests[in.ptr] = Digest(b)
			}
		}
	}
	if len(digests) == 0 {
		c.claims.RCDI = nil
		return nil
	}
	js, _ := json.Marshal(digests)
	rcdi, err := passport.CanonicalJSON(js)
	if err != nil {
		return err
	}
	c.claims.RCDI = rcdi
	return nil
}

// Passport returns the claims to sign (do not modify). Shared by every
// call signed with them.
func (c *Claims) Passport() *passport.RCDClaims { return &c.claims }

// Digest is the rcdi digest of content: "sha256-" and the padded standard
// base64 of its SHA-256.
func Digest(content []byte) string {
	sum := sha256.Sum256(content)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Display is what a verified rcd lets the terminating side show.
type Display struct {
	Name  string // nam
	CRN   string // the call reason
	Icon  string // icn, when its content matched its rcdi digest
	JCard string // jcl, when its content matched its rcdi digest
}

// Check checks the rcd claims of a verified PASSporT (rcdJS the rcd
// value, rcdiJS the rcdi value or empty, crn the call reason) against the
// content they link to, fetched with fetch; see the package doc for the
// rules. The Display is meaningful only without error.
func Check(ctx context.Context, rcdJS, rcdiJS []byte, crn string, fetch Fetch) (Display, error) {
	var d Display
	var root map[string]any
	dec := json.NewDecoder(bytes.NewReader(rcdJS))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil || root == nil {
		return d, fmt.Errorf("%w: rcd is not a JSON object", ErrClaims)
	}
	nam, _ := root["nam"].(string)
	if checkText("nam", nam, true) != nil || checkText("crn", crn, false) != nil {
		return d, fmt.Errorf("%w: nam missing or not displayable", ErrClaims)
	}
	d.Name, d.CRN = nam, crn
	if len(rcdiJS) == 0 {
		return d, nil
	}
	var rcdi map[string]string
	if err := json.Unmarshal(rcdiJS, &rcdi); err != nil {
		return d, fmt.Errorf("%w: rcdi is not an object of strings", ErrClaims)
	}
	if len(rcdi) > MaxLinks {
		return d, fmt.Errorf("%w: %d rcdi entries, at most %d", ErrClaims, len(rcdi), MaxLinks)
	}
	ptrs := make([]string, 0, len(rcdi))
	for p := range rcdi {
		ptrs = append(ptrs, p)
	}
	slices.Sort(ptrs) // "/jcl" before "/jcl/...": the jCard is fetched once
	var jcl any
	for _, p := range ptrs {
		toks, err := splitPointer(p)
		if err != nil || len(toks) == 0 {
			return d, fmt.Errorf("%w: rcdi key %q is not a JSON pointer", ErrClaims, p)
		}
		var target any
		if toks[0] == "jcl" && len(toks) > 1 {
			if jcl == nil {
				u, _ := root["jcl"].(string)
				if u == "" {
					return d, fmt.Errorf("%w: rcdi %q without jcl", ErrClaims, p)
				}
				body, err := fetch(ctx, u)
				if err != nil {
					return d, fmt.Errorf("%w: %s: %w", ErrFetch, u, err)
				}
				if len(body) > MaxJCard || json.Unmarshal(body, &jcl) != nil {
					return d, fmt.Errorf("%w: %s is not a jCard", ErrIntegrity, u)
				}
			}
			target = resolve(jcl, toks[1:])
		} else {
			target = resolve(root, toks)
		}
		u, ok := target.(string)
		if !ok || checkURL(u) != nil {
			return d, fmt.Errorf("%w: rcdi %q does not point to a URL", ErrClaims, p)
		}
		body, err := fetch(ctx, u)
		if err != nil {
			return d, fmt.Errorf("%w: %s: %w", ErrFetch, u, err)
		}
		if !Match(rcdi[p], body) {
			return d, fmt.Errorf("%w: %s (%s)", ErrIntegrity, u, p)
		}
		switch p {
		case "/icn":
			d.Icon = u
		case "/jcl":
			d.JCard = u
		}
	}
	return d, nil
}

// Match reports whether digest ("sha256-...", "sha384-..." or
// "sha512-...", base64 standard or URL alphabet, padded or not) is the
// digest of content.
func Match(digest string, content []byte) bool {
	alg, enc, ok := strings.Cut(digest, "-")
	if !ok {
		return false
	}
	var h hash.Hash
	switch alg {
	case "sha256":
		h = sha256.New()
	case "sha384":
		h = sha512.New384()
	case "sha512":
		h = sha512.New()
	default:
		return false
	}
	enc = strings.TrimRight(enc, "=")
	want, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil {
		if want, err = base64.RawURLEncoding.DecodeString(enc); err != nil {
			return false
		}
	}
	h.Write(content)
	return bytes.Equal(h.Sum(nil), want)
}

// splitPointer splits a JSON pointer (RFC 6901) into unescaped tokens.
func splitPointer(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, errors.New("not a pointer")
	}
	toks := strings.Split(p[1:], "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, nil
}

// resolve follows tokens into a decoded JSON value; nil when a token does
// not exist.
func resolve(v any, toks []string) any {
	for _, t := range toks {
		switch x := v.(type) {
		case map[string]any:
			v = x[t]
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(x) || strconv.Itoa(i) != t {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}
