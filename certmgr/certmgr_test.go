package certmgr_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/shakenline/shakenline/certmgr"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
	"github.com/shakenline/shakenline/labsti"
	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/verify"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type lab struct {
	*labsti.Server
	dir    string
	client *http.Client
	roots  *x509.CertPool
}

func startLab(t *testing.T, lifetime time.Duration) *lab {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := labsti.New(labsti.Config{Dir: dir, Listen: ln.Addr().String(), CRLListen: cln.Addr().String(),
		Lifetime: lifetime, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, cln) }()
	t.Cleanup(func() { cancel(); <-done })
	l := &lab{Server: s, dir: dir, roots: pool(t, filepath.Join(dir, "root.pem"))}
	l.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(t, filepath.Join(dir, "tls-root.pem"))}}}
	return l
}

func pool(t *testing.T, file string) *x509.CertPool {
	p := x509.NewCertPool()
	b, err := os.ReadFile(file)
	if err != nil || !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s: %v", file, err)
	}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// repo is the built-in repository behind a real http listener.
type repo struct {
	*certmgr.Repository
	url string
}

func startRepo(t *testing.T) *repo {
	r := certmgr.NewRepository("/x5u/")
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &repo{Repository: r, url: srv.URL + "/x5u/"}
}

func softChain(t *testing.T) hsm.Config {
	s, err := hsm.NewSoftware("soft", newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return hsm.Config{Signers: []hsm.SignerConfig{{Name: "soft", Signer: s}}}
}

func config(t *testing.T, l *lab, r *repo, chain hsm.Config) certmgr.Config {
	return certmgr.Config{
		Directory: l.DirectoryURL(), HTTPClient: l.client, AccountKey: newKey(t), SPC: "1234",
		Tokens: &spctoken.APISource{BaseURL: l.PAURL(), Account: "1234", CredentialsFile: l.CredentialsFile("1234"), Client: l.client},
		Trust:  l.roots, Publisher: r, PublishURL: r.url, Fetch: verify.Config{AllowHTTP: true, AllowPrivate: true},
		PublishTimeout: 3 * time.Second, RetryMin: 100 * time.Millisecond, RetireAfter: time.Second,
		StateDir: t.TempDir(), Chain: chain, Logger: quiet,
	}
}

// sign signs through the credential's signer and checks the signature with
// its certificate.
func sign(t *testing.T, c *credential.Credential) {
	t.Helper()
	done := make(chan *hsm.Request, 1)
	r := &hsm.Request{Digest: sha256.Sum256([]byte("passport")), Done: func(r *hsm.Request) { done <- r }}
	if err := c.Signer.Submit(r); err != nil {
		t.Fatal(err)
	}
	<-done
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if !signertest.Verify(c.Leaf().PublicKey.(*ecdsa.PublicKey), &r.Digest, &r.Sig) {
		t.Fatal("the credential's signer does not sign with its certificate's key")
	}
}

func fetch(t *testing.T, url string) (int, []byte) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func counter(name string) float64 {
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			_, _ = fmtSscan(v, &f)
			return f
		}
	}
	return 0
}

// Obtain, renew, retire with a software key: each credential signs with
// its certificate's key, the x5u changes and serves exactly the chain, the
// old certificate stays published RetireAfter and its key file goes with
// it; a new Manager on the same state reopens the current credential.
func TestRenewSoftwareKey(t *testing.T) {
	l := startLab(t, time.Minute)
	r := startRepo(t)
	cfg := config(t, l, r, softChain(t))
	m, err := certmgr.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c1, err := m.Obtain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := credential.NewHolder(nil)
	okBefore := counter(`shakenline_acme_renewals_total{result="ok"}`)
	// Obtain does not switch: the first credential goes in by hand.
	h.Swap(c1)
	sign(t, c1)
	if code, body := fetch(t, c1.X5U()); code != 200 || !bytes.Equal(body, encode(c1.Chain)) {
		t.Fatalf("x5u %s: %d", c1.X5U(), code)
	}
	keys1, _ := filepath.Glob(filepath.Join(cfg.StateDir, "keys", "*.key"))
	if len(keys1) != 1 {
		t.Fatalf("keys %v", keys1)
	}
	if fi, _ := os.Stat(keys1[0]); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode())
	}
	if err := m.Renew(ctx, h); err != nil {
		t.Fatal(err)
	}
	c2 := h.Load()
	if c2 == c1 || c2.X5U() == c1.X5U() || c2.Leaf().SerialNumber.Cmp(c1.Leaf().SerialNumber) == 0 {
		t.Fatal("renewal did not switch to a new certificate and x5u")
	}
	if c2.Leaf().PublicKey.(*ecdsa.PublicKey).Equal(c1.Leaf().PublicKey) {
		t.Fatal("renewal kept the key")
	}
	sign(t, c2)
	sign(t, c1) // calls in flight still finish with the old one
	if got := counter(`shakenline_acme_renewals_total{result="ok"}`); got != okBefore+1 {
		t.Fatalf("ok counter %v, want %v", got, okBefore+1)
	}
	if code, _ := fetch(t, c1.X5U()); code != 200 {
		t.Fatal("the old certificate was unpublished at once")
	}
	// A restart before the old one retires: the same current credential,
	// both still published.
	m2, err := certmgr.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c3, err := m2.Load(ctx)
	if err != nil || c3 == nil || c3.X5U() != c2.X5U() {
		t.Fatalf("Load after restart: %v %v", c3, err)
	}
	sign(t, c3)
	c3.Close()
	// Run retires the old one after RetireAfter.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Run(rctx, h); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := fetch(t, c1.X5U())
		if code == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("old certificate still published after RetireAfter")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
	if _, err := os.Stat(keys1[0]); !os.IsNotExist(err) {
		t.Fatalf("retired key file still there: %v", err)
	}
	if code, _ := fetch(t, c2.X5U()); code != 200 {
		t.Fatal("current certificate not published")
	}
	if st := m.Status(); st.X5U != c2.X5U() || st.Failures != 0 || st.LastSuccess.IsZero() {
		t.Fatalf("status %+v", st)
	}
}

