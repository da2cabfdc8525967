package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/kamailio"
	"github.com/shakenline/shakenline/internal/prereq"
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
	pub := publicKeyFile(t, e)
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

func udp(t *testing.T) *net.UDPConn { return udpOn(t, "127.0.0.1") }

func udpOn(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// worldLoopback is TestKamailioVerifiesWorldwide's own loopback address:
// other packages' tests reserve ports on 127.0.0.1 by binding and closing
// them; they cannot reach a Kamailio or a socket here.
const worldLoopback = "127.0.83.2"

// TestKamailioVerifiesWorldwide signs, over the API, calls between the
// numbers of 31 countries and networks (worldNumbers) and has each
// PASSporT checked by an independent implementation: one Kamailio with the
// secsipid module (libsecsipid, the secsipidx implementation) verifies the
// signature of every INVITE that carries it, and decodes the payload
// itself (X-Identity-Payload); the test compares that payload's orig and
// dest with the INVITE's From and To (E.164 digits without '+', RFC 8224
// section 8.3) and with what the test's own decoder reads from the
// Identity header.
func TestKamailioVerifiesWorldwide(t *testing.T) {
	prereq.Need(t, kamailio.Available())
	e := newEnv(t, roomyBudget)
	pub := publicKeyFile(t, e)
	next, client := udpOn(t, worldLoopback), udpOn(t, worldLoopback)
	lc := udpOn(t, worldLoopback)
	listen := lc.LocalAddr().(*net.UDPAddr).AddrPort()
	lc.Close()
	p, err := kamailio.Start(context.Background(), kamailio.Options{Listen: listen,
		NextHop: next.LocalAddr().(*net.UDPAddr).AddrPort(), VerifyKeyPath: pub, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Log(p.Log())
		}
	})
	buf := make([]byte, 65536)
	now := time.Now().Unix()
	for i, o := range worldNumbers {
		d := worldNumbers[(i+7)%len(worldNumbers)]
		id := e.sign(t, o.given, []string{d.given}, now)
		cl := client.LocalAddr().(*net.UDPAddr).AddrPort()
		branch := fmt.Sprintf("w%d", i)
		msg := fmt.Sprintf("INVITE sip:+%s@%s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
			"From: <sip:+%s@%s;user=phone>;tag=a%d\r\nTo: <sip:+%s@%s;user=phone>\r\n"+
			"Call-ID: %s@world\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@%s>\r\nIdentity: %s\r\nContent-Length: 0\r\n\r\n",
			d.e164, worldLoopback, cl, branch, o.e164, worldLoopback, i, d.e164, worldLoopback, branch, cl, id)
		if _, err := client.WriteToUDPAddrPort([]byte(msg), p.Addr()); err != nil {
			t.Fatal(err)
		}
		_ = next.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := next.ReadFromUDPAddrPort(buf)
		if err != nil {
			_ = client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			m, _, _ := client.ReadFromUDPAddrPort(buf)
			t.Fatalf("%s -> %s: Kamailio forwarded nothing (%v); answered:\n%s", o.where, d.where, err, buf[:m])
		}
		got := string(buf[:n])
		if !strings.Contains(got, "\r\nX-Identity-Check: ok\r\n") {
			t.Fatalf("%s -> %s: not verified by secsipid:\n%s", o.where, d.where, got)
		}
		var kp payloadClaims
		_, after, _ := strings.Cut(got, "\r\nX-Identity-Payload: ")
		line, _, _ := strings.Cut(after, "\r\n")
		if err := json.Unmarshal([]byte(line), &kp); err != nil {
			t.Fatalf("%s -> %s: Kamailio's payload %q: %v", o.where, d.where, line, err)
		}
		own := decodeClaims(t, id)
		if kp.Orig.TN != o.e164 || len(kp.Dest.TN) != 1 || kp.Dest.TN[0] != d.e164 || kp.IAT != now ||
			own.Orig.TN != kp.Orig.TN || strings.Join(own.Dest.TN, ",") != strings.Join(kp.Dest.TN, ",") {
			t.Fatalf("%s -> %s: Kamailio read orig %q dest %q iat %d, the test's decoder %q %q; From/To +%s/+%s",
				o.where, d.where, kp.Orig.TN, kp.Dest.TN, kp.IAT, own.Orig.TN, own.Dest.TN, o.e164, d.e164)
		}
	}
}

// publicKeyFile writes the provider's public key as PEM for Kamailio.
func publicKeyFile(t *testing.T, e *testEnv) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&e.h.SPKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "sp.pub")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return pub
}
