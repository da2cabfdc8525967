package e164

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

func TestAppendGiven(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"442079460123", "442079460123"},     // the UK number: never 1442079460123
		{"+442079460123", "442079460123"},    // '+' removed
		{"+44 20 7946 0123", "442079460123"}, // separators removed
		{"+1 (202) 555-0143", "12025550143"},
		{"1.202.555.0143", "12025550143"},
		{"2025550143-", "2025550143"},          // 20: Egypt. Not a NANP number: never prefixed with 1
		{"390669821234", "390669821234"},       // Italy keeps its 0 after the country code
		{"+44 020 7946 0123", "4402079460123"}, // a trunk 0 after the country code is kept, as given
		{"4315123", "4315123"},
		{"431512", "431512"},                   // 6 digits: the shortest
		{"882161234567890", "882161234567890"}, // 15 digits, a non-geographic code
		{"80012345678", "80012345678"},         // 800: international freephone
		{"6834002", "6834002"},                 // Niue
		{"74951234567", "74951234567"},         // 7: a 1-digit code
	} {
		got, err := AppendGiven([]byte("x"), c.in)
		if err != nil || string(got) != "x"+c.want {
			t.Errorf("AppendGiven(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct {
		in   string
		err  error
		text string
	}{
		{"", ErrNotNumber, "no digits"},
		{"+", ErrNotNumber, "no digits"},
		{"()", ErrNotNumber, "no digits"},
		{"2155550100", ErrCountryCode, "country code (215...)"},
		{"4255550100", ErrCountryCode, "country code"},
		{"02079460123", ErrTrunkPrefix, "starts with 0"},
		{"0044 20 7946 0123", ErrTrunkPrefix, "starts with 0"},
		{"+44 (0)20 7946 0123", ErrTrunkPrefix, "(0"},
		{"+49 ( 030) 901820", ErrTrunkPrefix, "(0"},
		{"1215555010012345", ErrTooLong, "16 digits"},
		{"12155550100123456789", ErrTooLong, "20 digits"},
		{"44207", ErrTooShort, "5 digits"},
		{"12a5550100", ErrNotNumber, `"a" at byte 2`},
		{"1-215-555+0100", ErrNotNumber, `"+" at byte 9`},
		{"++12025550143", ErrNotNumber, `"+"`},
		{" +12025550143", ErrNotNumber, `"+"`},
		{"tel:+12025550143", ErrNotNumber, `"t"`},
		{"12025550143;ext=1", ErrNotNumber, `";"`},
		{"+1 202 555 0143\t", ErrNotNumber, `"\t"`},
		{"+1\u00a0202 555 0143", ErrNotNumber, "non-ASCII"},
		{"１２０２５５５０１４３", ErrNotNumber, "non-ASCII"},
		{"((1)) 202 555 0143", ErrNotNumber, `"("`},
		{"1) 202 555 0143", ErrNotNumber, `")"`},
		{"+1 (202 555 0143", ErrNotNumber, "not closed"},
	} {
		got, err := AppendGiven([]byte("x"), c.in)
		var ge *GivenError
		if !errors.Is(err, c.err) || !errors.As(err, &ge) || !strings.Contains(err.Error(), c.text) || string(got) != "x" {
			t.Errorf("AppendGiven(%q) = %q, %v; want %v with %q and dst unchanged", c.in, got, err, c.err, c.text)
		}
	}
	dst := make([]byte, 0, 32)
	if n := testing.AllocsPerRun(100, func() { dst, _ = AppendGiven(dst[:0], "+44 20 7946 0123") }); n != 0 {
		t.Errorf("AppendGiven: %.1f allocations, want 0", n)
	}
}

// TestMinGiven: MinGiven is the shortest number the metadata allows in any
// region (country code and national significant number), and every country
// code of the library's own table is known to AppendGiven.
func TestMinGiven(t *testing.T) {
	if err := loadMetadata(); err != nil {
		t.Fatal(err)
	}
	shortest, where := 99, ""
	for id, md := range metaByID {
		pl := md.GetGeneralDesc().GetPossibleLength()
		if len(pl) == 0 || pl[0] < 0 {
			continue
		}
		if n := len(strconv.Itoa(int(md.GetCountryCode()))) + int(pl[0]); n < shortest {
			shortest, where = n, id
		}
	}
	if shortest != MinGiven {
		t.Fatalf("shortest number in the metadata: %d digits (%s), MinGiven %d", shortest, where, MinGiven)
	}
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		if !countryCodes[cc] {
			t.Errorf("country code %d of the library unknown to AppendGiven", cc)
		}
	}
	for _, cc := range []int{1, 7, 44, 49, 800, 870, 882, 883, 979} {
		if !countryCodes[cc] {
			t.Errorf("country code %d unknown", cc)
		}
	}
	for _, cc := range []int{0, 2, 21, 42, 215, 999} {
		if countryCodes[cc] {
			t.Errorf("%d taken for a country code", cc)
		}
	}
}

// FuzzAppendGiven: never panics; an accepted number is the input's digits
// in order, 6 to 15 of them, first not 0; a refusal leaves dst as it was.
func FuzzAppendGiven(f *testing.F) {
	for _, s := range []string{"442079460123", "+1 (202) 555-0143", "+44 (0)20", "", "+", "tel:+1", "１２", "((1))", "0044"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := AppendGiven([]byte("p"), in)
		if string(got[:1]) != "p" {
			t.Fatalf("dst prefix clobbered: %q", got)
		}
		if err != nil {
			var ge *GivenError
			if len(got) != 1 || !errors.As(err, &ge) || ge.Reason == "" {
				t.Fatalf("AppendGiven(%q): error %v, dst %q", in, err, got)
			}
			return
		}
		out := string(got[1:])
		var digits strings.Builder
		for _, c := range []byte(in) {
			if c >= '0' && c <= '9' {
				digits.WriteByte(c)
			}
		}
		if out != digits.String() || len(out) < MinGiven || len(out) > MaxGiven || out[0] == '0' {
			t.Fatalf("AppendGiven(%q) = %q", in, out)
		}
		if strings.IndexByte(in, '+') > 0 || strings.ContainsAny(in, "abcdefghijklmnopqrstuvwxyz;:/\t") {
			t.Fatalf("AppendGiven(%q) accepted", in)
		}
	})
}

func TestAppendGivenPrefix(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"+1215555", "1215555"}, {"1", "1"}, {"4", "4"}, {"42", "42"}, {"44", "44"}, {"+44 20 7946", "44207946"},
		{"88216", "88216"}, {"442079460123", "442079460123"},
	} {
		got, err := AppendGivenPrefix([]byte("x"), c.in)
		if err != nil || string(got) != "x"+c.want {
			t.Errorf("AppendGivenPrefix(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct {
		in  string
		err error
	}{
		{"", ErrNotNumber}, {"0", ErrTrunkPrefix}, {"0044", ErrTrunkPrefix}, {"+44 (0)20", ErrTrunkPrefix},
		{"215", ErrCountryCode}, {"215555", ErrCountryCode}, {"425", ErrCountryCode}, {"1234567890123456", ErrTooLong},
		{"12a", ErrNotNumber},
	} {
		got, err := AppendGivenPrefix([]byte("x"), c.in)
		if !errors.Is(err, c.err) || string(got) != "x" {
			t.Errorf("AppendGivenPrefix(%q) = %q, %v; want %v", c.in, got, err, c.err)
		}
	}
}