func encode(chain []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range chain {
		b.Write(pemBlock(c.Raw))
	}
	return b.Bytes()
}

// Each failure leaves the credential in use untouched, is counted under
// its stage and reported in Status; the next attempt after the fault
// clears succeeds.
func TestFailuresKeepCurrent(t *testing.T) {
	l := startLab(t, time.Minute)
	r := startRepo(t)
	cfg := config(t, l, r, softChain(t))
	m, err := certmgr.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c1, err := m.Obtain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := credential.NewHolder(c1)
	for _, tc := range []struct {
		component, fault, stage string
	}{
		{"pa", labsti.FaultDown, certmgr.StageToken},
		{"pa", labsti.FaultRefuse, certmgr.StageToken},
		{"ca", labsti.FaultDown, certmgr.StageOrder},
		{"ca", labsti.FaultChallenge, certmgr.StageChallenge},
		{"ca", labsti.FaultWrongTNAuth, certmgr.StageValidate},
		{"ca", labsti.FaultUntrusted, certmgr.StageValidate},
	} {
		name := `shakenline_acme_renewals_total{result="error",stage="` + tc.stage + `"}`
		before := counter(name)
		if err := l.SetFault(tc.component, tc.fault); err != nil {
			t.Fatal(err)
		}
		err := m.Renew(ctx, h)
		_ = l.SetFault(tc.component, "ok")
		if err == nil || certmgr.Stage(err) != tc.stage {
			t.Errorf("%s %s: err %v (stage %q), want stage %s", tc.component, tc.fault, err, certmgr.Stage(err), tc.stage)
		}
		if h.Load() != c1 {
			t.Fatalf("%s %s: the credential in use changed", tc.component, tc.fault)
		}
		if got := counter(name); got != before+1 {
			t.Errorf("%s %s: %s = %v, want %v", tc.component, tc.fault, name, got, before+1)
		}
		if st := m.Status(); st.ErrorStage != tc.stage || st.LastError == "" {
			t.Errorf("%s %s: status %+v", tc.component, tc.fault, st)
		}
		sign(t, h.Load())
	}
	keys, _ := filepath.Glob(filepath.Join(cfg.StateDir, "keys", "*.key"))
	if len(keys) != 1 {
		t.Fatalf("keys of refused certificates left behind: %v", keys)
	}
	if err := m.Renew(ctx, h); err != nil {
		t.Fatal(err)
	}
	if h.Load() == c1 {
		t.Fatal("no switch after the faults cleared")
	}
}

// A certificate that cannot be published is not used; the next attempt
// publishes the same certificate without a new order.
func TestPublishFailureKeepsPending(t *testing.T) {
	l := startLab(t, time.Minute)
	r := startRepo(t)
	cfg := config(t, l, r, softChain(t))
	m, err := certmgr.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c1, err := m.Obtain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := credential.NewHolder(c1)
	// Publish where nobody serves: the copy can never be fetched.
	bad := cfg
	bad.Publisher, bad.PublishTimeout = certmgr.DirPublisher{Dir: t.TempDir()}, 600*time.Millisecond
	mb, err := certmgr.New(bad)
	if err != nil {
		t.Fatal(err)
	}
	issued := l.Issued()
	if err := mb.Renew(ctx, h); certmgr.Stage(err) != certmgr.StagePublish {
		t.Fatalf("unpublishable: %v", err)
	}
	if h.Load() != c1 || l.Issued() != issued+1 {
		t.Fatalf("credential changed or no order (issued %d -> %d)", issued, l.Issued())
	}
	_ = m
}

