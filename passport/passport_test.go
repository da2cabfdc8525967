package passport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/hsm/signertest"
)

// fixedKey is the P-256 key of RFC 6979 appendix A.2.5.
func fixedKey() *ecdsa.PrivateKey {
	d, _ := new(big.Int).SetString("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721", 16)
	k := &ecdsa.PrivateKey{D: d}
	k.Curve = elliptic.P256()
	k.X, k.Y = k.Curve.ScalarBaseMult(d.Bytes())
	return k
}

func fixedClaims() *Claims {
	return &Claims{
		Attest: 'A',
		Orig:   []byte("12025550100"),
		Dest:   [][]byte{[]byte("12025550101")},
		IAT:    1700000000,
		OrigID: [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef},
	}
}

const goldenX5U = "https://cert.example.org/sp.pem"

// goldenIdentity was produced once by Sign with fixedKey and fixedClaims.
const goldenIdentity = "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0LmV4YW1wbGUub3JnL3NwLnBlbSJ9" +
	".eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0biI6WyIxMjAyNTU1MDEwMSJdfSwiaWF0IjoxNzAwMDAwMDAwLCJvcmlnIjp7InRuIjoiMTIwMjU1NTAxMDAifSwib3JpZ2lkIjoiMTIzNDU2NzgtOWFiYy00ZWYwLTgxMjMtNDU2Nzg5YWJjZGVmIn0" +
	".ND8XThbVzuuiFx0-xpVlJfoYRwjGpRok-UFpMr1LaWD3nG7OIpqkfoDqLM3TGGf_mMasZimHyflO7UpIwRBjWQ" +
	";info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken"

func TestGoldenJSON(t *testing.T) {
	b, err := NewBuilder(goldenX5U)
	if err != nil {
		t.Fatal(err)
	}
	const wantHdr = `{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://cert.example.org/sp.pem"}`
	if got := string(HeaderJSON(goldenX5U)); got != wantHdr {
		t.Errorf("header JSON\n got %s\nwant %s", got, wantHdr)
	}
	if got := string(b.HeaderB64()); got != "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0LmV4YW1wbGUub3JnL3NwLnBlbSJ9" {
		t.Errorf("header b64 %s", got)
	}
	const wantPay = `{"attest":"A","dest":{"tn":["12025550101"]},"iat":1700000000,"orig":{"tn":"12025550100"},"origid":"12345678-9abc-4ef0-8123-456789abcdef"}`
	c := fixedClaims()
	if got := string(AppendPayloadJSON(nil, c)); got != wantPay {
		t.Errorf("payload JSON\n got %s\nwant %s", got, wantPay)
	}
	if PayloadJSONLen(c) != len(wantPay) {
		t.Errorf("PayloadJSONLen = %d, want %d", PayloadJSONLen(c), len(wantPay))
	}
	si := b.AppendSigningInput(nil, c)
	want := b64.EncodeToString([]byte(wantHdr)) + "." + b64.EncodeToString([]byte(wantPay))
	if string(si) != want {
		t.Errorf("signing input\n got %s\nwant %s", si, want)
	}
	if !strings.HasPrefix(goldenIdentity, want+".") {
		t.Errorf("golden identity does not start with the signing input")
	}
	if got := string(b.Suffix()); got != ";info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken" {
		t.Errorf("suffix %q", got)
	}
}

