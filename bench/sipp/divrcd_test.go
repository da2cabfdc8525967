package sipp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/fastpath"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/rcd"
	"github.com/shakenline/shakenline/tnauth"
	"github.com/shakenline/shakenline/verify"
)

// divLo is this file's own loopback address.
const divLo = "127.0.83.5"

const (
	ourX5U    = "https://cert.ours.example/sp.pem"   // the forwarding (or branding) carrier: the appliance under test
	callerX5U = "https://cert.caller.example/sp.pem" // the caller's carrier
)

// carriers is the lab's PKI: one root, the caller's carrier and ours.
type carriers struct {
	pool               *x509.CertPool
	ourKey, callerKey  *ecdsa.PrivateKey
	ourChain, callerCh []*x509.Certificate
}

func newCarriers(t *testing.T) *carriers {
	t.Helper()
	h, err := labpki.NewHierarchy("US", labpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := h.Intermediate.IssueSP("5678", tnauth.List{}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.Root.Cert)
	return &carriers{pool: pool, ourKey: h.SPKey, ourChain: []*x509.Certificate{h.SP, h.Intermediate.Cert},
		callerKey: key, callerCh: []*x509.Certificate{cert, h.Intermediate.Cert}}
}

// verifier is the terminating carrier's STI-VS (x5u from Static, content
// from the lab's loopback servers).
func (c *carriers) verifier(t *testing.T) *verify.Verifier {
	t.Helper()
	v, err := verify.New(verify.Config{Trust: map[string]*x509.CertPool{"US": c.pool}, AllowHTTP: true, AllowPrivate: true,
		Static: map[string][]*x509.Certificate{ourX5U: c.ourChain, callerX5U: c.callerCh}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// stiVS adapts verify.Verifier to the fast path (as cmd/appliance does).
type stiVS struct{ v *verify.Verifier }

func (s stiVS) Verify(ctx context.Context, ids [][]byte, orig, dest []byte, now time.Time) fastpath.VerifyResult {
	in := verify.Input{OrigTN: string(orig), Time: now}
	if len(dest) > 0 {
		in.DestTNs = []string{string(dest)}
	}
	for _, id := range ids {
		in.Identity = append(in.Identity, string(id))
	}
	r := s.v.Verify(ctx, in)
	out := fastpath.VerifyResult{Verstat: r.Verstat, Code: r.Code, Reason: r.Reason}
	if d := r.RCD; d != nil {
		out.Name, out.Icon, out.JCard, out.CRN = d.Name, d.Icon, d.JCard, d.CRN
	}
	return out
}

// startFastpath runs the appliance's fast path in proxy mode on lo,
// signing with key for x5u under rules (attestation A by default), to next;
// with a verifier its verify rules verify. National numbers are US,
// freshness 60 s and stale_date refuse: the defaults of `appliance serve`.
func startFastpath(t *testing.T, lo, x5u string, key *ecdsa.PrivateKey, rules []policy.RuleConfig, v fastpath.Verifier, next netip.AddrPort) netip.AddrPort {
	t.Helper()
	soft, err := hsm.NewSoftware("soft", key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { soft.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	b, err := passport.NewBuilder(x5u)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := policy.Build(policy.Config{Rules: rules}, "A")
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.ResolveRCD(ctx, verify.NewContentFetcher(verify.ContentConfig{AllowHTTP: true, AllowPrivate: true}).Fetch); err != nil {
		t.Fatal(err)
	}
	num, _ := e164.New("US")
	listen := netip.AddrPortFrom(netip.MustParseAddr(lo), uint16(freePortOn(t, lo)))
	cfg := fastpath.Config{Mode: fastpath.Proxy, Listen: listen, NextHop: next, Loops: 1,
		Builder: b, Signer: hsm.NewPool(ctx, soft, 2, 1024), Policy: policy.NewHolder(tbl), Numbers: num,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if v != nil {
		cfg.Verifier = v
	}
	s, err := fastpath.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Booted():
	case err := <-done:
		t.Fatalf("appliance did not start: %v", err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return listen
}

// startUAS runs uas.xml on divLo for calls INVITEs, tracing the messages.
func startUAS(t *testing.T, ctx context.Context, bin, wd, dir string, calls int) (netip.AddrPort, string, func()) {
	t.Helper()
	port := freePortOn(t, divLo)
	trace := filepath.Join(dir, "uas_msgs.log")
	var out bytes.Buffer
	uas := exec.CommandContext(ctx, bin, "-sf", filepath.Join(wd, "uas.xml"), "-i", divLo, "-p", strconv.Itoa(port),
		"-m", strconv.Itoa(calls), "-trace_msg", "-message_file", trace, "-nostdin", "-timeout", "80s")
	uas.Dir = dir
	uas.Stdout, uas.Stderr = &out, &out
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uas.Process.Kill(); _ = uas.Wait() })
	time.Sleep(300 * time.Millisecond)
	wait := func() {
		if err := uas.Wait(); err != nil {
			t.Fatalf("UAS: %v\n%s", err, tail(out.Bytes()))
		}
	}
	return netip.AddrPortFrom(netip.MustParseAddr(divLo), uint16(port)), trace, wait
}

// runUAC runs scenario with the injection lines lines against target,
// without UDP retransmissions (-nr): the path is loopback, and a
// retransmitted INVITE would be signed anew by the proxy-mode appliance,
// so the UAS (whose retransmission check compares whole messages) would
// take it for a new, unexpected INVITE and drop the call whenever the
// first verification (x5u and content fetches) takes longer than T1 on a
// loaded machine.
func runUAC(t *testing.T, ctx context.Context, bin, wd, dir, scenario string, target netip.AddrPort, lines []string) {
	t.Helper()
	inf := filepath.Join(dir, fmt.Sprintf("inf-%d.csv", time.Now().UnixNano()))
	if err := os.WriteFile(inf, []byte("SEQUENTIAL\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, target.String(), "-sf", filepath.Join(wd, scenario), "-inf", inf,
		"-i", divLo, "-p", strconv.Itoa(freePortOn(t, divLo)), "-m", strconv.Itoa(len(lines)), "-r", "20",
		"-nr", "-nostdin", "-timeout", "30s").CombinedOutput()
	if err != nil {
		t.Fatalf("%s to %v: %v\n%s", scenario, target, err, tail(out))
	}
}

// TestForwardedThroughAppliance: SIPp forwarded calls (Diversion and
// History-Info variants) carrying the caller's carrier's shaken PASSporT
// to the forwarding number go through a proxy-mode appliance with a
// div: true rule for our forwarding numbers, then through a verify-mode
// appliance to the UAS: verstat TN-Validation-Passed for the new target,
// the call carrying the caller's PASSporT and our div PASSporT. The same
// calls through an appliance without the div rule arrive
// TN-Validation-Failed: the defect div PASSporTs exist for.
func TestForwardedThroughAppliance(t *testing.T) {
	bin, err := exec.LookPath("sipp")
	prereq.Need(t, err)
	wd, _ := os.Getwd()
	dir := t.TempDir()
	cs := newCarriers(t)
	const calls = 5 // per run
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	uas, trace, waitUAS := startUAS(t, ctx, bin, wd, dir, 3*calls)
	vs := startFastpath(t, divLo, ourX5U, cs.ourKey, []policy.RuleConfig{{Name: "peer", Action: "verify"}}, stiVS{cs.verifier(t)}, uas)
	withDiv := startFastpath(t, divLo, ourX5U, cs.ourKey, []policy.RuleConfig{{Name: "forwarding", Attest: "A", Numbers: []string{"+1202555*"}, Div: true}}, nil, vs)
	withoutDiv := startFastpath(t, divLo, ourX5U, cs.ourKey, nil, nil, vs)

	cb, _ := passport.NewBuilder(callerX5U)
	// lines: one per call, the caller's PASSporT signed now (fresh, and
	// unique: the verifier refuses a replayed PASSporT).
	lines := func(caller string) []string {
		var out []string
		for i := range calls {
			orig, fw := fmt.Sprintf("%s%02d", caller, i), fmt.Sprintf("120255501%02d", i)
			c := passport.Claims{Attest: 'A', Orig: []byte(orig), Dest: [][]byte{[]byte(fw)}, IAT: time.Now().Unix()}
			_, _ = rand.Read(c.OrigID[:])
			id, err := passport.Sign(context.Background(), signertest.CryptoSigner{Key: cs.callerKey}, cb, &c)
			if err != nil {
				t.Fatal(err)
			}
			jws, _, _ := strings.Cut(id, ";")
			out = append(out, fmt.Sprintf("%s;121555501%02d;%s;%s;%s;", orig, i, fw, jws, callerX5U))
		}
		return out
	}
	runUAC(t, ctx, bin, wd, dir, "uac_forwarded.xml", withDiv, lines("131255500"))
	runUAC(t, ctx, bin, wd, dir, "uac_forwarded_hi.xml", withDiv, lines("131255501"))
	runUAC(t, ctx, bin, wd, dir, "uac_forwarded.xml", withoutDiv, lines("131255502"))
	waitUAS()

	seen := map[string]int{}
	for _, inv := range traceInvites(t, trace) {
		pai := HeaderValues(inv, "P-Asserted-Identity")
		ids := HeaderValues(inv, "Identity")
		if len(pai) != 1 || len(pai[0]) < 19 {
			t.Fatalf("INVITE without P-Asserted-Identity:\n%s", inv)
		}
		caller := pai[0][6:15] // "<tel:+131255500NN;verstat=..."
		seen[caller]++
		switch caller {
		case "131255500", "131255501":
			if !strings.Contains(pai[0], ";verstat=TN-Validation-Passed>") || len(ids) != 2 {
				t.Fatalf("forwarded call with div: want TN-Validation-Passed and two Identity headers:\n%s", inv)
			}
			div, err := passport.ParseIdentityAny(ids[1])
			if err != nil || div.PPT != passport.PPTDiv || div.Info != ourX5U || passport.VerifySignature(&cs.ourKey.PublicKey, div) != nil {
				t.Fatalf("second Identity is not our div PASSporT (%v):\n%s", err, inv)
			}
			if !strings.HasPrefix(div.Payload.Orig.TN, caller) || !strings.HasPrefix(div.Payload.Dest.TN[0], "121555501") || !strings.Contains(string(div.Payload.Div), `"1202555010`) {
				t.Fatalf("div claims %+v %s", div.Payload, div.Payload.Div)
			}
		case "131255502":
			if !strings.Contains(pai[0], ";verstat=TN-Validation-Failed>") || len(ids) != 1 {
				t.Fatalf("forwarded call without div: want TN-Validation-Failed and the caller's Identity alone:\n%s", inv)
			}
		default:
			t.Fatalf("unknown caller %q:\n%s", pai[0], inv)
		}
	}
	for _, c := range []string{"131255500", "131255501", "131255502"} {
		if seen[c] != calls {
			t.Fatalf("UAS saw %d INVITEs from %s..., want %d (%v)", seen[c], c, calls, seen)
		}
	}
}

// metricValue reads one counter of the process's default metrics set.
func metricValue(t *testing.T, name string) float64 {
	t.Helper()
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestBrandedThroughAppliance: SIPp calls through a proxy-mode appliance
// whose rule signs Rich Call Data (a name and a logo, its rcdi digest
// computed at load), then through a verify-mode appliance to the UAS: the
// name is the display name and the logo a Call-Info marked verified. After
// the logo's content changes (after signing), the verifier detects the
// rcdi mismatch: verstat still TN-Validation-Passed, the name not shown,
// no Call-Info.
func TestBrandedThroughAppliance(t *testing.T) {
	bin, err := exec.LookPath("sipp")
	prereq.Need(t, err)
	wd, _ := os.Getwd()
	dir := t.TempDir()
	cs := newCarriers(t)
	var logo atomic.Value
	logo.Store("PNG-v1")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(logo.Load().(string)))
	}))
	t.Cleanup(web.Close)
	icon := web.URL + "/logo.png"
	const calls = 5 // per run
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	uas, trace, waitUAS := startUAS(t, ctx, bin, wd, dir, 2*calls)
	vs := startFastpath(t, divLo, ourX5U, cs.ourKey, []policy.RuleConfig{{Name: "peer", Action: "verify"}}, stiVS{cs.verifier(t)}, uas)
	brand := startFastpath(t, divLo, ourX5U, cs.ourKey, []policy.RuleConfig{{Name: "example-bank", Attest: "A",
		RCD: &rcd.Config{Nam: "Example Bank", Icn: icon, Crn: "Card alert"}}}, nil, vs)
	lines := func(caller string) []string {
		var out []string
		for i := range calls {
			out = append(out, fmt.Sprintf("%s%02d;121555501%02d;", caller, i, i))
		}
		return out
	}
	integrityBefore := metricValue(t, `shakenline_verify_rcd_total{result="integrity-failed"}`)
	runUAC(t, ctx, bin, wd, dir, "uac_invite_only.xml", brand, lines("131255503"))
	logo.Store("PNG-v2, replaced after signing")
	runUAC(t, ctx, bin, wd, dir, "uac_invite_only.xml", brand, lines("131255504"))
	waitUAS()
	if got := metricValue(t, `shakenline_verify_rcd_total{result="integrity-failed"}`) - integrityBefore; got != calls {
		t.Errorf("rcdi mismatches counted: %v, want %d", got, calls)
	}
	seen := map[string]int{}
	for _, inv := range traceInvites(t, trace) {
		pai, ci := HeaderValues(inv, "P-Asserted-Identity"), HeaderValues(inv, "Call-Info")
		if len(pai) != 1 || !strings.Contains(pai[0], ";verstat=TN-Validation-Passed>") {
			t.Fatalf("want TN-Validation-Passed:\n%s", inv)
		}
		switch {
		case strings.Contains(pai[0], "131255503"):
			seen["branded"]++
			if !strings.HasPrefix(pai[0], `"Example Bank" <tel:+131255503`) || len(ci) != 1 ||
				ci[0] != "<"+icon+`>;purpose=icon;verified;call-reason="Card alert"` || !strings.Contains(strings.Join(HeaderValues(inv, "From"), ""), `"Example Bank" <sip:+131255503`) {
				t.Fatalf("branded call: want the name and the logo:\n%s", inv)
			}
		case strings.Contains(pai[0], "131255504"):
			seen["changed logo"]++
			if bytes.Contains(inv, []byte("Example Bank")) || len(ci) != 0 {
				t.Fatalf("logo changed after signing: want no name, no Call-Info:\n%s", inv)
			}
		default:
			t.Fatalf("unknown caller %q", pai[0])
		}
	}
	if seen["branded"] != calls || seen["changed logo"] != calls {
		t.Fatalf("UAS saw %v, want %d of each", seen, calls)
	}
}
