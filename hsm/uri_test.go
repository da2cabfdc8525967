package hsm_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shakenline/shakenline/hsm"
)

func TestParseURI(t *testing.T) {
	u, err := hsm.ParseURI("pkcs11:token=My%20Token;object=shaken;id=%01%ff;type=private;slot-id=7" +
		"?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/shakenline/pin")
	if err != nil {
		t.Fatal(err)
	}
	if u.Token != "My Token" || u.Object != "shaken" || !bytes.Equal(u.ID, []byte{1, 0xff}) || u.Type != "private" ||
		!u.HasSlotID || u.SlotID != 7 || u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" || u.PINSource != "/etc/shakenline/pin" {
		t.Fatalf("parsed %+v", u)
	}
	// Round trip through String.
	v, err := hsm.ParseURI(u.String())
	if err != nil {
		t.Fatalf("%s: %v", u.String(), err)
	}
	if v.String() != u.String() || !bytes.Equal(v.ID, u.ID) || v.Token != u.Token {
		t.Fatalf("round trip %q -> %+v", u.String(), v)
	}
	if u, err := hsm.ParseURI("pkcs11:object=k?pin-source=file:///run/pin&module-path=/m.so"); err != nil || u.PINSource != "/run/pin" {
		t.Fatalf("file:/// form: %+v %v", u, err)
	}
}

func TestParseURIErrors(t *testing.T) {
	for _, s := range []string{
		"pkcs12:token=a",
		"token=a",
		"pkcs11:token=a;token=b",
		"pkcs11:token",
		"pkcs11:bogus=1",
		"pkcs11:id=%zz",
		"pkcs11:id=%0",
		"pkcs11:slot-id=x",
		"pkcs11:type=cert",
		"pkcs11:type=nonsense",
		"pkcs11:token=a?pin-source=",
		"pkcs11:token=a?pin-source=|/bin/pinentry",
		"pkcs11:token=a?unknown=1",
	} {
		if _, err := hsm.ParseURI(s); !errors.Is(err, hsm.ErrURI) {
			t.Errorf("%q: err %v, want ErrURI", s, err)
		}
	}
	// A PIN on the command line is refused outright, and not echoed.
	_, err := hsm.ParseURI("pkcs11:token=a?pin-value=s3cret")
	if !errors.Is(err, hsm.ErrPINValue) || bytes.Contains([]byte(err.Error()), []byte("s3cret")) {
		t.Fatalf("pin-value: %v", err)
	}
	// Vendor attributes are ignored.
	if _, err := hsm.ParseURI("pkcs11:x-vendor=1;token=a?x-q=2"); err != nil {
		t.Fatal(err)
	}
}

func TestURIPIN(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"lf": "1234\n", "crlf": "1234\r\n", "none": "1234"} {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		u, err := hsm.ParseURI("pkcs11:token=a?module-path=/m.so&pin-source=file:" + f)
		if err != nil {
			t.Fatal(err)
		}
		pin, err := u.PIN()
		if err != nil || pin != "1234" {
			t.Errorf("%s: pin %q err %v", name, pin, err)
		}
	}
	u, _ := hsm.ParseURI("pkcs11:token=a?module-path=/m.so")
	if _, err := u.PIN(); !errors.Is(err, hsm.ErrNoPIN) {
		t.Fatalf("no pin-source: %v", err)
	}
	u, _ = hsm.ParseURI("pkcs11:token=a?module-path=/m.so&pin-source=file:" + filepath.Join(dir, "missing"))
	if _, err := u.PIN(); err == nil {
		t.Fatal("missing PIN file accepted")
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=a;object=b;id=%01?module-path=/m.so&pin-source=file:/p",
		"pkcs11:",
		"pkcs11:slot-id=1;type=private",
		"pkcs11:id=%0",
		"PKCS11:token=%41",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := hsm.ParseURI(s)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip through String.
		v, err := hsm.ParseURI(u.String())
		if err != nil {
			t.Fatalf("%q -> %q: %v", s, u.String(), err)
		}
		if v.String() != u.String() {
			t.Fatalf("round trip %q != %q", v.String(), u.String())
		}
	})
}
