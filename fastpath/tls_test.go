package fastpath

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/labpki"
)

// tlsPKI is a CA with certificates for SIP over TLS on 127.0.0.1.
type tlsPKI struct {
	ca   *labpki.CA
	pool *x509.CertPool
}

func newTLSPKI(t testing.TB) *tlsPKI {
	ca, err := labpki.NewCA("SIP TLS test CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &tlsPKI{ca: ca, pool: x509.NewCertPool()}
	p.pool.AddCert(ca.Cert)
	return p
}

// cert issues a certificate for ips, valid from nb to na.
func (p *tlsPKI) cert(t testing.TB, ips []string, nb, na time.Time) tls.Certificate {
	var addrs []net.IP
	for _, a := range ips {
		addrs = append(addrs, net.ParseIP(a))
	}
	c, k, err := p.ca.IssueTLS("sip", addrs, nil, nb, na)
	if err != nil {
		t.Fatal(err)
	}
	return tlsCert(c, k)
}

func (p *tlsPKI) good(t testing.TB) tls.Certificate {
	return p.cert(t, []string{"127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

func tlsCert(c *x509.Certificate, k *ecdsa.PrivateKey) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
}

// tlsListener is a TLS next hop on loopback presenting cert.
func tlsListener(t testing.TB, cert tls.Certificate, cfg *tls.Config) (net.Listener, chan *streamPeer) {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.Certificates = []tls.Certificate{cert}
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan *streamPeer, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- newStreamPeer(t, c)
		}
	}()
	return ln, peers
}

func viaTLS(b []byte) []byte {
	return bytes.Replace(b, []byte("Via: SIP/2.0/UDP"), []byte("Via: SIP/2.0/TLS"), 1)
}

// TLS in and TLS to the next hop, the next hop's certificate verified
// against tls_ca; the response goes back on the client's connection.
func TestTLSProxy(t *testing.T) {
	pki := newTLSPKI(t)
	var peers chan *streamPeer
	te := start(t, Proxy, func(c *Config, te *testEnv) {
		var ln net.Listener
		ln, peers = tlsListener(t, pki.good(t), nil)
		c.NextHop, c.NextHopTransport = ln.Addr().(*net.TCPAddr).AddrPort(), TLS
		c.ListenTLS = freePort(t)
		c.TLSServer = &tls.Config{Certificates: []tls.Certificate{pki.good(t)}}
		c.TLSClient = &tls.Config{RootCAs: pki.pool}
	})
	tc, err := tls.Dial("tcp4", te.srv.cfg.ListenTLS.String(), &tls.Config{RootCAs: pki.pool})
	if err != nil {
		t.Fatal(err)
	}
	cl := newStreamPeer(t, tc)
	local := tc.LocalAddr().(*net.TCPAddr).AddrPort()
	cl.send(t, viaTLS(invite(local, "tls1", "")))
	next := acceptPeer(t, peers)
	got := next.recv(t)
	verifyIdentity(t, te, got)
	want := "SIP/2.0/TLS " + netip.AddrPortFrom(te.addr.Addr(), te.srv.cfg.ListenTLS.Port()).String() + ";branch=z9hG4bKsl"
	if v := header(got, "Via"); len(v) != 2 || !strings.HasPrefix(v[0], want) || !strings.Contains(v[0], ";i=") {
		t.Fatalf("our Via: %q, want %s...", v, want)
	}
	next.send(t, respondTo(got, "200 OK"))
	if back := cl.recv(t); !bytes.HasPrefix(back, []byte("SIP/2.0 200 ")) || len(header(back, "Via")) != 1 {
		t.Fatalf("client got:\n%s", back)
	}
	if v := tc.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("a default client negotiated %x, want TLS 1.3", v)
	}
	// TLS 1.2 is served (a call on it goes through); TLS 1.1 is refused.
	tc12, err := tls.Dial("tcp4", te.srv.cfg.ListenTLS.String(), &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	cl12 := newStreamPeer(t, tc12)
	cl12.send(t, viaTLS(invite(tc12.LocalAddr().(*net.TCPAddr).AddrPort(), "tls12", "")))
	// It may leave on another TLS loop's connection to the next hop.
	var got12 []byte
	next12 := next
	select {
	case got12 = <-next.msgs:
	case next12 = <-peers:
		got12 = next12.recv(t)
	case <-time.After(5 * time.Second):
		t.Fatal("the TLS 1.2 call did not reach the next hop")
	}
	verifyIdentity(t, te, got12)
	next12.send(t, respondTo(got12, "200 OK"))
	if back := cl12.recv(t); !bytes.HasPrefix(back, []byte("SIP/2.0 200 ")) {
		t.Fatalf("TLS 1.2 client got:\n%s", back)
	}
	if c, err := tls.Dial("tcp4", te.srv.cfg.ListenTLS.String(), &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

// The next hop's certificate is always verified: expired, issued for
// another address, or from an untrusted CA, the handshake fails, counted;
// the call gets 503 once the address is known down, and readiness says
// why.
func TestTLSNextHopCertificateRefused(t *testing.T) {
	pki := newTLSPKI(t)
	other := newTLSPKI(t)
	now := time.Now()
	cases := map[string]tls.Certificate{
		"expired":    pki.cert(t, []string{"127.0.0.1"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour)),
		"wrong-name": pki.cert(t, []string{"127.0.0.9"}, now.Add(-time.Hour), now.Add(time.Hour)),
		"untrusted":  other.good(t),
	}
	for name, cert := range cases {
		t.Run(name, func(t *testing.T) {
			var peers chan *streamPeer
			te := start(t, Proxy, func(c *Config, te *testEnv) {
				var ln net.Listener
				ln, peers = tlsListener(t, cert, nil)
				c.NextHop, c.NextHopTransport = ln.Addr().(*net.TCPAddr).AddrPort(), TLS
				c.TLSClient = &tls.Config{RootCAs: pki.pool}
			})
			before, errs := mTLSHandshakeErrors[1].Get(), mConnectErrors[TLS].Get()
			ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
			te.send(t, invite(ca, "bad-"+name, ""))
			deadline := time.Now().Add(5 * time.Second)
			for mConnectErrors[TLS].Get() == errs && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if mTLSHandshakeErrors[1].Get() == before || mConnectErrors[TLS].Get() == errs {
				t.Fatal("handshake error not counted")
			}
			select {
			case p := <-peers:
				if m, ok := <-p.msgs; ok {
					t.Fatalf("the next hop got a message over a refused connection:\n%s", m)
				}
			case <-time.After(100 * time.Millisecond):
			}
			te.send(t, invite(ca, "bad2-"+name, ""))
			got, _ := recv(t, te.client)
			if !bytes.HasPrefix(got, []byte("SIP/2.0 503 ")) {
				t.Fatalf("want 503:\n%s", got)
			}
			err := te.srv.NextHopReady()
			var ce *tls.CertificateVerificationError
			if err == nil || !errors.As(err, &ce) && !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("readiness: %v", err)
			}
		})
	}
}

// tls_client_auth: require: a client without a certificate, or with one
// from a CA not in tls_ca, is refused; one with a good certificate is
// served.
func TestTLSClientAuthRequired(t *testing.T) {
	pki := newTLSPKI(t)
	other := newTLSPKI(t)
	te := start(t, Proxy, func(c *Config, te *testEnv) {
		c.ListenTLS = freePort(t)
		c.TLSServer = &tls.Config{Certificates: []tls.Certificate{pki.good(t)},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool}
	})
	addr := te.srv.cfg.ListenTLS.String()
	try := func(certs []tls.Certificate) error {
		tc, err := tls.Dial("tcp4", addr, &tls.Config{RootCAs: pki.pool, Certificates: certs})
		if err != nil {
			return err
		}
		defer tc.Close()
		local := tc.LocalAddr().(*net.TCPAddr).AddrPort()
		if _, err := tc.Write(viaTLS(invite(local, "mtls-"+local.String(), ""))); err != nil {
			return err
		}
		// TLS 1.3: the server's verdict on our certificate comes with
		// our first read.
		_ = tc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = tc.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil // still open: accepted
		}
		return err
	}
	if err := try(nil); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	noRecv(t, te.next, 100*time.Millisecond)
	if err := try([]tls.Certificate{other.good(t)}); err == nil {
		t.Fatal("a client with an untrusted certificate was served")
	}
	noRecv(t, te.next, 100*time.Millisecond)
	if err := try([]tls.Certificate{pki.good(t)}); err != nil {
		t.Fatalf("a client with a good certificate: %v", err)
	}
	got, _ := recv(t, te.next)
	verifyIdentity(t, te, got)
}
