package tnauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OID is the id-pe-TNAuthList extension (RFC 8226 section 9).
var OID = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 26}

// Limits on what Parse accepts.
const (
	MaxDER     = 64 << 10
	MaxEntries = 4096
	maxTNLen   = 15
)

// Errors.
var (
	ErrEmpty     = errors.New("tnauth: empty TN authorization list")
	ErrBadSPC    = errors.New("tnauth: bad service provider code")
	ErrBadTN     = errors.New("tnauth: bad telephone number")
	ErrBadCount  = errors.New("tnauth: range count must be at least 2")
	ErrMalformed = errors.New("tnauth: malformed DER")
)

// Range is a block of count numbers starting at Start (same digit count).
type Range struct {
	Start string
	Count int64
}

// List is a decoded TNAuthorizationList. Marshal writes SPCs, then Ranges,
// then TNs; Parse keeps the order within each kind.
type List struct {
	SPCs   []string
	Ranges []Range
	TNs    []string
}

// Empty reports whether l has no entries.
func (l List) Empty() bool { return len(l.SPCs)+len(l.Ranges)+len(l.TNs) == 0 }

// Marshal returns the DER encoding of l (EXPLICIT tags, RFC 8226 section 9).
func Marshal(l List) ([]byte, error) {
	if l.Empty() {
		return nil, ErrEmpty
	}
	for _, s := range l.SPCs {
		if err := checkSPC(s); err != nil {
			return nil, err
		}
	}
	for _, r := range l.Ranges {
		if err := checkTN(r.Start); err != nil {
			return nil, err
		}
		if r.Count < 2 {
			return nil, fmt.Errorf("%w: %d", ErrBadCount, r.Count)
		}
	}
	for _, tn := range l.TNs {
		if err := checkTN(tn); err != nil {
			return nil, err
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, s := range l.SPCs {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.IA5String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
			})
		}
		for _, r := range l.Ranges {
			b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.IA5String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(r.Start)) })
					b.AddASN1Int64(r.Count)
				})
			})
		}
		for _, tn := range l.TNs {
			b.AddASN1(cbasn1.Tag(2).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.IA5String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(tn)) })
			})
		}
	})
	return b.Bytes()
}

// Parse decodes a DER TNAuthorizationList.
func Parse(der []byte) (List, error) {
	var l List
	if len(der) > MaxDER {
		return l, fmt.Errorf("%w: %d bytes", ErrMalformed, len(der))
	}
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return l, fmt.Errorf("%w: not a single SEQUENCE", ErrMalformed)
	}
	n := 0
	for !seq.Empty() {
		if n++; n > MaxEntries {
			return List{}, fmt.Errorf("%w: more than %d entries", ErrMalformed, MaxEntries)
		}
		var entry cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&entry, &tag) {
			return List{}, fmt.Errorf("%w: entry %d", ErrMalformed, n)
		}
		switch tag {
		case cbasn1.Tag(0).ContextSpecific().Constructed(): // explicit spc
			s, err := readIA5(&entry, true)
			if err != nil {
				return List{}, err
			}
			if err := checkSPC(s); err != nil {
				return List{}, err
			}
			l.SPCs = append(l.SPCs, s)
		case cbasn1.Tag(0).ContextSpecific(): // implicit spc
			s := string(entry)
			if err := checkSPC(s); err != nil {
				return List{}, err
			}
			l.SPCs = append(l.SPCs, s)
		case cbasn1.Tag(1).ContextSpecific().Constructed():
			body := entry
			if len(entry) > 0 && cbasn1.Tag(entry[0]) == cbasn1.SEQUENCE {
				// explicit: [1] { SEQUENCE { start, count } }
				if !entry.ReadASN1(&body, cbasn1.SEQUENCE) || !entry.Empty() {
					return List{}, fmt.Errorf("%w: range %d", ErrMalformed, n)
				}
			}
			r, err := parseRange(body)
			if err != nil {
				return List{}, err
			}
			l.Ranges = append(l.Ranges, r)
		case cbasn1.Tag(2).ContextSpecific().Constructed(): // explicit one
			s, err := readIA5(&entry, true)
			if err != nil {
				return List{}, err
			}
			if err := checkTN(s); err != nil {
				return List{}, err
			}
			l.TNs = append(l.TNs, s)
		case cbasn1.Tag(2).ContextSpecific(): // implicit one
			s := string(entry)
			if err := checkTN(s); err != nil {
				return List{}, err
			}
			l.TNs = append(l.TNs, s)
		default:
			return List{}, fmt.Errorf("%w: unknown entry tag %#x", ErrMalformed, uint8(tag))
		}
	}
	if l.Empty() {
		return l, ErrEmpty
	}
	return l, nil
}

func readIA5(s *cryptobyte.String, whole bool) (string, error) {
	var v cryptobyte.String
	if !s.ReadASN1(&v, cbasn1.IA5String) || (whole && !s.Empty()) {
		return "", fmt.Errorf("%w: want IA5String", ErrMalformed)
	}
	return string(v), nil
}

func parseRange(body cryptobyte.String) (Range, error) {
	start, err := readIA5(&body, false)
	if err != nil {
		return Range{}, err
	}
	if err := checkTN(start); err != nil {
		return Range{}, err
	}
	var count int64
	if !body.ReadASN1Integer(&count) {
		return Range{}, fmt.Errorf("%w: range count", ErrMalformed)
	}
	// Anything after count is an extension field ("..."): ignored.
	if count < 2 {
		return Range{}, fmt.Errorf("%w: %d", ErrBadCount, count)
	}
	return Range{Start: start, Count: count}, nil
}

func checkSPC(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%w: %q", ErrBadSPC, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return fmt.Errorf("%w: %q", ErrBadSPC, s)
		}
	}
	return nil
}

func checkTN(s string) error {
	if s == "" || len(s) > maxTNLen || strings.Trim(s, "0123456789#*") != "" {
		return fmt.Errorf("%w: %q", ErrBadTN, s)
	}
	return nil
}

// FromCertificate decodes the TNAuthList extension of c. ok is false when c
// has no such extension.
func FromCertificate(c *x509.Certificate) (l List, ok bool, err error) {
	for _, e := range c.Extensions {
		if e.Id.Equal(OID) {
			l, err = Parse(e.Value)
			return l, true, err
		}
	}
	return List{}, false, nil
}

// Extension returns l as a certificate extension (non-critical).
func (l List) Extension() (pkix.Extension, error) {
	der, err := Marshal(l)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: OID, Value: der}, nil
}

// Covers reports whether tn (E.164 digits, no '+') is one of l's TNs or lies
// in one of its ranges. An SPC entry covers no number by itself.
func (l List) Covers(tn string) bool {
	tn = strings.TrimPrefix(tn, "+")
	for _, t := range l.TNs {
		if t == tn {
			return true
		}
	}
	if len(tn) == 0 || len(tn) > maxTNLen {
		return false
	}
	v, err := strconv.ParseUint(tn, 10, 64)
	if err != nil {
		return false
	}
	for _, r := range l.Ranges {
		if len(r.Start) != len(tn) {
			continue
		}
		s, err := strconv.ParseUint(r.Start, 10, 64)
		if err != nil || v < s {
			continue
		}
		if v-s < uint64(r.Count) {
			return true
		}
	}
	return false
}
