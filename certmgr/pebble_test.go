package certmgr

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/spctoken"
)

// pebbleAddr is the loopback address of this package's pebble runs.
const pebbleAddr = "127.0.118.1"

// pebble runs Debian's pebble (an independent RFC 8555 server, for DNS
// identifiers) on loopback with PEBBLE_VA_ALWAYS_VALID=1: every challenge
// answered is judged valid without a validation request. It returns the
// directory URL, an https client trusting pebble's listener and pebble's
// issuing root.
func pebble(t *testing.T) (string, *http.Client, *x509.CertPool) {
	bin := prereq.Tool(t, "pebble")
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pebble test TLS root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: pebbleAddr},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP(pebbleAddr)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	port := func() int {
		l, err := net.Listen("tcp", pebbleAddr+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	api, mgmt := port(), port()
	cfg, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("%s:%d", pebbleAddr, api),
		"managementListenAddress": fmt.Sprintf("%s:%d", pebbleAddr, mgmt),
		"certificate":             certFile, "privateKey": keyFile,
		"httpPort": port(), "tlsPort": port(), "ocspResponderURL": "", "externalAccountBindingRequired": false,
	}})
	cfgFile := filepath.Join(dir, "pebble.json")
	_ = os.WriteFile(cfgFile, cfg, 0o600)
	var out bytes.Buffer
	cmd := exec.Command(bin, "-config", cfgFile)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that started the child exits, not
	// the process: the child is started from a thread kept for the test.
	started, release := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		started <- cmd.Start()
		<-release
		runtime.UnlockOSThread()
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		close(release)
		if t.Failed() {
			t.Logf("pebble output:\n%s", out.String())
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	dirURL := fmt.Sprintf("https://%s:%d/dir", pebbleAddr, api)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get(dirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not answering at %s: %v\n%s", dirURL, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := hc.Get(fmt.Sprintf("https://%s:%d/roots/0", pebbleAddr, mgmt))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	issuing := x509.NewCertPool()
	if !issuing.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: %s", b)
	}
	return dirURL, hc, issuing
}

// The ACME path certmgr shares with every CA (account, order, challenge
// answer and polling, finalize, chain download; nonces, JWS) against
// pebble, an independent server: with a file account key, and with an
// account key in a PKCS#11 token, whose signatures (raw r||s through
// jwsSigner) pebble verifies.
func TestCommonPathAgainstPebble(t *testing.T) {
	dirURL, hc, issuing := pebble(t)
	env := softhsmtest.New(t)
	tk := env.NewToken("acct", nil)
	// The imported key of the token is labelled "shaken"; the account key
	// is generated next to it under its own label.
	u, _ := hsm.ParseURI(tk.URI())
	u.Object, u.ID = "acme-account", nil
	hsmAcct, closeAcct, err := AccountKeyPKCS11(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer closeAcct()
	fileAcct, err := AccountKeyFile(filepath.Join(t.TempDir(), "account.key"))
	if err != nil {
		t.Fatal(err)
	}
	for name, signer := range map[string]crypto.Signer{"file": fileAcct, "pkcs11": hsmAcct} {
		soft, _ := hsm.NewSoftware("soft", mustKey(t))
		m, err := New(Config{Directory: dirURL, HTTPClient: hc, AccountKey: signer, SPC: "1234",
			Tokens: spctoken.FileSource{Path: "/nonexistent"}, Trust: issuing, Publisher: NewRepository("/"), PublishURL: "https://x/",
			StateDir: t.TempDir(), Chain: hsm.Config{Signers: []hsm.SignerConfig{{Signer: soft}}},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		m.solve = func(ctx context.Context, c *acme.Client, acct acme.Account, az acme.Authorization) error {
			for _, ch := range az.Challenges {
				if ch.Type == acme.ChallengeTypeHTTP01 {
					if _, err := c.InitiateChallenge(ctx, acct, ch); err != nil {
						return err
					}
					_, err := c.PollAuthorization(ctx, acct, az)
					return err
				}
			}
			return fmt.Errorf("no http-01 challenge")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		acct, err := m.account(ctx)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", name, err)
		}
		key := mustKey(t)
		chain, err := m.order(ctx, acct, []acme.Identifier{{Type: "dns", Value: "sti.shakenline.test"}}, "", func() ([]byte, error) {
			return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"sti.shakenline.test"}}, key)
		})
		cancel()
		_ = soft.Close()
		if err != nil {
			t.Fatalf("%s account key: %v", name, err)
		}
		leaf := chain[0]
		if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "sti.shakenline.test" {
			t.Fatalf("%s: leaf %v %v", name, leaf.DNSNames, leaf.PublicKey)
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: issuing, Intermediates: inter}); err != nil {
			t.Fatalf("%s: chain does not verify to pebble's root: %v", name, err)
		}
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
