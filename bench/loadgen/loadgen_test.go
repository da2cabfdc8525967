package loadgen

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/hsm/signertest"
)

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func newSink(t *testing.T, cfg SinkConfig) *Sink {
	t.Helper()
	if !cfg.Listen.IsValid() {
		cfg.Listen = loopback
	}
	s, err := NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newGen(t *testing.T, cfg Config) *Generator {
	t.Helper()
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// TestBackToBack runs generator and sink directly on loopback, full calls.
func TestBackToBack(t *testing.T) {
	sink := newSink(t, SinkConfig{Provisional: true})
	g := newGen(t, Config{Target: sink.Addr(), Sink: sink, Sockets: 4, FullCall: true, Drain: 3 * time.Second})
	const calls = 300
	res, err := g.Run(context.Background(), Load{Rate: 3000, Count: calls, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Sent != calls || res.Received != calls || res.Lost != 0 || res.LossPct != 0 {
		t.Fatalf("sent %d received %d lost %d (%.2f%%), want %d/%d/0", res.Sent, res.Received, res.Lost, res.LossPct, calls, calls)
	}
	if res.Answered != calls || res.ByeOK != calls || res.Provisional != 2*calls {
		t.Fatalf("answered %d bye-ok %d provisional %d, want %d %d %d", res.Answered, res.ByeOK, res.Provisional, calls, calls, 2*calls)
	}
	if res.WithIdentity != 0 || res.Duplicates != 0 || res.LossBasis != "sink" {
		t.Fatalf("identity %d duplicates %d basis %q", res.WithIdentity, res.Duplicates, res.LossBasis)
	}
	l := res.Latency
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) || l.Max > 5e6 {
		t.Fatalf("latency not recorded sensibly: %+v", l)
	}
	st := sink.Stats()
	if st.Invites != calls || st.Acks != calls || st.Byes != calls || st.Malformed != 0 || st.Unroutable != 0 {
		t.Fatalf("sink stats %+v", st)
	}
	if g.Stray() != 0 || g.Malformed() != 0 {
		t.Fatalf("stray %d malformed %d", g.Stray(), g.Malformed())
	}
	// The 300 calls used the pools: several distinct calling numbers.
	if res.AchievedRate <= 0 {
		t.Fatalf("achieved rate %v", res.AchievedRate)
	}
}

// relay forwards datagrams from its socket to dst, passing each one
// through edit; edit returning nil drops the datagram.
func relay(t *testing.T, dst netip.AddrPort, edit func(i int, b []byte) []byte) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for i := 0; ; i++ {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if out := edit(i, buf[:n]); out != nil {
				_, _ = c.WriteToUDPAddrPort(out, dst)
			}
		}
	}()
	t.Cleanup(func() { _ = c.Close(); wg.Wait() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestLossCounted drops every 10th INVITE in a relay: 10 % loss.
func TestLossCounted(t *testing.T) {
	sink := newSink(t, SinkConfig{})
	via := relay(t, sink.Addr(), func(i int, b []byte) []byte {
		if i%10 == 9 {
			return nil
		}
		return b
	})
	g := newGen(t, Config{Target: via, Sink: sink, Sockets: 3, Drain: 500 * time.Millisecond})
	const calls = 500
	res, err := g.Run(context.Background(), Load{Rate: 2000, Count: calls, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Sent != calls || res.Lost != calls/10 || res.Received != calls-calls/10 {
		t.Fatalf("sent %d lost %d received %d, want %d %d %d", res.Sent, res.Lost, res.Received, calls, calls/10, calls-calls/10)
	}
	if res.LossPct < 9.99 || res.LossPct > 10.01 {
		t.Fatalf("loss %.3f%%, want 10%%", res.LossPct)
	}
	if res.Answered != res.Received {
		t.Fatalf("answered %d, received %d", res.Answered, res.Received)
	}
	// Without the in-process sink, loss comes from answers.
	g2 := newGen(t, Config{Target: via, Sockets: 2, Drain: 500 * time.Millisecond})
	res2, err := g2.Run(context.Background(), Load{Rate: 2000, Count: 200, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res2.LossBasis != "answers" || res2.Lost != 20 {
		t.Fatalf("answers-based: %v", res2)
	}
}

// signIdentity builds an Identity header value the way an STI-AS does.
func signIdentity(t *testing.T, key *ecdsa.PrivateKey, orig, dest string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"http://127.0.0.1/sp.pem"}`))
	p := enc.EncodeToString([]byte(`{"attest":"A","dest":{"tn":["` + dest + `"]},"iat":1700000000,"orig":{"tn":"` + orig + `"},"origid":"123e4567-e89b-12d3-a456-426614174000"}`))
	d := sha256.Sum256([]byte(h + "." + p))
	var sig [64]byte
	if err := (signertest.CryptoSigner{Key: key}).SignDigest(t.Context(), &d, &sig); err != nil {
		t.Fatal(err)
	}
	return h + "." + p + "." + enc.EncodeToString(sig[:]) + ";info=<http://127.0.0.1/sp.pem>;alg=ES256;ppt=shaken"
}

// TestIdentityCountedAndVerified puts a signing relay in front of the sink.
func TestIdentityCountedAndVerified(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ident := []byte("Identity: " + signIdentity(t, key, "12125550100", "13055550199") + "\r\n")
	insert := func(_ int, b []byte) []byte {
		eol := bytes.Index(b, crlf) + 2
		out := append([]byte{}, b[:eol]...)
		out = append(out, ident...)
		return append(out, b[eol:]...)
	}
	for _, tc := range []struct {
		name     string
		pub      *ecdsa.PublicKey
		ok, fail uint64
	}{{"right key", &key.PublicKey, 40, 0}, {"wrong key", &other.PublicKey, 0, 40}} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newSink(t, SinkConfig{VerifyKey: tc.pub, VerifyEvery: 1})
			via := relay(t, sink.Addr(), insert)
			g := newGen(t, Config{Target: via, Sink: sink, Sockets: 2, Drain: 2 * time.Second})
			res, err := g.Run(context.Background(), Load{Rate: 400, Count: 40, Duration: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			// The checker runs behind the receive path: wait for it.
			for i := 0; i < 200 && sink.Stats().VerifyOK+sink.Stats().VerifyFailed+sink.Stats().VerifySkip < 40; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			st := sink.Stats()
			if res.WithIdentity != 40 || res.Received != 40 {
				t.Fatalf("with identity %d received %d, want 40", res.WithIdentity, res.Received)
			}
			if st.VerifyOK+st.VerifySkip < tc.ok || st.VerifyFailed+st.VerifySkip < tc.fail || st.VerifyOK+st.VerifyFailed == 0 {
				t.Fatalf("verify ok %d failed %d skipped %d, want ok %d failed %d", st.VerifyOK, st.VerifyFailed, st.VerifySkip, tc.ok, tc.fail)
			}
			if tc.fail == 0 && st.VerifyFailed != 0 || tc.ok == 0 && st.VerifyOK != 0 {
				t.Fatalf("verify ok %d failed %d", st.VerifyOK, st.VerifyFailed)
			}
		})
	}
}

func TestVerifyIdentityRejects(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := signIdentity(t, key, "12125550100", "13055550199")
	if err := VerifyIdentity(&key.PublicKey, []byte(good)); err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(good, ".", 3)
	bad := []string{
		"", "a.b", parts[0] + "." + parts[1] + ".AAAA",
		parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"attest":"A"}`)) + "." + parts[2],
		parts[0] + "." + parts[1] + "." + strings.Repeat("A", 86),
	}
	for _, b := range bad {
		if err := VerifyIdentity(&key.PublicKey, []byte(b)); err == nil {
			t.Errorf("VerifyIdentity(%q) = nil", b)
		}
	}
}

// TestStep ramps 500 -> 1000 -> 2000 and stops past MaxRate.
func TestStep(t *testing.T) {
	sink := newSink(t, SinkConfig{})
	g := newGen(t, Config{Target: sink.Addr(), Sink: sink, Sockets: 2, Drain: 300 * time.Millisecond})
	var seen []Result
	sum, err := g.Step(context.Background(), StepConfig{
		Start: 500, Factor: 2, MaxRate: 2000, StepDuration: 300 * time.Millisecond,
		Pause: 50 * time.Millisecond, MinAchieved: 0.5,
	}, func(r Result) { seen = append(seen, r) })
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(sum.Steps) || len(sum.Steps) == 0 {
		t.Fatalf("callback saw %d steps, summary %d", len(seen), len(sum.Steps))
	}
	for _, r := range sum.Steps {
		t.Log(r)
	}
	// On an idle loopback all three steps are clean; on a loaded machine the
	// ramp may stop early, but the summary must agree with its steps.
	switch sum.Stop {
	case "max-rate":
		if sum.MaxCleanRate != 2000 || len(sum.Steps) != 3 {
			t.Fatalf("summary %+v", sum)
		}
	case "loss", "generator":
		last := sum.Steps[len(sum.Steps)-1]
		if last.TargetRate == sum.MaxCleanRate {
			t.Fatalf("failed step counted as clean: %+v", sum)
		}
	default:
		t.Fatalf("stop %q", sum.Stop)
	}
	if sum.Best != nil && sum.Best.TargetRate != sum.MaxCleanRate {
		t.Fatalf("best %v max clean %v", sum.Best.TargetRate, sum.MaxCleanRate)
	}
}

func TestInviteTemplate(t *testing.T) {
	local := netip.MustParseAddrPort("127.0.0.1:40001")
	target := netip.MustParseAddrPort("127.0.0.1:5060")
	tm := buildInvite(local, target, 0xabcdef01)
	if n := len(tm.b); n < 850 || n > 1100 {
		t.Fatalf("INVITE is %d bytes, want about 900", n)
	}
	msg := append([]byte{}, tm.b...)
	var dc dateCache
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tm.patch(msg, &callFields{seq: 0x1234, ts: 0x55, from: []byte("12125550100"), to: []byte("13055550199"), date: dc.get(now)})
	s := string(msg)
	for _, want := range []string{
		"INVITE sip:+13055550199@127.0.0.1:5060;user=phone SIP/2.0\r\n",
		"Via: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bK-0000000000001234;rport\r\n",
		"From: \"Shakebench\" <sip:+12125550100@127.0.0.1;user=phone>;tag=0000000000001234\r\n",
		"To: <sip:+13055550199@127.0.0.1;user=phone>\r\n",
		"Call-ID: 0000000000001234-0000000000000055-abcdef01@shakebench\r\n",
		"P-Asserted-Identity: <tel:+12125550100>\r\n",
		"Date: Tue, 04 Mar 2025 05:06:07 GMT\r\n",
		"Max-Forwards: 70\r\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("INVITE lacks %q", want)
		}
	}
	var m sipMsg
	if err := m.scan(msg); err != nil {
		t.Fatal(err)
	}
	seq, ts, run, ok := parseCallID(m.callID)
	if !ok || seq != 0x1234 || ts != 0x55 || run != 0xabcdef01 {
		t.Fatalf("parseCallID = %x %x %x %v", seq, ts, run, ok)
	}
	body := msg[bytes.Index(msg, []byte("\r\n\r\n"))+4:]
	if !strings.Contains(s, "Content-Length: "+strconv.Itoa(len(body))+"\r\n") {
		t.Fatalf("Content-Length does not match body of %d bytes", len(body))
	}
}

func TestParseVia(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
		err  bool
	}{
		{"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1", "127.0.0.1", 5060, false},
		{"SIP/2.0/UDP 10.0.0.1;branch=x", "10.0.0.1", 5060, false},
		{"SIP/2.0/UDP host.example:5070;received=192.0.2.4;rport=6000", "192.0.2.4", 6000, false},
		{"SIP/2.0/UDP [2001:2::1]:5062;branch=x", "2001:2::1", 5062, false},
		{"SIP/2.0/UDP 1.2.3.4:5060;rport;branch=x", "1.2.3.4", 5060, false},
		{"SIP/2.0/UDP 1.2.3.4:99999", "", 0, true},
		{"garbage", "", 0, true},
		{"SIP/2.0/UDP [::1", "", 0, true},
	} {
		v, err := parseVia([]byte(tc.in))
		if (err != nil) != tc.err {
			t.Errorf("parseVia(%q) err %v", tc.in, err)
			continue
		}
		if err == nil && (string(v.host) != tc.host || v.port != tc.port) {
			t.Errorf("parseVia(%q) = %s:%d", tc.in, v.host, v.port)
		}
	}
}

func TestParseIPv4(t *testing.T) {
	for in, ok := range map[string]bool{"127.0.0.1": true, "255.255.255.255": true, "1.2.3": false, "1.2.3.256": false, "1..2.3": false, "a.b.c.d": false, "1.2.3.4.5": false, "0001.2.3.4": false} {
		a, got := parseIPv4([]byte(in))
		if got != ok || ok && a.String() != in {
			t.Errorf("parseIPv4(%q) = %v %v", in, a, got)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for v := uint64(1); v <= 10000; v++ {
		h.record(v)
	}
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0.5, 5000}, {0.9, 9000}, {0.99, 9900}} {
		got := float64(h.quantile(tc.q))
		if got < tc.want || got > tc.want*1.016 {
			t.Errorf("quantile(%v) = %v, want %v within 1.6%%", tc.q, got, tc.want)
		}
	}
	if h.quantile(1) != 10000 {
		t.Errorf("max quantile %d", h.quantile(1))
	}
	for i := 0; i < histBuckets; i++ {
		if histIndex(histUpper(i)) != i || (i > 0 && histIndex(histUpper(i-1)+1) != i) {
			t.Fatalf("bucket %d bounds inconsistent", i)
		}
	}
}

func TestNumberPool(t *testing.T) {
	if _, err := numberPool([]string{"+12125550100", "+1305555019"}, 0); err == nil {
		t.Fatal("short number accepted")
	}
	if _, err := numberPool([]string{"+11125550100"}, 0); err == nil {
		t.Fatal("NPA starting with 1 accepted")
	}
	p := defaultPool(1000, 7)
	for i := 0; i < 1000; i++ {
		if n := "+" + string(p[i*11:i*11+11]); !validNANP(n) {
			t.Fatalf("default number %q invalid", n)
		}
	}
}

// TestKernelReceiveStamp sends datagrams to a socket whose receive batch
// reads SO_TIMESTAMPNS and checks each stamp lies between the wall clock
// before the send and after the receive: a zero, garbage or other-clock
// stamp fails.
func TestKernelReceiveStamp(t *testing.T) {
	uc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := newMmsgConn(uc)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	rb := newRecvBatch(mc, 8, maxMessage)
	if err := rb.enableStamps(); err != nil {
		t.Fatal(err)
	}
	tx, err := net.DialUDP("udp4", nil, uc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const msgs = 5
	before := wallNS()
	for i := 0; i < msgs; i++ {
		if _, err := tx.Write([]byte("ping " + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	for got < msgs {
		n, err := rb.recv()
		if err != nil {
			t.Fatal(err)
		}
		after := wallNS()
		for i := 0; i < n; i++ {
			at, ok := rb.stamp(i)
			if !ok {
				t.Fatalf("message %d has no kernel timestamp", got+i)
			}
			if at < before || at > after {
				t.Fatalf("kernel timestamp %d outside [%d, %d] (send .. receive)", at, before, after)
			}
		}
		got += n
	}
}

// TestParseStamp reads SCM_TIMESTAMPNS out of a control buffer and rejects
// truncated, foreign and zero ones.
func TestParseStamp(t *testing.T) {
	mk := func(level, typ int32, sec, nsec int64) []byte {
		b := make([]byte, stampSpace)
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(16))
		ts := (*unix.Timespec)(unsafe.Pointer(&b[unix.SizeofCmsghdr]))
		ts.Sec, ts.Nsec = sec, nsec
		return b[:unix.CmsgSpace(16)]
	}
	if v, ok := parseStamp(mk(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, 1700000000, 123)); !ok || v != 1700000000_000000123 {
		t.Fatalf("parseStamp = %d %v", v, ok)
	}
	two := append(mk(unix.SOL_IP, unix.IP_TTL, 0, 64), mk(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, 5, 6)...)
	if v, ok := parseStamp(two); !ok || v != 5_000000006 {
		t.Fatalf("second cmsg: parseStamp = %d %v", v, ok)
	}
	for name, b := range map[string][]byte{
		"empty":     nil,
		"other":     mk(unix.SOL_IP, unix.IP_TTL, 1, 1),
		"zero":      mk(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, 0, 0),
		"truncated": mk(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, 1, 1)[:unix.SizeofCmsghdr+4],
	} {
		if v, ok := parseStamp(b); ok {
			t.Errorf("%s: parseStamp = %d, true", name, v)
		}
	}
}

// TestKernelStampedLatency runs generator and sink back to back and checks
// that every arrival was timed by the kernel stamp and the latencies are
// plausible for loopback with nothing in between: none negative, none of
// them zero-stamped garbage, all under a generous second.
//
// With transmit stamps (the default) every INVITE must carry one too; with
// UserSendTime none may.
func TestKernelStampedLatency(t *testing.T) {
	for _, user := range []bool{false, true} {
		t.Run(fmt.Sprintf("UserSendTime=%v", user), func(t *testing.T) {
			sink := newSink(t, SinkConfig{})
			g := newGen(t, Config{Target: sink.Addr(), Sink: sink, Sockets: 2, Drain: 2 * time.Second, UserSendTime: user})
			const calls = 400
			before := sink.Stats()
			res, err := g.Run(context.Background(), Load{Rate: 4000, Count: calls, Duration: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
			if res.Sent != calls || res.Received != calls {
				t.Fatalf("sent %d received %d, want %d", res.Sent, res.Received, calls)
			}
			if res.RxKernelStamped != calls || res.LatencyNegative != 0 {
				t.Fatalf("receive-stamped %d negative %d of %d", res.RxKernelStamped, res.LatencyNegative, calls)
			}
			if want := uint64(calls); user && res.TxKernelStamped != 0 || !user && res.TxKernelStamped != want {
				t.Fatalf("transmit-stamped %d of %d (UserSendTime %v)", res.TxKernelStamped, calls, user)
			}
			if st := sink.Stats(); st.StampKernel-before.StampKernel != calls || st.StampUser != before.StampUser {
				t.Fatalf("sink stamps: kernel %d user %d", st.StampKernel-before.StampKernel, st.StampUser-before.StampUser)
			}
			l := res.Latency
			if !(l.P50 > 0 && l.P50 <= l.P99 && l.P99 <= l.Max) || l.Max > 1e6 {
				t.Fatalf("latency not plausible for loopback: %+v", l)
			}
		})
	}
}

// TestTxStampsThroughRelay checks that transmit stamps map to the right
// calls: a relay that holds every 4th INVITE for 20 ms must show up as at
// least 20 ms in p90..max and not at all in p50.
func TestTxStampsThroughRelay(t *testing.T) {
	sink := newSink(t, SinkConfig{})
	hold := make(chan []byte, 1024)
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for i := 0; ; i++ {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(hold)
				return
			}
			if i%4 == 3 {
				hold <- append([]byte{}, buf[:n]...)
				continue
			}
			_, _ = c.WriteToUDPAddrPort(buf[:n], sink.Addr())
		}
	}()
	go func() {
		defer wg.Done()
		for b := range hold {
			time.Sleep(20 * time.Millisecond)
			_, _ = c.WriteToUDPAddrPort(b, sink.Addr())
		}
	}()
	t.Cleanup(func() { _ = c.Close(); wg.Wait() })
	g := newGen(t, Config{Target: c.LocalAddr().(*net.UDPAddr).AddrPort(), Sink: sink, Sockets: 2, Drain: 5 * time.Second})
	res, err := g.Run(context.Background(), Load{Rate: 400, Count: 80, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Received != 80 || res.TxKernelStamped != 80 {
		t.Fatalf("received %d transmit-stamped %d, want 80", res.Received, res.TxKernelStamped)
	}
	if l := res.Latency; l.P90 < 20000 || l.P50 >= 20000 {
		t.Fatalf("held quarter not where it belongs: %+v", l)
	}
}
