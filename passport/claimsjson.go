package passport

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The PASSporT header and payload JSON (RFC 8259) are read by a small
// strict parser instead of encoding/json: it reads the claims
// ProtectedHeader and Payload hold in one pass over the decoded bytes,
// validates everything else and skips it, and allocates only for the
// strings it returns (one string for the whole object, substrings for the
// values; a new string only for a value with escapes) and the dest arrays.
//
// Rules, compared with decoding into the same structs with json.Unmarshal
// (FuzzClaimsJSON checks them):
//
//   - The top level must be one object, with only whitespace around it
//     (encoding/json would also take null; the old Decoder-based code also
//     took trailing ']' or '}').
//   - A claim this package reads may appear once: a second member whose
//     name matches an earlier one (exactly or, as encoding/json matches
//     names, case-insensitively) is ErrBadJSON (RFC 7515 section 4 lets
//     JWS parsers reject duplicates; encoding/json would keep the last).
//     Names this package does not read are skipped, duplicates included.
//   - Otherwise the result equals json.Unmarshal's: the same syntax errors,
//     the same type errors (a claim of the wrong JSON type, iat that is
//     not an int64), null leaving a field as it is, RawMessage claims (div,
//     rcd, rcdi) holding the value's exact bytes.
//   - Inputs where matching encoding/json exactly would need its corner
//     cases are handed to encoding/json after the strict syntax check: a
//     member name that matches a claim only case-insensitively, and string
//     values with invalid UTF-8 or a lone UTF-16 surrogate escape.

var (
	errNotObject = errors.New("top level is not an object")
	errDuplicate = errors.New("duplicate member")
)

// maxJSONDepth bounds nesting like encoding/json does.
const maxJSONDepth = 10000

type jsonScan struct {
	s        string // the whole JSON text
	i        int
	fallback bool // an unusual input: decode with encoding/json after the scan
}

func (d *jsonScan) errf(format string, a ...any) error {
	return fmt.Errorf("%w: offset %d: "+format, append([]any{ErrBadJSON, d.i}, a...)...)
}

func (d *jsonScan) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (d *jsonScan) peek() byte {
	d.ws()
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

func (d *jsonScan) expect(c byte) error {
	if d.peek() != c {
		if d.i >= len(d.s) {
			return d.errf("unexpected end, want %q", c)
		}
		return d.errf("unexpected %q, want %q", d.s[d.i], c)
	}
	d.i++
	return nil
}

// str reads a string and returns its value. Without escapes the value is
// a substring of the input (no allocation). With fallback set the value
// is not exact (invalid UTF-8, a lone surrogate) and only the syntax was
// checked.
func (d *jsonScan) str() (string, error) {
	if err := d.expect('"'); err != nil {
		return "", err
	}
	start := d.i
	ascii := true
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			v := d.s[start:d.i]
			d.i++
			if !ascii && !utf8.ValidString(v) {
				d.fallback = true
			}
			return v, nil
		case c == '\\':
			return d.strEscaped(start)
		case c < 0x20:
			return "", d.errf("control character in string")
		case c >= 0x80:
			ascii = false
		}
		d.i++
	}
	return "", d.errf("unterminated string")
}

// strEscaped finishes a string that has escapes, from the opening quote's
// successor start, building the unescaped value.
func (d *jsonScan) strEscaped(start int) (string, error) {
	var b strings.Builder
	b.WriteString(d.s[start:d.i])
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			v := b.String()
			if !utf8.ValidString(v) {
				d.fallback = true
			}
			return v, nil
		case c < 0x20:
			return "", d.errf("control character in string")
		case c != '\\':
			b.WriteByte(c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.s) {
			return "", d.errf("unterminated string")
		}
		e := d.s[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", d.errf("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if d.i+1 < len(d.s) && d.s[d.i] == '\\' && d.s[d.i+1] == 'u' {
					d.i += 2
					if r2, ok = d.hex4(); !ok {
						return "", d.errf("bad \\u escape")
					}
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					d.fallback = true // lone surrogate: encoding/json's replacement rules
				}
			}
			b.WriteRune(r)
		default:
			return "", d.errf("bad escape \\%c", e)
		}
	}
	return "", d.errf("unterminated string")
}

