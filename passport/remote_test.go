package passport

import (
	"testing"
)

func TestParseSigningInputAndSameClaims(t *testing.T) {
	b, err := NewBuilder("https://cert.example.net/sp.pem")
	if err != nil {
		t.Fatal(err)
	}
	c := Claims{Attest: 'A', Orig: []byte("12155550121"), Dest: [][]byte{[]byte("12155550131")}, IAT: 1443208345}
	in := b.AppendSigningInput(make([]byte, 0, 1024), &c)
	h, claims, err := ParseSigningInput(in)
	if err != nil {
		t.Fatal(err)
	}
	if h.Alg != "ES256" || h.PPT != "shaken" || h.X5U != "https://cert.example.net/sp.pem" {
		t.Fatalf("header %+v", h)
	}
	want := `{"attest":"A","dest":{"tn":["12155550131"]},"iat":1443208345,"orig":{"tn":"12155550121"},"origid":"00000000-0000-4000-8000-000000000000"}`
	if string(claims) != want {
		t.Fatalf("claims %s", claims)
	}
	for _, tc := range []struct {
		other string
		same  bool
	}{
		{want, true},
		{`{ "origid":"00000000-0000-4000-8000-000000000000","orig":{"tn":"12155550121"},"iat":1443208345, "dest":{"tn":["12155550131"]},"attest":"A"}`, true},
		{`{"attest":"B","dest":{"tn":["12155550131"]},"iat":1443208345,"orig":{"tn":"12155550121"},"origid":"00000000-0000-4000-8000-000000000000"}`, false},
		{`{"attest":"A","dest":{"tn":["12155550131"]},"iat":1443208346,"orig":{"tn":"12155550121"},"origid":"00000000-0000-4000-8000-000000000000"}`, false},
		{`{"attest":"A","dest":{"tn":["12155550131"]},"iat":1443208345,"orig":{"tn":"12155550121"},"origid":"00000000-0000-4000-8000-000000000000","crn":"x"}`, false},
		{`{"attest":"A","dest":{"tn":["12155550131"]},"iat":1443208345,"orig":{"tn":"12155550121"}}`, false},
	} {
		same, err := SameClaims(claims, []byte(tc.other))
		if err != nil || same != tc.same {
			t.Errorf("SameClaims(%s) = %v, %v; want %v", tc.other, same, err, tc.same)
		}
	}
	for _, bad := range []string{"", "abc", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.!!"} {
		if _, _, err := ParseSigningInput([]byte(bad)); err == nil {
			t.Errorf("ParseSigningInput(%q) accepted", bad)
		}
	}
}

// FuzzParseSigningInput: any input parses or is refused without a panic;
// claims it returns are ones SameClaims finds equal to themselves, and
// SameClaims is symmetric.
func FuzzParseSigningInput(f *testing.F) {
	b, err := NewBuilder("https://cert.example.net/sp.pem")
	if err != nil {
		f.Fatal(err)
	}
	c := Claims{Attest: 'A', Orig: []byte("12155550121"), Dest: [][]byte{[]byte("12155550131")}, IAT: 1443208345}
	f.Add(b.AppendSigningInput(nil, &c), []byte(`{"attest":"A","iat":1}`))
	f.Add([]byte("eyJhbGciOiJFUzI1NiJ9.e30"), []byte(`{}`))
	f.Add([]byte("a.b.c"), []byte(`{"a":[1,2,{"b":null}]}`))
	f.Fuzz(func(t *testing.T, input, other []byte) {
		_, claims, err := ParseSigningInput(input)
		if err == nil {
			if same, err := SameClaims(claims, claims); err != nil || !same {
				t.Fatalf("claims %s not the same as themselves: %v", claims, err)
			}
		}
		s1, e1 := SameClaims(claims, other)
		s2, e2 := SameClaims(other, claims)
		if s1 != s2 || (e1 == nil) != (e2 == nil) {
			t.Fatalf("SameClaims not symmetric: %v %v / %v %v", s1, e1, s2, e2)
		}
	})
}
