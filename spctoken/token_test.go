package spctoken_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/tnauth"
)

func key(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignParseCheck(t *testing.T) {
	pa, acct := key(t), key(t)
	fp, err := spctoken.Fingerprint(&acct.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^SHA256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fp) {
		t.Fatalf("fingerprint %q", fp)
	}
	tv, err := spctoken.TkValue(tnauth.List{SPCs: []string{"1234"}})
	if err != nil {
		t.Fatal(err)
	}
	der, _ := tnauth.Marshal(tnauth.List{SPCs: []string{"1234"}})
	now := time.Now()
	c := spctoken.Claims{Iat: now.Unix(), Exp: now.Add(time.Hour).Unix(), Iss: "lab", Jti: "j1",
		ATC: spctoken.ATC{TkType: spctoken.TkType, TkValue: tv, Fingerprint: fp}}
	raw, err := spctoken.Sign(c, pa, "https://pa.lab/cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := spctoken.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.VerifySignature(&pa.PublicKey); err != nil {
		t.Fatal(err)
	}
	if err := tok.VerifySignature(&acct.PublicKey); !errors.Is(err, spctoken.ErrSignature) {
		t.Fatalf("foreign key: %v", err)
	}
	w := spctoken.Want{TNAuthList: der, Fingerprint: fp, Now: now}
	if err := tok.Check(w); err != nil {
		t.Fatal(err)
	}
	other, _ := tnauth.Marshal(tnauth.List{SPCs: []string{"5678"}})
	ofp, _ := spctoken.Fingerprint(&pa.PublicKey)
	for _, tc := range []struct {
		w    spctoken.Want
		want error
	}{
		{spctoken.Want{TNAuthList: other, Fingerprint: fp, Now: now}, spctoken.ErrTNAuthList},
		{spctoken.Want{TNAuthList: der, Fingerprint: ofp, Now: now}, spctoken.ErrFingerprint},
		{spctoken.Want{TNAuthList: der, Fingerprint: fp, Now: now.Add(2 * time.Hour)}, spctoken.ErrExpired},
		{spctoken.Want{TNAuthList: der, Fingerprint: fp, Now: now, MinLife: 2 * time.Hour}, spctoken.ErrExpired},
	} {
		if err := tok.Check(tc.w); !errors.Is(err, tc.want) {
			t.Errorf("Check(%+v) = %v, want %v", tc.w, err, tc.want)
		}
	}
	c.ATC.CA = true
	raw2, _ := spctoken.Sign(c, pa, "")
	tok2, _ := spctoken.Parse(raw2)
	if err := tok2.Check(w); !errors.Is(err, spctoken.ErrToken) {
		t.Fatalf("ca token: %v", err)
	}
	if strings.Contains(tok.Redacted(), raw) || !strings.Contains(tok.Redacted(), "jti=j1") {
		t.Fatalf("redacted %q", tok.Redacted())
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "a.b", "a.b.c.d", "!!.e30.AA", strings.Repeat("a", spctoken.MaxLen+1),
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + ".e30." + strings.Repeat("A", 86)} {
		if _, err := spctoken.Parse(s); !errors.Is(err, spctoken.ErrToken) {
			t.Errorf("Parse(%.40q) = %v", s, err)
		}
	}
}

func TestDecodeTkValueAlphabets(t *testing.T) {
	der, _ := tnauth.Marshal(tnauth.List{SPCs: []string{"818H"}})
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		got, l, err := spctoken.DecodeTkValue(enc.EncodeToString(der))
		if err != nil || string(got) != string(der) || l.SPCs[0] != "818H" {
			t.Fatalf("%v: %v %v", enc, l, err)
		}
	}
	// The ATIS example value for OCN 818H.
	if _, l, err := spctoken.DecodeTkValue("MAigBhYEODE4SA=="); err != nil || len(l.SPCs) != 1 || l.SPCs[0] != "818H" {
		t.Fatalf("ATIS example: %v %v", l, err)
	}
	if _, _, err := spctoken.DecodeTkValue("not base64!"); !errors.Is(err, spctoken.ErrToken) {
		t.Fatal(err)
	}
}

func TestFileSourceAndCredentials(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tok")
	if err := os.WriteFile(p, []byte("  a.b.c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := spctoken.FileSource{Path: p}.Token(t.Context(), spctoken.Request{})
	if err != nil || got != "a.b.c" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := (spctoken.FileSource{Path: filepath.Join(dir, "none")}).Token(t.Context(), spctoken.Request{}); !errors.Is(err, spctoken.ErrUnavailable) {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "cred.json")
	_ = os.WriteFile(cp, []byte(`{"user_id":"u","password":"p"}`), 0o600)
	if c, err := spctoken.ReadCredentials(cp); err != nil || c.UserID != "u" || c.Password != "p" {
		t.Fatalf("%+v %v", c, err)
	}
	_ = os.WriteFile(cp, []byte(`{"user_id":"u","pin":"p"}`), 0o600)
	if _, err := spctoken.ReadCredentials(cp); !errors.Is(err, spctoken.ErrCredentials) || strings.Contains(err.Error(), `"p"`) {
		t.Fatal(err)
	}
}
