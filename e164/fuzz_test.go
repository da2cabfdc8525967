package e164

import (
	"testing"
)

var fuzzRegions = []string{"US", "GB", "DE", "AT", "IT", "JP", "FR", "AU", "NZ", "RU", "HU", "BR", "IN", "CN", "MX", "BB"}

// FuzzAppend checks that Append never panics, emits only digits within the
// E.164 length, and, for national numbers not dialled with an international
// prefix, agrees with phonenumbers.Parse whenever both succeed.
func FuzzAppend(f *testing.F) {
	for _, tc := range cases {
		for i, r := range fuzzRegions {
			if r == tc.region {
				f.Add(uint8(i), tc.in, tc.global)
			}
		}
	}
	cs := make([]*Canonicalizer, len(fuzzRegions))
	for i, r := range fuzzRegions {
		c, err := New(r)
		if err != nil {
			f.Fatal(err)
		}
		cs[i] = c
	}
	f.Fuzz(func(t *testing.T, ri uint8, in string, global bool) {
		c := cs[int(ri)%len(cs)]
		got, err := c.Append([]byte("p"), []byte(in), global)
		if string(got[:1]) != "p" {
			t.Fatalf("dst prefix clobbered: %q", got)
		}
		if err != nil {
			if len(got) != 1 {
				t.Fatalf("error %v but dst grew: %q", err, got)
			}
			return
		}
		out := got[1:]
		if len(out) < minGlobal || len(out) > maxDigits {
			t.Fatalf("Append(%s, %q) = %q: bad length", c.Region(), in, out)
		}
		for _, d := range out {
			if d < '0' || d > '9' {
				t.Fatalf("Append(%s, %q) = %q: non-digit", c.Region(), in, out)
			}
		}
		if global {
			if string(out) != in {
				t.Fatalf("global %q changed to %q", in, out)
			}
			return
		}
		if c.idd != nil && hasPrefix([]byte(in), c.idd) || c.iddRe != nil && c.iddRe.MatchString(in) {
			return // the remainder is treated as global: not np-stripped (doc.go)
		}
		want, lerr := library(in, c.Region())
		if lerr == nil && string(out) != want {
			t.Fatalf("Append(%s, %q) = %q; library %q", c.Region(), in, out, want)
		}
	})
}
