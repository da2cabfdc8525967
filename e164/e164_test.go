package e164

import (
	"errors"
	"strconv"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// cases: numbers as dialled in a country (digits only, as sip.TelephoneNumber
// returns them) and their E.164 digits. Fictional and unallocated ranges are
// included on purpose: they must be canonicalised, not rejected.
var cases = []struct {
	region string
	in     string
	global bool
	want   string
}{
	// NANP: ten digits, 1 + ten digits, 011 international prefix.
	{"US", "2155550123", false, "12155550123"},
	{"US", "12155550123", false, "12155550123"},
	{"US", "2125550199", false, "12125550199"}, // 555-01xx fictional
	{"US", "5555550100", false, "15555550100"}, // area code 555 is not in service
	{"US", "011442079460018", false, "442079460018"},
	{"US", "01149301234567", false, "49301234567"},
	{"CA", "4165550123", false, "14165550123"},
	{"CA", "14165550123", false, "14165550123"},
	{"BB", "2465550123", false, "12465550123"},
	// Global numbers are returned unchanged whatever the default region.
	{"US", "442079460018", true, "442079460018"},
	{"DE", "12155550123", true, "12155550123"},
	{"JP", "999123", true, "999123"}, // unassigned country code: not judged
	// Europe, fixed-length and variable-length plans.
	{"GB", "02079460018", false, "442079460018"},
	{"GB", "01134960000", false, "441134960000"},
	{"GB", "07700900123", false, "447700900123"},
	{"GB", "00491511234567", false, "491511234567"},
	{"GB", "2079460018", false, "442079460018"},
	{"DE", "030123456", false, "4930123456"},
	{"DE", "0891234567", false, "49891234567"},
	{"DE", "015112345678", false, "4915112345678"},
	{"DE", "03327123", false, "493327123"},
	{"DE", "00442079460018", false, "442079460018"},
	{"DE", "0012155550123", false, "12155550123"},
	{"AT", "015134567", false, "4315134567"},
	{"AT", "06641234567", false, "436641234567"},
	{"AT", "0316123456", false, "43316123456"},
	{"AT", "0512123", false, "43512123"},
	{"CH", "0446681800", false, "41446681800"},
	{"FR", "0123456789", false, "33123456789"},
	{"FR", "0612345678", false, "33612345678"},
	{"BE", "021234567", false, "3221234567"},
	{"NL", "0201234567", false, "31201234567"},
	{"SE", "0812345678", false, "46812345678"},
	{"SE", "031123456", false, "4631123456"},
	{"FI", "091234567", false, "35891234567"},
	{"IE", "012345678", false, "35312345678"},
	{"HU", "0612345678", false, "3612345678"}, // national prefix "06"
	{"RU", "84951234567", false, "74951234567"},
	{"RU", "81044207946001", false, "4420794600" + "1"},
	{"PL", "123456789", false, "48123456789"},
	{"ES", "912345678", false, "34912345678"},
	{"IT", "0612345678", false, "390612345678"}, // Italian leading zero kept
	{"IT", "021234567", false, "39021234567"},
	{"IT", "3123456789", false, "393123456789"},
	{"IT", "0044201234567", false, "44201234567"},
	// Asia, Oceania, Africa, the Americas.
	{"JP", "0312345678", false, "81312345678"},
	{"JP", "09012345678", false, "819012345678"},
	{"JP", "0120123456", false, "81120123456"},
	{"JP", "010442079460018", false, "442079460018"},
	{"CN", "01012345678", false, "861012345678"},
	{"KR", "023123456", false, "8223123456"},
	{"IN", "01123456789", false, "911123456789"},
	{"SG", "61234567", false, "6561234567"},
	{"AU", "0298765432", false, "61298765432"},
	{"AU", "0011442079460018", false, "442079460018"},
	{"NZ", "091234567", false, "6491234567"},
	{"NZ", "00442079460018", false, "442079460018"},
	{"ZA", "0211234567", false, "27211234567"},
	{"IL", "031234567", false, "97231234567"},
	{"MX", "5512345678", false, "525512345678"},
	{"BR", "01155551234", false, "551155551234"},
	{"BR", "011987654321", false, "5511987654321"},
	{"AR", "01143211234", false, "541143211234"},
}

func TestAppend(t *testing.T) {
	for _, tc := range cases {
		c, err := New(tc.region)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Append([]byte("x"), []byte(tc.in), tc.global)
		if err != nil || string(got) != "x"+tc.want {
			t.Errorf("%s Append(%s, %v) = %q, %v; want %q", tc.region, tc.in, tc.global, got, err, "x"+tc.want)
		}
	}
}

// TestAgreesWithLibrary compares every national case that does not use an
// international prefix with phonenumbers.Parse formatted as E.164: the fast
// paths must give the library's answer.
func TestAgreesWithLibrary(t *testing.T) {
	for _, tc := range cases {
		if tc.global {
			continue
		}
		c, _ := New(tc.region)
		got, err := c.Append(nil, []byte(tc.in), false)
		want, lerr := library(tc.in, tc.region)
		if lerr != nil {
			t.Errorf("library(%s, %s): %v", tc.in, tc.region, lerr)
			continue
		}
		if err != nil || string(got) != want {
			t.Errorf("%s %s: Append = %q, %v; library = %q", tc.region, tc.in, got, err, want)
		}
	}
}

func library(in, region string) (string, error) {
	num, err := phonenumbers.Parse(in, region)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(int(num.GetCountryCode())) + phonenumbers.GetNationalSignificantNumber(num), nil
}

func TestErrors(t *testing.T) {
	us, _ := New("US")
	gb, _ := New("GB")
	cases := []struct {
		c      *Canonicalizer
		in     string
		global bool
		want   error
	}{
		{us, "", false, ErrNotNumber},
		{us, "", true, ErrNotNumber},
		{us, "+12155550123", true, ErrNotNumber},
		{us, "215-555-0123", false, ErrNotNumber},
		{us, "1234567890123456", true, ErrTooLong},
		{us, "12", true, ErrTooShort},
		{us, "7", false, ErrTooShort},
		{gb, "0", false, ErrTooShort},
		{gb, "0044", false, ErrTooShort},
		{gb, "0044123456789012345", false, ErrTooLong},
		{gb, "020794600181234567", false, ErrTooLong},
		{gb, "123456789012345678901234567890123", false, ErrTooLong},
	}
	for _, tc := range cases {
		dst := []byte("keep")
		got, err := tc.c.Append(dst, []byte(tc.in), tc.global)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s Append(%q, %v) = %q, %v; want %v", tc.c.Region(), tc.in, tc.global, got, err, tc.want)
		}
		if string(got) != "keep" {
			t.Errorf("%s Append(%q) changed dst on error: %q", tc.c.Region(), tc.in, got)
		}
	}
}

