package passport

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
