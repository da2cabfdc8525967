package passport

import (
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting like encoding/json does.
const maxJSONDepth = 10000

// jsonScan is the scanner under the claims parser of claimsjson.go: it
// reads and validates one JSON text (RFC 8259) from s, value by value,
// returning strings as substrings of s where they have no escapes.
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
