package nethsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/signertest"
)

// lab is one device with a fresh key, its configuration in NETHSM_CONF.
type lab struct {
	dev *Device
	key *ecdsa.PrivateKey
}

func newLab(t testing.TB, cfg Config) *lab {
	t.Helper()
	mod := Module(t)
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cfg.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg.Pool == 0 {
		cfg.Pool = 4000
	}
	dev, err := NewDevice(dir, mod, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NETHSM_CONF", dev.Conf)
	t.Cleanup(func() { os.Remove(dev.Control) })
	return &lab{dev: dev, key: key}
}

// open opens the device through package hsm's PKCS#11 signer.
func (l *lab) open(t testing.TB, sessions int) *hsm.PKCS11 {
	t.Helper()
	u, err := hsm.ParseURI(l.dev.URI())
	if err != nil {
		t.Fatal(err)
	}
	p, err := hsm.OpenPKCS11(u, hsm.PKCS11Options{Sessions: sessions, Want: &l.key.PublicKey, ReopenMin: 10 * time.Millisecond, ReopenMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

// The module passes the conformance suite every signer passes, through
// package hsm's PKCS#11 signer (one C_SignInit and C_Sign per digest,
// straight through the function list).
func TestConformance(t *testing.T) {
	l := newLab(t, Config{Latency: 200 * time.Microsecond, Jitter: 100 * time.Microsecond})
	p := l.open(t, 4)
	signertest.Run(t, p)
	st, err := l.dev.Stats(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Signs == 0 || st.MaxInFlight < 2 {
		t.Fatalf("stats %+v: want signatures, some in parallel", st)
	}
}

// A C_Sign never answers before the configured latency (a lower bound:
// the emulation sleeps, it cannot be early).
func TestLatencyLowerBound(t *testing.T) {
	const lat = 3 * time.Millisecond
	l := newLab(t, Config{Latency: lat})
	p := l.open(t, 1)
	d := sha256.Sum256([]byte("x"))
	var sig [64]byte
	for range 5 {
		start := time.Now()
		if err := p.SignDigest(context.Background(), &d, &sig); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < lat {
			t.Fatalf("C_Sign answered after %v, before the latency %v", el, lat)
		}
		if !signertest.Verify(&l.key.PublicKey, &d, &sig) {
			t.Fatal("signature does not verify")
		}
	}
}
