package hsm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

// TestPKCS11ThroughP11KitServer signs through p11-kit-client.so -> p11-kit
// server (another process) -> SoftHSM: the layout of a network HSM. Every
// signature must verify with the token's certificate.
func TestPKCS11ThroughP11KitServer(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("remote", nil)
	srv := env.Serve(t, tk, -1)
	c, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{PKCS11: tk.URIWith(srv.Module), Workers: 2}}}, tk.Cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if h := c.Health(); !h[0].Ready {
		t.Fatalf("health %+v", h)
	}
	pub := tk.Cert.PublicKey.(*ecdsa.PublicKey)
	const n = 64
	reqs := make([]hsm.Request, n)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range reqs {
		reqs[i].Digest = sha256.Sum256(fmt.Appendf(nil, "claims %d", i))
		reqs[i].Done = func(*hsm.Request) { wg.Done() }
		if err := c.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i := range reqs {
		r := &reqs[i]
		if r.Err != nil || r.SignedBy != "pkcs11:remote" {
			t.Fatalf("request %d: err %v by %q", i, r.Err, r.SignedBy)
		}
		if !signertest.Verify(pub, &r.Digest, &r.Sig) {
			t.Fatalf("request %d: signature does not verify with the certificate", i)
		}
	}
	// The server going away is a lost session: the signer fails fast
	// instead of hanging.
	srv.Stop()
	done := make(chan *hsm.Request, 1)
	r := &hsm.Request{Digest: sha256.Sum256([]byte("after")), Done: func(r *hsm.Request) { done <- r }}
	if err := c.Submit(r); err == nil {
		if r = <-done; r.Err == nil {
			t.Fatal("signed with the server stopped")
		}
	}
}

// TestP11KitServerHangs stops the p11-kit server (SIGSTOP) while calls flow:
// the batches in flight on the HSM's sessions hang in C_Sign, the monitor
// takes them away after the link's timeout and the software fallback (same
// key) signs them; no call goes unsigned. After SIGCONT the HSM signs again.
func TestP11KitServerHangs(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("hang", nil)
	srv := env.Serve(t, tk, -1)
	soft, err := hsm.NewSoftware("soft", tk.Key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { soft.Close() })
	c, err := hsm.New(context.Background(), hsm.Config{
		Budget:  2 * time.Second,
		Breaker: hsm.Breaker{Failures: 2, OpenFor: 100 * time.Millisecond, HalfOpenProbes: 1},
		Signers: []hsm.SignerConfig{
			{PKCS11: tk.URIWith(srv.Module), Workers: 2, Timeout: 50 * time.Millisecond},
			{Signer: soft, Workers: 2},
		},
	}, tk.Cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pub := &tk.Key.PublicKey
	l := runLoad(t, c, pub, 8, 100000, 10*time.Second, func(l *load) bool { return l.count("pkcs11:hang") >= 100 })
	if len(l.unsigned) != 0 || l.bad != 0 {
		t.Fatalf("before the hang: %v unsigned %v bad %d", l.bySigner, l.unsigned, l.bad)
	}
	srv.Pause()
	l = runLoad(t, c, pub, 8, 300, 10*time.Second, never)
	if len(l.unsigned) != 0 || l.bad != 0 || l.count("soft") == 0 {
		t.Fatalf("server stopped: %v unsigned %v bad %d", l.bySigner, l.unsigned, l.bad)
	}
	if hs := c.Health(); hs[0].State == hsm.StateClosed && hs[0].Ready {
		t.Fatalf("HSM link looks healthy while its server is stopped: %+v", hs[0])
	}
	srv.Resume()
	l = runLoad(t, c, pub, 8, 100000, 10*time.Second, func(l *load) bool { return l.count("pkcs11:hang") >= 20 })
	if len(l.unsigned) != 0 || l.bad != 0 || l.count("pkcs11:hang") < 20 {
		t.Fatalf("after SIGCONT: %v unsigned %v bad %d", l.bySigner, l.unsigned, l.bad)
	}
}
