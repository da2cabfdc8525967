package hsm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

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
