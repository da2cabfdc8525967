package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/sipp"
	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
)

// tcpLo is this file's own loopback prefix (RULES: addresses of our own).
const tcpLo = "127.0.84."

// freeSIPPort returns a port free on ip for TCP and UDP both (for --sip).
func freeSIPPort(t *testing.T, ip string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp4", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp4", net.JoinHostPort(ip, strconv.Itoa(port))); err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// waitTCP waits until something listens on addr.
func waitTCP(t *testing.T, addr string) {
	t.Helper()
	for range 100 {
		if c, err := net.Dial("tcp4", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on tcp %s", addr)
}

// TestSIPpOverTCP drives SIPp calls over TCP through `appliance serve`:
// the UAC over one connection (-t t1) and over one per call (-t tn), the
// UAS over TCP behind a next hop given as sip:ADDR:PORT;transport=tcp.
// Every INVITE reaching the UAS carries an Identity that verifies.
func TestSIPpOverTCP(t *testing.T) {
	prereq.Tools(t, "sipp")
	pki := labPKI(t)
	for i, mode := range []string{"t1", "tn"} {
		t.Run(mode, func(t *testing.T) {
			uacIP, uasIP, appIP := tcpLo+strconv.Itoa(10*i+1), tcpLo+strconv.Itoa(10*i+2), tcpLo+strconv.Itoa(10*i+3)
			sipAddr := net.JoinHostPort(appIP, strconv.Itoa(freeSIPPort(t, appIP)))
			uasPort := freeSIPPort(t, uasIP)
			startServe(t, "--sip", sipAddr, "--next-hop", fmt.Sprintf("sip:%s:%d;transport=tcp", uasIP, uasPort),
				"--key", filepath.Join(pki, "sp.key"), "--cert", filepath.Join(pki, "sp.pem"),
				"--x5u", "https://cert.example.org/sp.pem", "--attest", "A", "--api", freeTCP(t))
			work := t.TempDir()
			uasLog := filepath.Join(work, "uas.log")
			uas := exec.Command("sipp", "-sf", "../../bench/sipp/uas.xml", "-t", "t1", "-i", uasIP, "-p", strconv.Itoa(uasPort),
				"-nostdin", "-trace_msg", "-message_file", uasLog, "-timeout", "60s")
			uas.Dir = mustAbs(t, ".")
			if err := uas.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = uas.Process.Kill(); _ = uas.Wait() })
			waitTCP(t, net.JoinHostPort(uasIP, strconv.Itoa(uasPort)))

			const calls = 100
			uac := exec.Command("sipp", "-sf", "../../bench/sipp/uac_invite_only.xml", "-inf", "../../bench/sipp/numbers.csv",
				"-t", mode, "-max_socket", "1000", "-i", uacIP, "-p", strconv.Itoa(freeSIPPort(t, uacIP)), "-nostdin", "-m", fmt.Sprint(calls), "-r", "50",
				"-timeout", "60s", sipAddr)
			uac.Dir = mustAbs(t, ".")
			out, err := uac.CombinedOutput()
			if err != nil {
				t.Fatalf("SIPp UAC over TCP (%s) failed: %v\n%s", mode, err, lastLines(out, 30))
			}
			_ = uas.Process.Kill()
			_ = uas.Wait()
			pub := leafKey(t, pki)
			invites := sippINVITEs(t, uasLog)
			if len(invites) != calls {
				t.Fatalf("UAS saw %d INVITEs, want %d", len(invites), calls)
			}
			for k, inv := range invites {
				ids := sipp.HeaderValues(inv, "Identity")
				if len(ids) != 1 {
					t.Fatalf("INVITE %d has %d Identity headers:\n%s", k, len(ids), inv)
				}
				id, err := passport.ParseIdentity(ids[0])
				if err != nil {
					t.Fatalf("INVITE %d: %v", k, err)
				}
				if err := passport.VerifySignature(pub, id); err != nil {
					t.Fatalf("INVITE %d: signature: %v", k, err)
				}
				if v := sipp.HeaderValues(inv, "Via"); len(v) != 2 || v[0][:len("SIP/2.0/TCP "+appIP)] != "SIP/2.0/TCP "+appIP {
					t.Fatalf("INVITE %d: Vias %q", k, v)
				}
			}
		})
	}
}

// TestSIPTLSCertReload: a reload (SIGHUP) re-reads tls_cert and tls_key,
// so a SIP TLS certificate renewed in place is served from the next
// handshake without a restart; a broken pair is refused and the one in use
// kept.
func TestSIPTLSCertReload(t *testing.T) {
	pki := labPKI(t)
	dir := t.TempDir()
	ca, err := labpki.NewCA("SIP TLS lab CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "sip.pem"), filepath.Join(dir, "sip.key")
	issue := func() *x509.Certificate {
		t.Helper()
		cert, key, err := ca.IssueTLS("appliance", []net.IP{net.ParseIP(tcpLo + "71")}, nil, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := labpki.WriteCerts(certPath, cert); err != nil {
			t.Fatal(err)
		}
		if err := labpki.WriteKey(keyPath, key); err != nil {
			t.Fatal(err)
		}
		return cert
	}
	first := issue()
	tlsAddr := net.JoinHostPort(tcpLo+"71", strconv.Itoa(freeSIPPort(t, tcpLo+"71")))
	cfgPath := filepath.Join(dir, "appliance.yaml")
	body := fmt.Sprintf("sip: %s\nsip_tls: %s\ntls_cert: %s\ntls_key: %s\nnext_hop: 127.0.0.1:9\nkey: %s\ncert: %s\n"+
		"x5u: https://cert.example.org/sp.pem\napi: %s\n",
		net.JoinHostPort(tcpLo+"71", strconv.Itoa(freeSIPPort(t, tcpLo+"71"))), tlsAddr, certPath, keyPath,
		filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem"), freeTCP(t))
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuf{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgPath}, env{stdin: strings.NewReader(""), stdout: logs, stderr: logs, now: time.Now, signals: hup})
	}()
	defer func() { cancel(); <-done }()
	waitLog(t, logs, "appliance serving", 1)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp4", tlsAddr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	if got := served(); !got.Equal(first) {
		t.Fatalf("served serial %x, want %x", got.SerialNumber, first.SerialNumber)
	}
	second := issue()
	hup <- syscall.SIGHUP
	waitLog(t, logs, "configuration reloaded", 1)
	if got := served(); !got.Equal(second) {
		t.Fatalf("after the reload: served serial %x, want the renewed %x", got.SerialNumber, second.SerialNumber)
	}
	if err := os.WriteFile(keyPath, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	waitLog(t, logs, "reload refused", 1)
	if got := served(); !got.Equal(second) {
		t.Fatalf("after a refused reload: served serial %x, want %x (kept)", got.SerialNumber, second.SerialNumber)
	}
}
