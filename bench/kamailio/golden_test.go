package kamailio

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
)

// goldenDir holds package passport's golden PASSporTs (shaken, div of the
// RFC 8946 example, shaken with Rich Call Data, rcd) and the public key
// that signed them.
const goldenDir = "../../passport/testdata/golden"

// TestGoldenPassports has the golden PASSporTs checked by an independent
// implementation: Kamailio's secsipid module (libsecsipid) verifies the
// ES256 signature of every Identity header's JWS with the key (any
// PASSporT type: WITH_VERIFY_JWT), and decodes its payload itself; the
// test compares that payload with what its own decoder reads. One
// signature byte changed gets 438.
func TestGoldenPassports(t *testing.T) {
	prereq.Need(t, Available())
	names := []string{"shaken.txt", "div-rfc8946.txt", "shaken-rcd.txt", "rcd.txt"}
	var ids []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(goldenDir, n))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, strings.TrimSpace(string(b)))
	}
	pub, err := filepath.Abs(filepath.Join(goldenDir, "fixed-key.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	next := udpOn(t)
	client := udpOn(t)
	// The goldens' iat are fixed (2015, 2023): an iat window of ~60 years.
	p := start(t, Options{NextHop: next.LocalAddr().(*net.UDPAddr).AddrPort(), VerifyKeyPath: pub, VerifyJWT: true, Expire: 2000000000})
	send := func(branch string, ids []string) {
		t.Helper()
		cl := client.LocalAddr().(*net.UDPAddr).AddrPort()
		var hdrs strings.Builder
		for _, id := range ids {
			hdrs.WriteString("Identity: " + id + "\r\n")
		}
		msg := fmt.Sprintf("INVITE sip:+12155551214@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
			"From: <sip:+12155551212@%s;user=phone>;tag=g1\r\nTo: <sip:+12155551214@%s;user=phone>\r\n"+
			"Call-ID: %s@golden\r\nCSeq: 1 INVITE\r\n%sContent-Length: 0\r\n\r\n", labLoopback, cl, branch, labLoopback, labLoopback, branch, hdrs.String())
		if _, err := client.WriteToUDPAddrPort([]byte(msg), p.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	read := func(c *net.UDPConn) string {
		t.Helper()
		buf := make([]byte, 65536)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("nothing from Kamailio: %v", err)
		}
		return string(buf[:n])
	}
	send("golden1", ids)
	got := read(next)
	checks := regexp.MustCompile(`(?m)^X-JWT-Check: ok (\d+) (.*)\r$`).FindAllStringSubmatch(got, -1)
	if len(checks) != len(ids) {
		t.Fatalf("Kamailio checked %d of %d PASSporTs:\n%s", len(checks), len(ids), got)
	}
	for i, c := range checks {
		// The test's own decoder: the JWS payload, base64url, then JSON.
		tok, _, _ := strings.Cut(ids[i], ";")
		parts := strings.Split(tok, ".")
		js, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		if c[1] != fmt.Sprint(i) || c[2] != string(js) {
			t.Errorf("%s: Kamailio decoded %q, want %q", names[i], c[2], js)
		}
		var claims map[string]any
		if err := json.Unmarshal(js, &claims); err != nil || claims["orig"] == nil || claims["dest"] == nil || claims["iat"] == nil {
			t.Errorf("%s: claims %v (%v)", names[i], claims, err)
		}
	}
	// Each golden with one signature character changed is refused.
	for i, id := range ids {
		sig := strings.LastIndexByte(id[:strings.IndexByte(id, ';')], '.') + 5
		b := []byte(id)
		if b[sig] == 'A' {
			b[sig] = 'B'
		} else {
			b[sig] = 'A'
		}
		send(fmt.Sprint("bad", i), []string{string(b)})
		if resp := read(client); !strings.HasPrefix(resp, "SIP/2.0 438") {
			t.Fatalf("%s tampered: want 438, got:\n%s", names[i], resp)
		}
	}
}

func udpOn(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip0()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func netip0() netip.AddrPort { return netip.AddrPortFrom(labLoopback, 0) }
