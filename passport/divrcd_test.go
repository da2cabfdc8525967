package passport

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/hsm/signertest"
)

// rfcX5U is the x5u of the examples of RFC 8946 section 3.
const rfcX5U = "https://www.example.com/cert.cer"

// rfc8946Div is the claim set of the div PASSporT example of RFC 8946
// section 3: a call from 12155551212 to 12155551213, diverted to
// 12155551214.
func rfc8946Div() *DivClaims {
	return &DivClaims{Orig: []byte("12155551212"), Dest: [][]byte{[]byte("12155551214")}, Div: []byte("12155551213"), IAT: 1443208345}
}

// goldenRCD are Rich Call Data claims in the shape of the RFC 9795
// examples: a name, an icon and a jCard URL with their rcdi digests, and
// a call reason.
func goldenRCD() *RCDClaims {
	return &RCDClaims{
		CRN:  []byte(`"Rendezvous for Little Nellie"`),
		RCD:  []byte(`{"icn":"https://example.org/james_bond.png","jcl":"https://example.org/james_bond.json","nam":"James Bond"}`),
		RCDI: []byte(`{"/icn":"sha256-4NWvTGCGpWvZqIRxSDfO9LPvKuE4V9OHY4qHZzTg8q8=","/jcl":"sha256-qCn4pEH6BJu7zXndLFuAP6DwlTv5fRmJ1AFkqftwnCs="}`),
	}
}

// The golden PASSporTs were produced once with fixedKey (the signature is
// random per signing; the signing inputs are fixed).
const (
	goldenDiv = "eyJhbGciOiJFUzI1NiIsInBwdCI6ImRpdiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly93d3cuZXhhbXBsZS5jb20vY2VydC5jZXIifQ" +
		".eyJkZXN0Ijp7InRuIjpbIjEyMTU1NTUxMjE0Il19LCJkaXYiOnsidG4iOiIxMjE1NTU1MTIxMyJ9LCJpYXQiOjE0NDMyMDgzNDUsIm9yaWciOnsidG4iOiIxMjE1NTU1MTIxMiJ9fQ" +
		".apVOy648c8rec0_dpcELQK8NctSt9dV0kPvjEcYJBo3Damd4ldGWZ-Mt6bU4VfGvsLsTy97hdnkUGitb9gQTKg" +
		";info=<https://www.example.com/cert.cer>;alg=ES256;ppt=div"
	goldenShakenRCD = "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0LmV4YW1wbGUub3JnL3NwLnBlbSJ9" +
		".eyJhdHRlc3QiOiJBIiwiY3JuIjoiUmVuZGV6dm91cyBmb3IgTGl0dGxlIE5lbGxpZSIsImRlc3QiOnsidG4iOlsiMTIwMjU1NTAxMDEiXX0sImlhdCI6MTcwMDAwMDAwMCwib3JpZyI6eyJ0biI6IjEyMDI1NTUwMTAwIn0sIm9yaWdpZCI6IjEyMzQ1Njc4LTlhYmMtNGVmMC04MTIzLTQ1Njc4OWFiY2RlZiIsInJjZCI6eyJpY24iOiJodHRwczovL2V4YW1wbGUub3JnL2phbWVzX2JvbmQucG5nIiwiamNsIjoiaHR0cHM6Ly9leGFtcGxlLm9yZy9qYW1lc19ib25kLmpzb24iLCJuYW0iOiJKYW1lcyBCb25kIn0sInJjZGkiOnsiL2ljbiI6InNoYTI1Ni00Tld2VEdDR3BXdlpxSVJ4U0RmTzlMUHZLdUU0VjlPSFk0cUhaelRnOHE4PSIsIi9qY2wiOiJzaGEyNTYtcUNuNHBFSDZCSnU3elhuZExGdUFQNkR3bFR2NWZSbUoxQUZrcWZ0d25Dcz0ifX0" +
		".BSt-3YOpztW_qjt3JVGJp_ES773weoDZqkgIa4wTkR55AwKJlOOXKl8t0emGCyGY2_RdXkZaGihSM6F6x637Ig" +
		";info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken"
	goldenRCDPassport = "eyJhbGciOiJFUzI1NiIsInBwdCI6InJjZCIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0LmV4YW1wbGUub3JnL3NwLnBlbSJ9" +
		".eyJjcm4iOiJSZW5kZXp2b3VzIGZvciBMaXR0bGUgTmVsbGllIiwiZGVzdCI6eyJ0biI6WyIxMjAyNTU1MDEwMSJdfSwiaWF0IjoxNzAwMDAwMDAwLCJvcmlnIjp7InRuIjoiMTIwMjU1NTAxMDAifSwicmNkIjp7ImljbiI6Imh0dHBzOi8vZXhhbXBsZS5vcmcvamFtZXNfYm9uZC5wbmciLCJqY2wiOiJodHRwczovL2V4YW1wbGUub3JnL2phbWVzX2JvbmQuanNvbiIsIm5hbSI6IkphbWVzIEJvbmQifSwicmNkaSI6eyIvaWNuIjoic2hhMjU2LTROV3ZUR0NHcFd2WnFJUnhTRGZPOUxQdkt1RTRWOU9IWTRxSFp6VGc4cTg9IiwiL2pjbCI6InNoYTI1Ni1xQ240cEVINkJKdTd6WG5kTEZ1QVA2RHdsVHY1ZlJtSjFBRmtxZnR3bkNzPSJ9fQ" +
		".B50o45qvqSKAhj-QsLZMMl-XwEx0dYizcgkSbQVxmbx1Nb4lP3UFW8MRHxTd7iXkoFqGetJ0BKmmcLBxIQYy4Q" +
		";info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=rcd"
)