func TestNew(t *testing.T) {
	for _, r := range []string{"", "XX", "001", "USA", "U"} {
		if _, err := New(r); !errors.Is(err, ErrRegion) {
			t.Errorf("New(%q) = %v, want ErrRegion", r, err)
		}
	}
	c, err := New("gb")
	if err != nil || c.Region() != "GB" || c.CountryCode() != "44" {
		t.Fatalf("New(gb) = %+v, %v", c, err)
	}
	// Every region the library knows must build.
	for r := range phonenumbers.GetSupportedRegions() {
		if _, err := New(r); err != nil {
			t.Errorf("New(%s): %v", r, err)
		}
	}
}

// TestFastPathAllocs pins which inputs are allocation-free (see doc.go).
func TestFastPathAllocs(t *testing.T) {
	dst := make([]byte, 0, 32)
	for _, tc := range []struct {
		region, in string
		global     bool
	}{
		{"US", "2155550123", false},
		{"US", "12155550123", false},
		{"US", "011442079460018", false},
		{"US", "442079460018", true},
		{"GB", "02079460018", false},
		{"GB", "00491511234567", false},
		{"DE", "030123456", false},
		{"DE", "015112345678", false},
		{"AT", "015134567", false},
		{"IT", "0612345678", false},
		{"FR", "0612345678", false},
		{"NZ", "091234567", false}, // pattern international prefix, checked without allocating
		{"RU", "84951234567", false},
		{"HU", "0612345678", false},
	} {
		c, err := New(tc.region)
		if err != nil {
			t.Fatal(err)
		}
		in := []byte(tc.in)
		n := testing.AllocsPerRun(100, func() {
			if _, err := c.Append(dst[:0], in, tc.global); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("%s %s: %v allocations, want 0", tc.region, tc.in, n)
		}
	}
}

func TestConcurrent(t *testing.T) {
	c, _ := New("JP")
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 200; i++ {
				got, err := c.Append(nil, []byte("0312345678"), false)
				if err != nil || string(got) != "81312345678" {
					t.Errorf("got %q %v", got, err)
					return
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}