// A chain with an HSM and a software link cannot rotate: refused at New,
// naming the software link.
func TestRotationRefusedMixedChain(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("mixed", nil)
	soft, _ := hsm.NewSoftware("fallback", tk.Key)
	defer soft.Close()
	l := startLab(t, time.Minute)
	cfg := config(t, l, startRepo(t), hsm.Config{Signers: []hsm.SignerConfig{{Name: "hsm-a", PKCS11: tk.URI()}, {Name: "fallback", Signer: soft}}})
	_, err := certmgr.New(cfg)
	if !errors.Is(err, certmgr.ErrRotation) || !strings.Contains(err.Error(), `"fallback"`) {
		t.Fatalf("err %v", err)
	}
}

// With PKCS#11 the new key is generated in the token (not extractable),
// the CSR signed there; a second link on the same token follows; a link on
// another token that does not see the key makes the rotation fail at the
// key stage, naming it, with the generated key removed again.
func TestRenewPKCS11(t *testing.T) {
	env := softhsmtest.New(t)
	tk := env.NewToken("sti", nil)
	l := startLab(t, time.Minute)
	r := startRepo(t)
	cfg := config(t, l, r, hsm.Config{Signers: []hsm.SignerConfig{{Name: "hsm-a", PKCS11: tk.URI(), Workers: 2}, {Name: "hsm-a2", PKCS11: tk.URI(), Workers: 1}}})
	m, err := certmgr.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c1, err := m.Obtain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	sign(t, c1)
	if c1.Leaf().PublicKey.(*ecdsa.PublicKey).Equal(&tk.Key.PublicKey) {
		t.Fatal("the imported key was reused")
	}
	if keys, _ := filepath.Glob(filepath.Join(cfg.StateDir, "keys", "*")); len(keys) != 0 {
		t.Fatalf("a PKCS#11 rotation wrote key files: %v", keys)
	}
	u, _ := hsm.ParseURI(tk.URI())
	ids := keyIDs(t, cfg.StateDir)
	if ok, err := hsm.HasKey(u, "shakenline-sti", ids[0]); err != nil || !ok {
		t.Fatalf("generated key not in the token: %v %v", ok, err)
	}
	h := credential.NewHolder(c1)
	if err := m.Renew(ctx, h); err != nil {
		t.Fatal(err)
	}
	sign(t, h.Load())
	h.Load().Close()

	other := env.NewToken("other", nil)
	cfg2 := config(t, l, r, hsm.Config{Signers: []hsm.SignerConfig{{Name: "hsm-a", PKCS11: tk.URI()}, {Name: "hsm-b", PKCS11: other.URI()}}})
	m2, err := certmgr.New(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	h2 := credential.NewHolder(c1)
	err = m2.Renew(ctx, h2)
	if certmgr.Stage(err) != certmgr.StageKey || !errors.Is(err, certmgr.ErrRotation) || !strings.Contains(err.Error(), `"hsm-b"`) {
		t.Fatalf("second token: %v", err)
	}
	if n := countKeys(t, u, "shakenline-sti"); n != 2 {
		t.Fatalf("keys labelled shakenline-sti on the token: %d, want 2 (the refused one removed)", n)
	}
}

// Run renews when a third of the lifetime is left, switches without being
// asked, and after a failure retries with backoff (the next attempt
// reported) until it works again.
func TestRunRenewsWhenDue(t *testing.T) {
	l := startLab(t, 3*time.Second)
	r := startRepo(t)
	cfg := config(t, l, r, softChain(t))
	switches := make(chan *credential.Credential, 8)
	cfg.OnSwitch = func(_, cur *credential.Credential) { switches <- cur }
	cfg.RetireAfter = 500 * time.Millisecond
	m, err := certmgr.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := m.Obtain(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	h := credential.NewHolder(c1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { m.Run(ctx, h); close(done) }()
	defer func() { cancel(); <-done }()
	wait := func(what string) *credential.Credential {
		select {
		case c := <-switches:
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("no switch (%s); status %+v", what, m.Status())
		}
		return nil
	}
	c2 := wait("first renewal")
	if c2.X5U() == c1.X5U() {
		t.Fatal("same x5u")
	}
	if left := c1.Leaf().NotAfter.Sub(time.Now()); left < 0 {
		t.Fatalf("renewed after the old certificate expired (%v)", left)
	}
	_ = l.SetFault("ca", labsti.FaultDown)
	deadline := time.Now().Add(10 * time.Second)
	for m.Status().Failures < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no retries while the CA is down: %+v", m.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := m.Status(); st.NextAttempt.Before(time.Now().Add(-time.Second)) || st.ErrorStage != certmgr.StageOrder {
		t.Fatalf("status during the outage: %+v", st)
	}
	_ = l.SetFault("ca", "ok")
	if c3 := wait("after the outage"); c3.X5U() == c2.X5U() {
		t.Fatal("same x5u after the outage")
	}
}