func TestGoldenVerify(t *testing.T) {
	k := fixedKey()
	if k.X.Text(16) != "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6" {
		t.Fatalf("fixed key X = %x", k.X)
	}
	id, err := ParseIdentity(goldenIdentity)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(&k.PublicKey, id); err != nil {
		t.Fatalf("golden signature: %v", err)
	}
	if id.Payload.OrigID != "12345678-9abc-4ef0-8123-456789abcdef" || id.Payload.IAT != 1700000000 ||
		id.Payload.Attest != "A" || id.Payload.Orig.TN != "12025550100" || len(id.Payload.Dest.TN) != 1 ||
		id.Payload.Dest.TN[0] != "12025550101" || id.Info != goldenX5U || id.Header.X5U != goldenX5U ||
		id.Alg != "ES256" || id.PPT != "shaken" || id.Header.Typ != "passport" {
		t.Errorf("parsed %+v", id)
	}
	// One flipped payload character breaks the signature.
	bad := strings.Replace(goldenIdentity, ".eyJhdHRlc3QiOiJB", ".eyJhdHRlc3QiOiJC", 1)
	id2, err := ParseIdentity(bad)
	if err != nil {
		t.Fatal(err)
	}
	if id2.Payload.Attest != "B" {
		t.Fatalf("tamper did not change attest: %q", id2.Payload.Attest)
	}
	if err := VerifySignature(&k.PublicKey, id2); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered payload: err = %v, want ErrBadSignature", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := VerifySignature(&other.PublicKey, id); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong key: err = %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, err := NewBuilder("https://sti.example.com/certs/a;b?x=1&y=\\")
	if err != nil {
		t.Fatal(err)
	}
	for _, att := range []byte("ABC") {
		c := fixedClaims()
		c.Attest = att
		c.Dest = append(c.Dest, []byte("33123456789"))
		if _, err := rand.Read(c.OrigID[:]); err != nil {
			t.Fatal(err)
		}
		v, err := Sign(context.Background(), signertest.CryptoSigner{Key: k}, b, c)
		if err != nil {
			t.Fatal(err)
		}
		id, err := ParseIdentity(v)
		if err != nil {
			t.Fatalf("parse %q: %v", v, err)
		}
		if err := VerifySignature(&k.PublicKey, id); err != nil {
			t.Fatal(err)
		}
		if id.Payload.Attest != string(att) || len(id.Payload.Dest.TN) != 2 || id.Info != b.X5U() || id.Header.X5U != b.X5U() {
			t.Errorf("round trip %+v", id)
		}
		u := id.Payload.OrigID
		if len(u) != 36 || u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) || u != OrigIDString(c.OrigID) {
			t.Errorf("origid %q not a v4 UUID", u)
		}
	}
	if _, err := Sign(context.Background(), signertest.CryptoSigner{Key: k}, b, &Claims{Attest: 'D'}); !errors.Is(err, ErrBadClaims) {
		t.Errorf("attest D: %v", err)
	}
}

func TestNewBuilderRejects(t *testing.T) {
	for _, u := range []string{"", "https://a b", "https://a>b", "https://a\r\nX: y", "https://a\"b"} {
		if _, err := NewBuilder(u); !errors.Is(err, ErrBadX5U) {
			t.Errorf("NewBuilder(%q) err = %v", u, err)
		}
	}
}

func TestJSONEscaping(t *testing.T) {
	c := &Claims{Attest: 'C', Orig: []byte("1\"2\\3\x01"), IAT: -5}
	js := AppendPayloadJSON(nil, c)
	if PayloadJSONLen(c) != len(js) {
		t.Errorf("len %d vs %d", PayloadJSONLen(c), len(js))
	}
	var p Payload
	if err := json.Unmarshal(js, &p); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	if p.Orig.TN != "1\"2\\3\x01" || p.IAT != -5 || len(p.Dest.TN) != 0 {
		t.Errorf("%+v", p)
	}
}

