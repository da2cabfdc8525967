package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/shakenline/shakenline/internal/prereq"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/kamailio"
)

// TestKamailioVerifiesHTTPSigned has an HTTP-signed PASSporT checked by an
// independent implementation: Kamailio's secsipid module (libsecsipid)
// with the provider's public key. A good Identity is forwarded with
// "X-Identity-Check: ok"; a tampered one gets 438.
func TestKamailioVerifiesHTTPSigned(t *testing.T) {
	prereq.Need(t, kamailio.Available())
	e := newEnv(t, nil)
	r := e.do(t, "POST", "/stir/v1/signing", signBody("A", "12155550100", []string{"12155550199"}, time.Now().Unix(), ""))
	if r.status != 200 {
		t.Fatalf("signing: %d %s", r.status, r.body)
	}
	var out struct {
		R struct{ Identity string } `json:"signingResponse"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&e.h.SPKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "sp.pub")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	next := udp(t)
	client := udp(t)
	listenC := udp(t)
	listen := listenC.LocalAddr().(*net.UDPAddr).AddrPort()
	listenC.Close()
	p, err := kamailio.Start(context.Background(), kamailio.Options{Listen: listen,
		NextHop: next.LocalAddr().(*net.UDPAddr).AddrPort(), VerifyKeyPath: pub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Log(p.Log())
		}
	})
	send := func(identity, branch string) {
		cl := client.LocalAddr().(*net.UDPAddr).AddrPort()
		msg := fmt.Sprintf("INVITE sip:+12155550199@127.0.0.1 SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
			"From: <sip:+12155550100@127.0.0.1;user=phone>;tag=a1\r\nTo: <sip:+12155550199@127.0.0.1;user=phone>\r\n"+
			"Call-ID: %s@interop\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@%s>\r\nIdentity: %s\r\nContent-Length: 0\r\n\r\n",
			cl, branch, branch, cl, identity)
		if _, err := client.WriteToUDPAddrPort([]byte(msg), p.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 65536)
	read := func(c *net.UDPConn) string {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("nothing from Kamailio: %v\n%s", err, p.Log())
		}
		return string(buf[:n])
	}
	send(out.R.Identity, "good1")
	if got := read(next); !strings.HasPrefix(got, "INVITE ") || !strings.Contains(got, "X-Identity-Check: ok") {
		t.Fatalf("Kamailio did not pass the HTTP-signed INVITE:\n%s", got)
	}
	// flip a signature byte: secsipid must refuse it
	id := []byte(out.R.Identity)
	sig := bytes.LastIndexByte(id[:bytes.IndexByte(id, ';')], '.') + 5
	if id[sig] == 'A' {
		id[sig] = 'B'
	} else {
		id[sig] = 'A'
	}
	send(string(id), "bad1")
	if got := read(client); !strings.HasPrefix(got, "SIP/2.0 438") {
		t.Fatalf("tampered Identity: want 438, got:\n%s", got)
	}
}

func udp(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
