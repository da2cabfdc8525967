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