func TestParseVariants(t *testing.T) {
	tok := goldenIdentity[:strings.IndexByte(goldenIdentity, ';')]
	ok := []string{
		tok + ";info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken",
		"  " + tok + " ; ppt=\"shaken\" ; alg = ES256 ;info=<https://cert.example.org/sp.pem>  ",
		tok + ";info=<https://cert.example.org/sp.pem>",
		tok + ";INFO=<https://cert.example.org/sp.pem>;foo=bar;x;alg=ES256",
	}
	for _, v := range ok {
		id, err := ParseIdentity(v)
		if err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if id.Info != goldenX5U || id.Alg != "ES256" || id.PPT != "shaken" {
			t.Errorf("%q: %+v", v, id)
		}
		if err := VerifySignature(&fixedKey().PublicKey, id); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
	hdr, _, _ := strings.Cut(tok, ".")
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	pay := enc(`{"attest":"A","dest":{"tn":["1"]},"iat":1,"orig":{"tn":"2"},"origid":"x"}`)
	bad := []struct {
		v    string
		want error
	}{
		{hdr + ".." + sig + ";info=<https://x>", ErrCompactForm},
		{"abc;info=<https://x>", ErrMalformed},
		{hdr + "." + pay + ";info=<https://x>", ErrMalformed},
		{hdr + "." + pay + "." + sig + ".x;info=<https://x>", ErrMalformed},
		{hdr + "." + pay + "." + sig, ErrMalformed},
		{hdr + "." + pay + "." + sig + ";info=https://x", ErrMalformed},
		{hdr + "." + pay + "." + sig + ";info=<https://x>;ppt=div", ErrMalformed},
		{"!!." + pay + "." + sig + ";info=<https://x>", ErrBadBase64},
		{hdr + "." + pay + ".a+b;info=<https://x>", ErrBadBase64},
		{enc(`{"alg":`) + "." + pay + "." + sig + ";info=<https://x>", ErrBadJSON},
		{hdr + "." + enc(`{"attest":"A"} x`) + "." + sig + ";info=<https://x>", ErrBadJSON},
		{hdr + "." + enc(`{"orig":{"tn":["1"]}}`) + "." + sig + ";info=<https://x>", ErrBadJSON},
		{enc(`{"alg":"RS256","ppt":"shaken","typ":"passport","x5u":"https://x"}`) + "." + pay + "." + sig + ";info=<https://x>", ErrUnsupportedAlg},
		{hdr + "." + pay + "." + sig + ";info=<https://x>;alg=ES384", ErrUnsupportedAlg},
		{enc(`{"alg":"ES256","ppt":"div","typ":"passport","x5u":"https://x"}`) + "." + pay + "." + sig + ";info=<https://x>", ErrUnsupportedPPT},
		{enc(`{"alg":"ES256","typ":"passport","x5u":"https://x"}`) + "." + pay + "." + sig + ";info=<https://x>", ErrUnsupportedPPT},
		{strings.Repeat("a", MaxIdentityLen+1), ErrMalformed},
	}
	for _, c := range bad {
		id, err := ParseIdentity(c.v)
		if !errors.Is(err, c.want) {
			t.Errorf("%.80q: err = %v, want %v", c.v, err, c.want)
		}
		if (c.want == ErrUnsupportedAlg || c.want == ErrUnsupportedPPT) != (id != nil) {
			t.Errorf("%.80q: identity %v with %v", c.v, id != nil, err)
		}
	}
}

// Identity headers published by other STIR/SHAKEN implementations.
func TestParsePublished(t *testing.T) {
	// From the CGRateS test suite (sessions): no alg parameter.
	const cgr = "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly93d3cuZXhhbXBsZS5vcmcvY2VydC5jZXIifQ.eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0biI6WyIxMDAyIl19LCJpYXQiOjE1ODcwMTk4MjIsIm9yaWciOnsidG4iOiIxMDAxIn0sIm9yaWdpZCI6IjEyMzQ1NiJ9.4ybtWmgqdkNyJLS9Iv3PuJV8ZxR7yZ_NEBhCpKCEu2WBiTchqwoqoWpI17Q_ALm38tbnpay32t95ZY_LhSgwJg;info=<https://www.example.org/cert.cer>;ppt=shaken"
	id, err := ParseIdentity(cgr)
	if err != nil {
		t.Fatal(err)
	}
	if id.Alg != "ES256" || id.Info != "https://www.example.org/cert.cer" || id.Payload.Orig.TN != "1001" ||
		id.Payload.Dest.TN[0] != "1002" || id.Payload.IAT != 1587019822 || id.Payload.OrigID != "123456" || len(id.Signature) != 64 {
		t.Errorf("%+v", id)
	}
	// From the FreeSWITCH mod_sofia tests.
	const fs = "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cDovLzEyNy4wLjAuMS80MDQucGVtIn0.eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0biI6WyIxNTU1MzIxNDMyMSJdfSwiaWF0IjoxNjE4Mjc5OTYzLCJvcmlnIjp7InRuIjoiMTU1NTEyMzEyMzQifSwib3JpZ2lkIjoiMTMxMzEzMTMifQ.Cm34sISkFWYB6ohtjjJEO71Hyz4TQ5qrTDyYmCXBj-ni5Fe7IbNjmMyvY_lD_Go0u2csWQNe8n03fHSO7Z7nNw;info=<http://127.0.0.1/404.pem>;alg=ES256;ppt=shaken"
	id, err = ParseIdentity(fs)
	if err != nil {
		t.Fatal(err)
	}
	if id.Payload.Orig.TN != "15551231234" || id.Payload.Dest.TN[0] != "15553214321" || id.Header.X5U != id.Info {
		t.Errorf("%+v", id)
	}
}

func TestExtensions(t *testing.T) {
	k := fixedKey()
	b, _ := NewBuilder(goldenX5U)
	ext := map[string]json.RawMessage{
		"rcd": json.RawMessage(` { "nam" : "Alice", "jcd" : {"b":1, "a":[true, null, 1.50]} } `),
		"crn": json.RawMessage(`"Sales \u00e9"`),
	}
	si, err := b.AppendSigningInputJSON(nil, fixedClaims(), ext)
	if err != nil {
		t.Fatal(err)
	}
	_, pay, _ := bytes.Cut(si, []byte("."))
	js, _ := b64.DecodeString(string(pay))
	const want = `{"attest":"A","crn":"Sales é","dest":{"tn":["12025550101"]},"iat":1700000000,` +
		`"orig":{"tn":"12025550100"},"origid":"12345678-9abc-4ef0-8123-456789abcdef","rcd":{"jcd":{"a":[true,null,1.50],"b":1},"nam":"Alice"}}`
	if string(js) != want {
		t.Errorf("ext payload\n got %s\nwant %s", js, want)
	}
	v, err := SignExt(context.Background(), signertest.CryptoSigner{Key: k}, b, fixedClaims(), ext)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseIdentity(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(&k.PublicKey, id); err != nil {
		t.Fatal(err)
	}
	if string(id.Payload.RCD) == "" || id.Payload.CRN != "Sales é" || len(id.Payload.Div) != 0 {
		t.Errorf("%+v", id.Payload)
	}
	// No extensions: same bytes as the hot path.
	plain, _ := b.AppendSigningInputJSON(nil, fixedClaims(), nil)
	if !bytes.Equal(plain, b.AppendSigningInput(nil, fixedClaims())) {
		t.Error("AppendSigningInputJSON without extensions differs from AppendSigningInput")
	}
	for _, bad := range []map[string]json.RawMessage{
		{"iat": json.RawMessage(`1`)},
		{"rcd": json.RawMessage(`{`)},
		{"rcd": json.RawMessage(`1 2`)},
	} {
		if _, err := b.AppendSigningInputJSON(nil, fixedClaims(), bad); !errors.Is(err, ErrBadClaims) {
			t.Errorf("%v: err = %v", bad, err)
		}
	}
}

func FuzzParseIdentity(f *testing.F) {
	f.Add(goldenIdentity)
	f.Add(secsipidIdentity)
	f.Add(strings.Replace(goldenIdentity, ";alg=ES256", ` ; ppt="shaken"`, 1))
	f.Add("a..b;info=<x>")
	f.Add("a.b.c;info=<x;y>;alg=\"E\\\"S\"")
	f.Fuzz(func(t *testing.T, v string) {
		id, err := ParseIdentity(v)
		if err != nil {
			return
		}
		if id.Alg != "ES256" || id.PPT != "shaken" || id.Info == "" {
			t.Fatalf("accepted %+v", id)
		}
		id2, err := ParseIdentity(id.Raw)
		if err != nil || !bytes.Equal(id2.SigningInput, id.SigningInput) || id2.Info != id.Info {
			t.Fatalf("reparse of %q: %v", id.Raw, err)
		}
	})
}
