package tnauth_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/tnauth"
)

func TestMarshalGolden(t *testing.T) {
	cases := []struct {
		l   tnauth.List
		hex string
	}{
		// SEQUENCE { [0] { IA5String "1234" } }: the form SHAKEN certificates carry.
		{tnauth.List{SPCs: []string{"1234"}}, "3008a0061604" + hex.EncodeToString([]byte("1234"))},
		// SEQUENCE { [1] { SEQUENCE { IA5String "12025550100", INTEGER 100 } } }
		{tnauth.List{Ranges: []tnauth.Range{{Start: "12025550100", Count: 100}}}, "3014a1123010160b" + hex.EncodeToString([]byte("12025550100")) + "020164"},
		// SEQUENCE { [2] { IA5String "15551234567" } }
		{tnauth.List{TNs: []string{"15551234567"}}, "300fa20d160b" + hex.EncodeToString([]byte("15551234567"))},
	}
	for _, c := range cases {
		der, err := tnauth.Marshal(c.l)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(der) != c.hex {
			t.Errorf("%+v:\n got %x\nwant %s", c.l, der, c.hex)
		}
		back, err := tnauth.Parse(der)
		if err != nil || !reflect.DeepEqual(back, c.l) {
			t.Errorf("parse back %+v %v", back, err)
		}
	}
}

func TestRoundTripMixed(t *testing.T) {
	l := tnauth.List{
		SPCs:   []string{"1234", "56AB"},
		Ranges: []tnauth.Range{{Start: "33100000000", Count: 1000}, {Start: "4420", Count: 1 << 40}},
		TNs:    []string{"12025550100", "*67#"},
	}
	der, err := tnauth.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	back, err := tnauth.Parse(der)
	if err != nil || !reflect.DeepEqual(back, l) {
		t.Fatalf("%+v %v", back, err)
	}
}

func TestImplicitAccepted(t *testing.T) {
	// [0] IMPLICIT "1234", [2] IMPLICIT "15551234567", [1] IMPLICIT range.
	der, _ := hex.DecodeString("30" + "27" +
		"8004" + hex.EncodeToString([]byte("1234")) +
		"820b" + hex.EncodeToString([]byte("15551234567")) +
		"a110160b" + hex.EncodeToString([]byte("12025550100")) + "020164")
	der[1] = byte(len(der) - 2)
	l, err := tnauth.Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	want := tnauth.List{SPCs: []string{"1234"}, TNs: []string{"15551234567"}, Ranges: []tnauth.Range{{Start: "12025550100", Count: 100}}}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("%+v", l)
	}
}

func TestRejects(t *testing.T) {
	bad := []struct {
		l    tnauth.List
		want error
	}{
		{tnauth.List{}, tnauth.ErrEmpty},
		{tnauth.List{SPCs: []string{""}}, tnauth.ErrBadSPC},
		{tnauth.List{SPCs: []string{"a b"}}, tnauth.ErrBadSPC},
		{tnauth.List{TNs: []string{"+12025550100"}}, tnauth.ErrBadTN},
		{tnauth.List{TNs: []string{"1234567890123456"}}, tnauth.ErrBadTN},
		{tnauth.List{Ranges: []tnauth.Range{{Start: "1202", Count: 1}}}, tnauth.ErrBadCount},
	}
	for _, c := range bad {
		if _, err := tnauth.Marshal(c.l); !errors.Is(err, c.want) {
			t.Errorf("Marshal(%+v) = %v, want %v", c.l, err, c.want)
		}
	}
	for _, h := range []string{
		"", "3000", "300a", "3008a006160431323334ff", "3008a3061604" + "31323334",
		"3005a103020102",           // range without start
		"3009a1073005160131020101", // count 1
		"3006a0040c023132",         // UTF8String instead of IA5String
	} {
		der, _ := hex.DecodeString(h)
		if _, err := tnauth.Parse(der); err == nil {
			t.Errorf("Parse(%s) accepted", h)
		}
	}
}

func TestCovers(t *testing.T) {
	l := tnauth.List{
		SPCs:   []string{"1234"},
		Ranges: []tnauth.Range{{Start: "12025550100", Count: 100}},
		TNs:    []string{"33123456789"},
	}
	for tn, want := range map[string]bool{
		"12025550100":  true,
		"+12025550150": true,
		"12025550199":  true,
		"12025550200":  false,
		"12025550099":  false,
		"1202555010":   false, // fewer digits
		"120255501000": false, // more digits
		"33123456789":  true,
		"1234":         false, // the SPC is not a number
		"":             false,
		"abc":          false,
	} {
		if got := l.Covers(tn); got != want {
			t.Errorf("Covers(%q) = %v", tn, got)
		}
	}
	if (tnauth.List{SPCs: []string{"1234"}}).Covers("1234") {
		t.Error("SPC-only list covers a TN")
	}
	huge := tnauth.List{Ranges: []tnauth.Range{{Start: "999999999999999", Count: 1 << 62}}}
	if !huge.Covers("999999999999999") || huge.Covers("99999999999999") {
		t.Error("overflow edge")
	}
}

// TestOpenSSLReadsLabCertificate checks the extension in a labpki
// certificate with openssl's own DER parser.
func TestOpenSSLReadsLabCertificate(t *testing.T) {
	ossl := prereq.Tool(t, "openssl")
	dir := t.TempDir()
	if err := labpki.Generate(dir, labpki.Options{SPC: "987X"}); err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(dir, "sp.pem")
	out, err := exec.Command(ossl, "asn1parse", "-in", sp).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m):1\.3\.6\.1\.5\.5\.7\.1\.26\s*\n\s*(\d+):d=\d+\s+hl=\d+ l=\s*\d+ prim: OCTET STRING`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("TNAuthList extension not found by openssl:\n%s", out)
	}
	out, err = exec.Command(ossl, "asn1parse", "-in", sp, "-strparse", string(m[1])).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "cont [ 0 ]") || !strings.Contains(s, "IA5STRING         :987X") {
		t.Errorf("openssl view of TNAuthList:\n%s", s)
	}
	// And the same bytes through Parse.
	der, _ := tnauth.Marshal(tnauth.List{SPCs: []string{"987X"}})
	f := filepath.Join(dir, "tn.der")
	os.WriteFile(f, der, 0o644)
	out2, err := exec.Command(ossl, "asn1parse", "-inform", "DER", "-in", f).CombinedOutput()
	if err != nil || !bytes.Equal(normalize(out2), normalize(out)) {
		t.Errorf("openssl parse of Marshal output differs:\n%s\nvs\n%s", out2, out)
	}
}

func normalize(b []byte) []byte { return bytes.TrimSpace(b) }

func FuzzParse(f *testing.F) {
	for _, l := range []tnauth.List{
		{SPCs: []string{"1234"}},
		{Ranges: []tnauth.Range{{Start: "12025550100", Count: 100}}},
		{TNs: []string{"1"}, SPCs: []string{"x"}},
	} {
		der, _ := tnauth.Marshal(l)
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		l, err := tnauth.Parse(der)
		if err != nil {
			return
		}
		again, err := tnauth.Marshal(l)
		if err != nil {
			t.Fatalf("parsed %+v but cannot marshal: %v", l, err)
		}
		l2, err := tnauth.Parse(again)
		if err != nil || !reflect.DeepEqual(l, l2) {
			t.Fatalf("round trip %+v -> %+v %v", l, l2, err)
		}
		for _, tn := range l.TNs {
			if !l.Covers(tn) && !strings.ContainsAny(tn, "#*") {
				t.Fatalf("list does not cover its own TN %q", tn)
			}
		}
	})
}
