package credential

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(p256)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(p256)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	cases := []struct {
		name, content, wantErr string
	}{
		{"sec1", pemOf("EC PRIVATE KEY", sec1), ""},
		{"pkcs8-after-cert", pemOf("CERTIFICATE", []byte{1, 2}) + pemOf("PRIVATE KEY", pkcs8), ""},
		{"p384", pemOf("PRIVATE KEY", p384der), "not an ECDSA P-256 key"},
		{"garbage", pemOf("PRIVATE KEY", []byte("secret-bytes")), "unreadable private key"},
		{"none", "nothing here", "no private key in PEM"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.name+".pem")
		if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := ReadKeyFile(path)
		if c.wantErr == "" {
			if err != nil || !k.Equal(p256) {
				t.Errorf("%s: got %v, %v; want the key", c.name, k, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want %q naming the file", c.name, err, c.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secret-bytes") {
			t.Errorf("%s: the error shows the file's content: %v", c.name, err)
		}
	}
}
