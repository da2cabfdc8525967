package kamailio

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/loadgen"
	"github.com/shakenline/shakenline/internal/prereq"
)

// labLoopback is this package's own loopback address. The other test
// packages run at the same time, reserve ports on 127.0.0.1 the same way
// (bind, close, hand the number on) and send to them; on an address of its
// own this package's SIPp, Kamailio and sink cannot receive their stray
// datagrams, nor they ours.
var labLoopback = netip.MustParseAddr("127.0.81.1")

func freeUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(labLoopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// keyPair makes a P-256 key with openssl, as an operator would.
func keyPair(t *testing.T) (priv, pub string) {
	t.Helper()
	_, err := exec.LookPath("openssl")
	prereq.Need(t, err)
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "sp.key"), filepath.Join(dir, "sp.pub")
	for _, args := range [][]string{
		{"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", priv},
		{"ec", "-in", priv, "-pubout", "-out", pub},
	} {
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	return priv, pub
}

func start(t *testing.T, o Options) *Process {
	t.Helper()
	if !o.Listen.IsValid() {
		o.Listen = freeUDP(t)
	}
	p, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Logf("kamailio log tail:\n%s", p.Log())
		}
	})
	return p
}

// bench runs calls INVITEs through target to an in-process sink.
func bench(t *testing.T, sink *loadgen.Sink, target netip.AddrPort, calls int) loadgen.Result {
	t.Helper()
	g, err := loadgen.NewGenerator(loadgen.Config{Target: target, Local: labLoopback, Sink: sink, Sockets: 4, FullCall: true, Drain: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	res, err := g.Run(context.Background(), loadgen.Load{Rate: 200, Count: calls, Duration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	return res
}

func newSink(t *testing.T, cfg loadgen.SinkConfig) *loadgen.Sink {
	t.Helper()
	cfg.Listen = netip.AddrPortFrom(labLoopback, 0)
	s, err := loadgen.NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSigns: generator -> kamailio (secsipid signing) -> sink. Every INVITE
// arrives with an Identity header that verifies with the public key, and
// the responses, ACKs and BYEs flow through the stateless proxy.
func TestSigns(t *testing.T) {
	prereq.Need(t, Available())
	priv, pub := keyPair(t)
	pk, err := loadgen.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sink := newSink(t, loadgen.SinkConfig{VerifyKey: pk, VerifyEvery: 1})
	p := start(t, Options{NextHop: sink.Addr(), Sign: true, KeyPath: priv, X5U: "http://127.0.0.1:8080/sp.pem"})
	const calls = 20
	res := bench(t, sink, p.Addr(), calls)
	if res.Received != calls || res.WithIdentity != calls {
		t.Fatalf("received %d with Identity %d, want %d", res.Received, res.WithIdentity, calls)
	}
	if res.Answered != calls || res.ByeOK != calls {
		t.Fatalf("answered %d bye-ok %d, want %d", res.Answered, res.ByeOK, calls)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && sink.Stats().VerifyOK+sink.Stats().VerifyFailed < calls {
		time.Sleep(20 * time.Millisecond)
	}
	if st := sink.Stats(); st.VerifyOK != calls || st.VerifyFailed != 0 {
		t.Fatalf("verified ok %d failed %d skipped %d, want %d ok", st.VerifyOK, st.VerifyFailed, st.VerifySkip, calls)
	}
}

// TestForwardOnly is the no-signing variant: same path, no Identity.
func TestForwardOnly(t *testing.T) {
	prereq.Need(t, Available())
	sink := newSink(t, loadgen.SinkConfig{})
	p := start(t, Options{NextHop: sink.Addr()})
	const calls = 20
	res := bench(t, sink, p.Addr(), calls)
	if res.Received != calls || res.WithIdentity != 0 || res.Answered != calls || res.ByeOK != calls {
		t.Fatalf("forward-only: %v", res)
	}
}

// TestVerifyVariant chains a signing and a verifying Kamailio: with the
// right public key calls pass, with another key they get 438.
func TestVerifyVariant(t *testing.T) {
	prereq.Need(t, Available())
	priv, pub := keyPair(t)
	_, otherPub := keyPair(t)
	for _, tc := range []struct {
		name   string
		pub    string
		passed bool
	}{{"right key", pub, true}, {"wrong key", otherPub, false}} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newSink(t, loadgen.SinkConfig{})
			verifier := start(t, Options{NextHop: sink.Addr(), VerifyKeyPath: tc.pub})
			signer := start(t, Options{NextHop: verifier.Addr(), Sign: true, KeyPath: priv})
			const calls = 10
			g, err := loadgen.NewGenerator(loadgen.Config{Target: signer.Addr(), Local: labLoopback, Sink: sink, Sockets: 2, Drain: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = g.Close() })
			res, err := g.Run(context.Background(), loadgen.Load{Rate: 100, Count: calls, Duration: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
			if tc.passed && (res.Received != calls || res.WithIdentity != calls || res.Answered != calls) {
				t.Fatalf("verified chain: %v", res)
			}
			if !tc.passed && (res.Received != 0 || res.Failed != calls) {
				t.Fatalf("wrong key: want %d calls refused (438), got %v", calls, res)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	o := Options{Listen: netip.MustParseAddrPort("127.0.0.1:5060"), NextHop: netip.MustParseAddrPort("127.0.0.1:5070")}
	args, err := o.Args("/tmp/k.cfg", "/tmp")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, " ")
	for _, want := range []string{"-DD -E -f /tmp/k.cfg", "-l udp:127.0.0.1:5060", `NEXTHOP="sip:127.0.0.1:5070"`, "-n 2"} {
		if !strings.Contains(joined, want) {
			t.Errorf("args %q lack %q", joined, want)
		}
	}
	if strings.Contains(joined, "WITH_SIGN") {
		t.Errorf("forward-only args sign: %q", joined)
	}
	o.Sign = true
	if _, err := o.Args("/tmp/k.cfg", "/tmp"); err == nil {
		t.Error("Sign without KeyPath accepted")
	}
	o.KeyPath = `/tmp/a"b`
	if _, err := o.Args("/tmp/k.cfg", "/tmp"); err == nil {
		t.Error("quote in key path accepted")
	}
	if _, err := (Options{}).Args("c", "d"); err == nil {
		t.Error("empty options accepted")
	}
	o = Options{Listen: o.Listen, NextHop: o.NextHop, VerifyJWT: true}
	if _, err := o.Args("/tmp/k.cfg", "/tmp"); err == nil {
		t.Error("VerifyJWT without a key accepted")
	}
	o.VerifyKeyPath, o.Expire = "/tmp/k.pub", 99
	args, err = o.Args("/tmp/k.cfg", "/tmp")
	if joined := strings.Join(args, " "); err != nil || !strings.Contains(joined, "-A WITH_VERIFY_JWT") || strings.Contains(joined, "WITH_VERIFY ") ||
		!strings.Contains(joined, `PUBKEYPATH="/tmp/k.pub"`) || !strings.Contains(joined, "-A EXPIRE=99") {
		t.Errorf("VerifyJWT args %q (%v)", joined, err)
	}
}
