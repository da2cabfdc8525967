package es256

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shakenline/shakenline/internal/p256"
	"github.com/shakenline/shakenline/internal/p256/p256test"
	"github.com/shakenline/shakenline/internal/prereq"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keyFromScalar builds a P-256 key with private scalar d.
func keyFromScalar(t testing.TB, d *big.Int) *ecdsa.PrivateKey {
	t.Helper()
	var b [32]byte
	d.FillBytes(b[:])
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSigner(t testing.TB, key *ecdsa.PrivateKey, o Options) *Signer {
	t.Helper()
	s, err := New(key, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func verify(t testing.TB, pub *ecdsa.PublicKey, digest *[32]byte, sig *[64]byte) {
	t.Helper()
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		t.Fatalf("signature %x over %x does not verify", sig, digest)
	}
}

// edgeDigests are digests whose integer value sits at the reduction
// boundaries of SEC 1 section 4.1.3 step 5: 0, 1, n-1, n, n+1, 2²⁵⁶-1, and
// values at limb edges.
func edgeDigests() [][32]byte {
	vals := []*big.Int{
		big.NewInt(0), big.NewInt(1),
		new(big.Int).Sub(p256test.N, big.NewInt(1)),
		new(big.Int).Set(p256test.N),
		new(big.Int).Add(p256test.N, big.NewInt(1)),
		new(big.Int).Sub(p256test.R, big.NewInt(1)),
		new(big.Int).Sub(p256test.P, big.NewInt(1)),
		new(big.Int).SetUint64(0xffffffffffffffff),
		new(big.Int).Lsh(big.NewInt(1), 255),
	}
	out := make([][32]byte, 0, len(vals)+2)
	for _, v := range vals {
		var d [32]byte
		v.FillBytes(d[:])
		out = append(out, d)
	}
	out = append(out, sha256.Sum256([]byte("INVITE sip:+12155550100@example.net")))
	out = append(out, sha256.Sum256(nil))
	return out
}

// edgeKeys covers d = 1, 2, n-1, n-2, (n-1)/2 and a random key.
func edgeKeys(t *testing.T) []*ecdsa.PrivateKey {
	ds := []*big.Int{
		big.NewInt(1), big.NewInt(2),
		new(big.Int).Sub(p256test.N, big.NewInt(1)),
		new(big.Int).Sub(p256test.N, big.NewInt(2)),
		new(big.Int).Rsh(p256test.N, 1),
	}
	keys := []*ecdsa.PrivateKey{newKey(t)}
	for _, d := range ds {
		keys = append(keys, keyFromScalar(t, d))
	}
	return keys
}

func TestSignVerifiesWithCryptoECDSA(t *testing.T) {
	for _, key := range edgeKeys(t) {
		for _, o := range []Options{{PoolSize: 32, BatchSize: 8}, {Workers: -1, BatchSize: 5}} {
			s := newSigner(t, key, o)
			for _, d := range edgeDigests() {
				for range 3 {
					var sig [64]byte
					if err := s.Sign(&d, &sig); err != nil {
						t.Fatal(err)
					}
					verify(t, &key.PublicKey, &d, &sig)
				}
			}
		}
	}
}

// TestPortableMatchesJacobian runs the same nonces through the Jacobian
// fast path and the portable BytesX path and expects identical tokens.
func TestPortableMatchesJacobian(t *testing.T) {
	if p256.JacobianOK() != p256.JacobianAvailable {
		t.Fatalf("Jacobian self-test failed on an architecture with the assembly backend")
	}
	if !p256.JacobianAvailable {
		t.Skip("no assembly backend: only the portable path exists")
	}
	key := newKey(t)
	s := newSigner(t, key, Options{Workers: -1})
	const n = 40
	fast, slow := newBatch(n), newBatch(n)
	fast.jacobian, slow.jacobian = true, false
	if err := fast.drawK(n); err != nil {
		t.Fatal(err)
	}
	copy(slow.kbuf, fast.kbuf)
	copy(slow.k, fast.k)
	fast.dM, slow.dM = s.dM, s.dM
	if a, b := fast.finish(n, false), slow.finish(n, false); a != n || b != n {
		t.Fatalf("made %d and %d tokens, want %d", a, b, n)
	}
	for i := 0; i < n; i++ {
		if fast.toks[i] != slow.toks[i] {
			t.Fatalf("token %d differs between the Jacobian and BytesX paths", i)
		}
	}
	fast.wipe()
	if !bytes.Equal(fast.kbuf, make([]byte, len(fast.kbuf))) || fast.toks[0] != (token{}) || fast.dM != (p256.Elem{}) {
		t.Fatal("batch.wipe left secrets behind")
	}
}

func TestCloseWipesAndRefuses(t *testing.T) {
	key := newKey(t)
	s, err := New(key, Options{PoolSize: 256, Workers: 2, BatchSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	waitPooled(t, s, 64)
	s.Close()
	s.Close() // idempotent
	s.mu.Lock()
	for i := range s.pool {
		if s.pool[i] != (token{}) {
			t.Fatalf("slot %d survived Close", i)
		}
	}
	if s.dM != (p256.Elem{}) {
		t.Fatal("private scalar survived Close")
	}
	s.mu.Unlock()
	var d [32]byte
	var sig [64]byte
	if err := s.Sign(&d, &sig); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sign after Close = %v, want ErrClosed", err)
	}
	st := s.Stats()
	if st.Pooled != 0 || st.TokensMade != st.TokensUsed+st.TokensDiscarded {
		t.Fatalf("counters after Close: %+v", st)
	}
}

func TestNewRejects(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mismatched := newKey(t)
	mismatched.PublicKey = newKey(t).PublicKey
	cases := []struct {
		name string
		key  *ecdsa.PrivateKey
		o    Options
		want error
	}{
		{"nil key", nil, Options{}, ErrKey},
		{"P-384", p384, Options{}, ErrCurve},
		{"mismatched public key", mismatched, Options{}, ErrKey},
		{"negative pool", newKey(t), Options{PoolSize: -1}, ErrOptions},
		{"huge pool", newKey(t), Options{PoolSize: MaxPoolSize + 1}, ErrOptions},
		{"too many workers", newKey(t), Options{Workers: MaxWorkers + 1}, ErrOptions},
		{"negative batch", newKey(t), Options{BatchSize: -3}, ErrOptions},
		{"huge batch", newKey(t), Options{BatchSize: MaxBatchSize + 1}, ErrOptions},
	}
	for _, c := range cases {
		s, err := New(c.key, c.o)
		if !errors.Is(err, c.want) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%s: New = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	s := newSigner(t, newKey(t), Options{})
	if len(s.pool) != DefaultPoolSize || s.batchSize != DefaultBatchSize || s.lowWater != DefaultPoolSize/2 {
		t.Fatalf("defaults: pool %d batch %d low water %d", len(s.pool), s.batchSize, s.lowWater)
	}
	s2 := newSigner(t, newKey(t), Options{PoolSize: 10, BatchSize: 100})
	if s2.batchSize != 10 || s2.inlineBatch != 10 {
		t.Fatalf("BatchSize not clamped to PoolSize: %d/%d", s2.batchSize, s2.inlineBatch)
	}
}

// TestOpenSSLVerifies checks signatures (edge digests and keys included)
// with the openssl command line: raw digests with pkeyutl, a message with
// dgst -sha256, and a corrupted signature that must be rejected.
func TestOpenSSLVerifies(t *testing.T) {
	openssl := prereq.Tool(t, "openssl")
	dir := t.TempDir()
	run := func(args ...string) error {
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	der := func(sig *[64]byte) []byte {
		b, err := asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]),
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keys := edgeKeys(t)
	for ki, key := range []*ecdsa.PrivateKey{keys[0], keys[1], keys[3]} {
		pkix, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		pub := write("pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}))
		s := newSigner(t, key, Options{PoolSize: 16, BatchSize: 4})
		for di, d := range edgeDigests() {
			var sig [64]byte
			if err := s.Sign(&d, &sig); err != nil {
				t.Fatal(err)
			}
			in := write("digest.bin", d[:])
			sigFile := write("sig.der", der(&sig))
			if err := run("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-in", in, "-sigfile", sigFile); err != nil {
				t.Fatalf("key %d digest %d (%x): openssl rejects: %v", ki, di, d, err)
			}
		}
		msg := []byte("INVITE sip:+12155550100@example.net SIP/2.0")
		d := sha256.Sum256(msg)
		var sig [64]byte
		if err := s.Sign(&d, &sig); err != nil {
			t.Fatal(err)
		}
		msgFile := write("msg.txt", msg)
		sigFile := write("sig.der", der(&sig))
		if err := run("dgst", "-sha256", "-verify", pub, "-signature", sigFile, msgFile); err != nil {
			t.Fatalf("key %d: openssl dgst rejects: %v", ki, err)
		}
		sig[63] ^= 1
		sigFile = write("sig.der", der(&sig))
		if err := run("dgst", "-sha256", "-verify", pub, "-signature", sigFile, msgFile); err == nil {
			t.Fatalf("key %d: openssl accepted a corrupted signature", ki)
		}
	}
}

// FuzzSign signs arbitrary digests and verifies each with crypto/ecdsa.
func FuzzSign(f *testing.F) {
	for _, d := range edgeDigests() {
		f.Add(d[:])
	}
	key := newKey(f)
	s := newSigner(f, key, Options{PoolSize: 256})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d [32]byte
		copy(d[:], b)
		var sig [64]byte
		if err := s.Sign(&d, &sig); err != nil {
			t.Fatal(err)
		}
		verify(t, &key.PublicKey, &d, &sig)
	})
}

func TestTrySign(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// No workers: the pool is only filled by Sign's inline batches.
	s, err := New(key, Options{Workers: -1, PoolSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var d [32]byte
	var sig [64]byte
	if ok, err := s.TrySign(&d, &sig); ok || err != nil {
		t.Fatalf("TrySign on an empty pool: %v %v", ok, err)
	}
	if s.Stats().TokensMade != 0 {
		t.Fatal("TrySign computed tokens")
	}
	if err := s.Sign(&d, &sig); err != nil { // fills the pool with an inline batch
		t.Fatal(err)
	}
	d[0] = 7
	ok, err := s.TrySign(&d, &sig)
	if !ok || err != nil {
		t.Fatalf("TrySign with tokens pooled: %v %v", ok, err)
	}
	r, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(&key.PublicKey, d[:], r, ss) {
		t.Fatal("TrySign signature does not verify")
	}
	s.Close()
	if _, err := s.TrySign(&d, &sig); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