// goldenDecode is the test's own decoder: split, base64url-decode and
// json.Unmarshal, sharing no code with ParseIdentity.
func goldenDecode(t *testing.T, v string) (hdr, pay map[string]any, hdrJS, payJS string) {
	t.Helper()
	tok, _, _ := strings.Cut(v, ";")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&hdr, &pay} {
		js, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			hdrJS = string(js)
		} else {
			payJS = string(js)
		}
		if err := json.Unmarshal(js, dst); err != nil {
			t.Fatal(err)
		}
	}
	return hdr, pay, hdrJS, payJS
}

func TestGoldenDivAndRCD(t *testing.T) {
	k := fixedKey()
	for _, c := range []struct {
		name, golden, ppt, x5u string
		build                  func(b *Builder) []byte
		wantHdr, wantPay       string
	}{
		{"div (RFC 8946 section 3 example)", goldenDiv, PPTDiv, rfcX5U,
			func(b *Builder) []byte { return b.AppendDivSigningInput(nil, rfc8946Div()) },
			`{"alg":"ES256","ppt":"div","typ":"passport","x5u":"https://www.example.com/cert.cer"}`,
			`{"dest":{"tn":["12155551214"]},"div":{"tn":"12155551213"},"iat":1443208345,"orig":{"tn":"12155551212"}}`},
		{"shaken with rcd claims (ATIS-1000094)", goldenShakenRCD, PPTShaken, goldenX5U,
			func(b *Builder) []byte { c := fixedClaims(); c.RCD = goldenRCD(); return b.AppendSigningInput(nil, c) },
			`{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://cert.example.org/sp.pem"}`,
			`{"attest":"A","crn":"Rendezvous for Little Nellie","dest":{"tn":["12025550101"]},"iat":1700000000,"orig":{"tn":"12025550100"},` +
				`"origid":"12345678-9abc-4ef0-8123-456789abcdef","rcd":{"icn":"https://example.org/james_bond.png","jcl":"https://example.org/james_bond.json","nam":"James Bond"},` +
				`"rcdi":{"/icn":"sha256-4NWvTGCGpWvZqIRxSDfO9LPvKuE4V9OHY4qHZzTg8q8=","/jcl":"sha256-qCn4pEH6BJu7zXndLFuAP6DwlTv5fRmJ1AFkqftwnCs="}}`},
		{"rcd PASSporT (RFC 9795)", goldenRCDPassport, PPTRCD, goldenX5U,
			func(b *Builder) []byte {
				c := fixedClaims()
				c.RCD = goldenRCD()
				return b.AppendRCDSigningInput(nil, c)
			},
			`{"alg":"ES256","ppt":"rcd","typ":"passport","x5u":"https://cert.example.org/sp.pem"}`,
			`{"crn":"Rendezvous for Little Nellie","dest":{"tn":["12025550101"]},"iat":1700000000,"orig":{"tn":"12025550100"},` +
				`"rcd":{"icn":"https://example.org/james_bond.png","jcl":"https://example.org/james_bond.json","nam":"James Bond"},` +
				`"rcdi":{"/icn":"sha256-4NWvTGCGpWvZqIRxSDfO9LPvKuE4V9OHY4qHZzTg8q8=","/jcl":"sha256-qCn4pEH6BJu7zXndLFuAP6DwlTv5fRmJ1AFkqftwnCs="}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := NewBuilderPPT(c.x5u, c.ppt)
			if err != nil {
				t.Fatal(err)
			}
			si := c.build(b)
			want := b64.EncodeToString([]byte(c.wantHdr)) + "." + b64.EncodeToString([]byte(c.wantPay))
			if string(si) != want {
				t.Fatalf("signing input\n got %s\nwant %s", si, want)
			}
			if !strings.HasPrefix(c.golden, want+".") || !strings.HasSuffix(c.golden, ";info=<"+c.x5u+">;alg=ES256;ppt="+c.ppt) {
				t.Fatal("golden PASSporT differs from the builder's")
			}
			// The test's own decoder: canonical (what json.Marshal of the
			// decoded map writes: sorted keys, no white space).
			hdr, pay, hdrJS, payJS := goldenDecode(t, c.golden)
			if hdr["ppt"] != c.ppt || hdrJS != c.wantHdr || payJS != c.wantPay {
				t.Fatalf("decoded %v %s", hdr, payJS)
			}
			if re, _ := json.Marshal(pay); string(re) != payJS && !strings.Contains(payJS, "&") {
				t.Errorf("payload not canonical:\n got %s\nre-encoded %s", payJS, re)
			}
			// The package's parser and the signature.
			id, err := ParseIdentityAny(c.golden)
			if err != nil {
				t.Fatal(err)
			}
			if id.PPT != c.ppt || id.Info != c.x5u {
				t.Fatalf("parsed ppt %q info %q", id.PPT, id.Info)
			}
			if err := VerifySignature(&k.PublicKey, id); err != nil {
				t.Fatal(err)
			}
			if _, err := ParseIdentity(c.golden); (c.ppt == PPTShaken) != (err == nil) {
				t.Errorf("ParseIdentity: %v", err)
			}
			// A claim changed (the last digit of orig) breaks the signature.
			tok, params, _ := strings.Cut(c.golden, ";")
			parts := strings.Split(tok, ".")
			tampered := strings.Replace(payJS, `"orig":{"tn":"121555512`, `"orig":{"tn":"131555512`, 1)
			tampered = strings.Replace(tampered, `"orig":{"tn":"120255501`, `"orig":{"tn":"130255501`, 1)
			if tampered == payJS {
				t.Fatal("tamper found no orig")
			}
			bad := parts[0] + "." + b64.EncodeToString([]byte(tampered)) + "." + parts[2] + ";" + params
			if id2, err := ParseIdentityAny(bad); err == nil && VerifySignature(&k.PublicKey, id2) == nil {
				t.Error("tampered PASSporT verified")
			}
		})
	}
	id, _ := ParseIdentityAny(goldenDiv)
	if string(id.Payload.Div) != `{"tn":"12155551213"}` || id.Payload.Orig.TN != "12155551212" || id.Payload.Dest.TN[0] != "12155551214" {
		t.Errorf("div payload %+v", id.Payload)
	}
	id, _ = ParseIdentityAny(goldenShakenRCD)
	if id.Payload.CRN != "Rendezvous for Little Nellie" || !strings.HasPrefix(string(id.Payload.RCD), `{"icn"`) || !strings.HasPrefix(string(id.Payload.RCDI), `{"/icn"`) {
		t.Errorf("rcd payload %+v", id.Payload)
	}
}

func TestDivRCDLengthsAndAllocs(t *testing.T) {
	bd, _ := NewBuilderPPT(rfcX5U, PPTDiv)
	br, _ := NewBuilderPPT(goldenX5U, PPTRCD)
	b, _ := NewBuilder(goldenX5U)
	d := rfc8946Div()
	c := fixedClaims()
	c.RCD = goldenRCD()
	if n := len(AppendDivPayloadJSON(nil, d)); n != DivPayloadJSONLen(d) {
		t.Errorf("DivPayloadJSONLen %d, wrote %d", DivPayloadJSONLen(d), n)
	}
	if n := len(AppendRCDPayloadJSON(nil, c)); n != RCDPayloadJSONLen(c) {
		t.Errorf("RCDPayloadJSONLen %d, wrote %d", RCDPayloadJSONLen(c), n)
	}
	if n := len(AppendPayloadJSON(nil, c)); n != PayloadJSONLen(c) {
		t.Errorf("PayloadJSONLen with rcd %d, wrote %d", PayloadJSONLen(c), n)
	}
	bufD := make([]byte, 0, bd.DivSigningInputCap(d))
	bufR := make([]byte, 0, br.RCDSigningInputCap(c))
	bufS := make([]byte, 0, b.SigningInputCap(c))
	if n := testing.AllocsPerRun(100, func() {
		bufD = bd.AppendDivSigningInput(bufD[:0], d)
		bufR = br.AppendRCDSigningInput(bufR[:0], c)
		bufS = b.AppendSigningInput(bufS[:0], c)
	}); n != 0 {
		t.Errorf("%v allocations building div, rcd and shaken+rcd signing inputs", n)
	}
}

func TestBuilderPPT(t *testing.T) {
	if _, err := NewBuilderPPT(goldenX5U, "fake"); !errors.Is(err, ErrUnsupportedPPT) {
		t.Errorf("ppt fake: %v", err)
	}
	bd, _ := NewBuilderPPT(goldenX5U, PPTDiv)
	if _, err := Sign(context.Background(), signertest.CryptoSigner{Key: fixedKey()}, bd, fixedClaims()); !errors.Is(err, ErrBadClaims) {
		t.Errorf("Sign with a div builder: %v", err)
	}
	b, _ := NewBuilder(goldenX5U)
	if _, err := SignDiv(context.Background(), signertest.CryptoSigner{Key: fixedKey()}, b, rfc8946Div()); !errors.Is(err, ErrBadClaims) {
		t.Errorf("SignDiv with a shaken builder: %v", err)
	}
	// AppendSigningInputJSON per type.
	ext := map[string]json.RawMessage{"div": json.RawMessage(`{ "tn" : "12155551213" }`)}
	si, err := bd.AppendSigningInputJSON(nil, &Claims{Orig: []byte("12155551212"), Dest: [][]byte{[]byte("12155551214")}, IAT: 1443208345}, ext)
	if err != nil {
		t.Fatal(err)
	}
	bdRFC, _ := NewBuilderPPT(goldenX5U, PPTDiv)
	d := rfc8946Div()
	if string(si) != string(bdRFC.AppendDivSigningInput(nil, d)) {
		t.Errorf("div from JSON differs from the div builder's:\n%s", si)
	}
	for _, c := range []struct {
		b   *Builder
		ext map[string]json.RawMessage
	}{
		{b, map[string]json.RawMessage{"div": json.RawMessage(`{"tn":"1"}`)}},
		{bd, map[string]json.RawMessage{"rcd": json.RawMessage(`{"nam":"x"}`)}},
		{bd, nil},
	} {
		if _, err := c.b.AppendSigningInputJSON(nil, fixedClaims(), c.ext); !errors.Is(err, ErrBadClaims) {
			t.Errorf("%s with %v: %v", c.b.PPT(), c.ext, err)
		}
	}
}

// TestGoldenFiles: testdata/golden holds the golden PASSporTs and the
// public key of fixedKey, for the second implementation's check
// (bench/kamailio, TestGoldenPassports).
func TestGoldenFiles(t *testing.T) {
	for file, want := range map[string]string{"shaken.txt": goldenIdentity, "div-rfc8946.txt": goldenDiv,
		"shaken-rcd.txt": goldenShakenRCD, "rcd.txt": goldenRCDPassport} {
		b, err := os.ReadFile(filepath.Join("testdata", "golden", file))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("testdata/golden/%s differs from the test's golden (%v)", file, err)
		}
	}
	b, err := os.ReadFile(filepath.Join("testdata", "golden", "fixed-key.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil || !fixedKey().PublicKey.Equal(pub) {
		t.Errorf("fixed-key.pub.pem is not fixedKey's public key (%v)", err)
	}
}