func (d *jsonScan) hex4() (rune, bool) {
	if d.i+4 > len(d.s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(d.s[d.i : d.i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.i += 4
	return r, true
}

// number reads a JSON number and returns its text.
func (d *jsonScan) number() (string, error) {
	d.ws()
	start := d.i
	if d.i < len(d.s) && d.s[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.s) && d.s[d.i] == '0':
		d.i++
	case d.i < len(d.s) && '1' <= d.s[d.i] && d.s[d.i] <= '9':
		d.digits()
	default:
		return "", d.errf("bad number")
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return "", d.errf("bad number")
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return "", d.errf("bad number")
		}
	}
	return d.s[start:d.i], nil
}

func (d *jsonScan) digits() int {
	n := 0
	for d.i < len(d.s) && '0' <= d.s[d.i] && d.s[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

// literal reads true, false or null.
func (d *jsonScan) literal(lit string) error {
	if !strings.HasPrefix(d.s[d.i:], lit) {
		return d.errf("bad literal")
	}
	d.i += len(lit)
	return nil
}

// skip reads and validates any value.
func (d *jsonScan) skip(depth int) error {
	if depth > maxJSONDepth {
		return d.errf("nesting too deep")
	}
	switch c := d.peek(); c {
	case '{':
		d.i++
		if d.peek() == '}' {
			d.i++
			return nil
		}
		for {
			if _, err := d.str(); err != nil {
				return err
			}
			if err := d.expect(':'); err != nil {
				return err
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			if d.peek() == ',' {
				d.i++
				continue
			}
			return d.expect('}')
		}
	case '[':
		d.i++
		if d.peek() == ']' {
			d.i++
			return nil
		}
		for {
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			if d.peek() == ',' {
				d.i++
				continue
			}
			return d.expect(']')
		}
	case '"':
		_, err := d.str()
		return err
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	case 0:
		return d.errf("unexpected end")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			_, err := d.number()
			return err
		}
		return d.errf("unexpected %q", c)
	}
}

// typeErr is a value of the wrong JSON type for a claim (json.Unmarshal's
// UnmarshalTypeError). Either way the input is refused, so the rest is not
// scanned.
func (d *jsonScan) typeErr(name string) error {
	return fmt.Errorf("%w: offset %d: wrong JSON type for %q", ErrBadJSON, d.i, name)
}

// isNull consumes a null literal if one comes next.
func (d *jsonScan) isNull() (bool, error) {
	if d.peek() != 'n' {
		return false, nil
	}
	return true, d.literal("null")
}

// strField reads a string claim into *dst (null leaves it).
func (d *jsonScan) strField(dst *string, depth int, name string) error {
	if null, err := d.isNull(); null || err != nil {
		return err
	}
	if d.peek() != '"' {
		return d.typeErr(name)
	}
	v, err := d.str()
	if err == nil {
		*dst = v
	}
	return err
}

// strArray reads an array of strings into *dst (null sets nil; a null
// element is "").
func (d *jsonScan) strArray(dst *[]string, depth int, name string) error {
	if null, err := d.isNull(); null || err != nil {
		*dst = nil
		return err
	}
	if d.peek() != '[' {
		return d.typeErr(name)
	}
	d.i++
	out := make([]string, 0, 2)
	if d.peek() == ']' {
		d.i++
		*dst = out
		return nil
	}
	for {
		var v string
		if err := d.strField(&v, depth+1, name); err != nil {
			return err
		}
		out = append(out, v)
		if d.peek() == ',' {
			d.i++
			continue
		}
		if err := d.expect(']'); err != nil {
			return err
		}
		*dst = out
		return nil
	}
}

// Objects the parser reads members of.
const (
	objHeader  = iota // ProtectedHeader
	objPayload        // Payload
	objOrig           // Payload.Orig
	objDest           // Payload.Dest
)

var objFields = [...][]string{
	objHeader:  {"alg", "ppt", "typ", "x5u"},
	objPayload: {"attest", "dest", "iat", "orig", "origid", "div", "rcd", "rcdi", "crn"},
	objOrig:    {"tn", "uri"},
	objDest:    {"tn", "uri"},
}

var (
	headerFields  = objFields[objHeader]
	payloadFields = objFields[objPayload]
	tnURIFields   = objFields[objOrig]
)

// claimsDst is where the parser stores what it reads.
type claimsDst struct {
	h *ProtectedHeader
	p *Payload
}

// object reads an object of kind obj (objHeader...) at nesting depth:
// members it reads go to dst (each at most once), the others are skipped.
func (d *jsonScan) object(dst *claimsDst, obj, depth int, name string) error {
	if depth > maxJSONDepth {
		return d.errf("nesting too deep")
	}
	if depth == 0 && d.peek() != '{' {
		if err := d.skip(depth); err != nil {
			return err
		}
		return fmt.Errorf("%w: %w", ErrBadJSON, errNotObject)
	}
	if null, err := d.isNull(); null || err != nil {
		return err
	}
	if d.peek() != '{' {
		return d.typeErr(name)
	}
	d.i++
	if d.peek() == '}' {
		d.i++
		return nil
	}
	var seen uint32
	for {
		key, err := d.str()
		if err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		names := objFields[obj]
		idx := -1
		for j, n := range names {
			if key == n {
				idx = j
				break
			}
		}
		if idx < 0 && len(key) <= 32 {
			for j, n := range names {
				if strings.EqualFold(key, n) { // encoding/json matches names case-insensitively
					idx = j
					d.fallback = true
					break
				}
			}
		}
		if idx >= 0 {
			if seen&(1<<idx) != 0 {
				return fmt.Errorf("%w: %w %q", ErrBadJSON, errDuplicate, names[idx])
			}
			seen |= 1 << idx
			if err := d.member(dst, obj, names[idx], depth+1); err != nil {
				return err
			}
		} else if err := d.skip(depth + 1); err != nil {
			return err
		}
		if d.peek() == ',' {
			d.i++
			continue
		}
		return d.expect('}')
	}
}

// end checks that only whitespace follows the top-level value.
func (d *jsonScan) end() error {
	if d.ws(); d.i < len(d.s) {
		return d.errf("data after the object")
	}
	return nil
}

// member reads the value of the member name of object obj into dst.
func (d *jsonScan) member(dst *claimsDst, obj int, name string, depth int) error {
	h, p := dst.h, dst.p
	switch obj {
	case objHeader:
		switch name {
		case "alg":
			return d.strField(&h.Alg, depth, name)
		case "ppt":
			return d.strField(&h.PPT, depth, name)
		case "typ":
			return d.strField(&h.Typ, depth, name)
		default:
			return d.strField(&h.X5U, depth, name)
		}
	case objOrig:
		if name == "tn" {
			return d.strField(&p.Orig.TN, depth, name)
		}
		return d.strField(&p.Orig.URI, depth, name)
	case objDest:
		if name == "tn" {
			return d.strArray(&p.Dest.TN, depth, name)
		}
		return d.strArray(&p.Dest.URI, depth, name)
	}
	switch name {
	case "attest":
		return d.strField(&p.Attest, depth, name)
	case "origid":
		return d.strField(&p.OrigID, depth, name)
	case "crn":
		return d.strField(&p.CRN, depth, name)
	case "orig":
		return d.object(dst, objOrig, depth, name)
	case "dest":
		return d.object(dst, objDest, depth, name)
	case "iat":
		if null, err := d.isNull(); null || err != nil {
			return err
		}
		if c := d.peek(); c != '-' && (c < '0' || c > '9') {
			return d.typeErr(name)
		}
		num, err := d.number()
		if err != nil {
			return err
		}
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return d.typeErr(name)
		}
		p.IAT = v
		return nil
	}
	// div, rcd, rcdi: the value's exact text.
	d.ws()
	start := d.i
	if err := d.skip(depth); err != nil {
		return err
	}
	raw := json.RawMessage(d.s[start:d.i])
	switch name {
	case "div":
		p.Div = raw
	case "rcd":
		p.RCD = raw
	default:
		p.RCDI = raw
	}
	return nil
}

// parseHeaderJSON reads the protected header JSON js into h (see the
// rules above).
func parseHeaderJSON(js string, h *ProtectedHeader) error {
	d := jsonScan{s: js}
	if err := d.object(&claimsDst{h: h}, objHeader, 0, ""); err != nil {
		return err
	}
	if err := d.end(); err != nil {
		return err
	}
	if d.fallback {
		*h = ProtectedHeader{}
		return unmarshalFallback(js, h)
	}
	return nil
}

// parsePayloadJSON reads the claims JSON js into p (see the rules above).
func parsePayloadJSON(js string, p *Payload) error {
	d := jsonScan{s: js}
	if err := d.object(&claimsDst{p: p}, objPayload, 0, ""); err != nil {
		return err
	}
	if err := d.end(); err != nil {
		return err
	}
	if d.fallback {
		*p = Payload{}
		return unmarshalFallback(js, p)
	}
	return nil
}

// unmarshalFallback decodes a syntactically checked, duplicate-free object
// with encoding/json (see the rules above for when).
func unmarshalFallback(js string, v any) error {
	if err := json.Unmarshal([]byte(js), v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadJSON, err)
	}
	return nil
}
