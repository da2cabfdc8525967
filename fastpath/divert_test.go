package fastpath

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/rcd"
	"github.com/shakenline/shakenline/sip"
)

// The forwarded call of these tests: +12155550100 (another carrier's
// caller) called +12025550101, our customer, who forwards to the
// Request-URI of invite(), +12155550123.
const (
	callerTN    = "12155550100"
	forwarderTN = "12025550101"
	newTargetTN = "12155550123"
	otherX5U    = "https://cert.other.example/sp.pem"
)

// originalIdentity is the caller's carrier's shaken PASSporT for the call
// before it was forwarded (dest the forwarding number), signed with key.
func originalIdentity(t *testing.T, key *ecdsa.PrivateKey, dest string) string {
	t.Helper()
	b, err := passport.NewBuilder(otherX5U)
	if err != nil {
		t.Fatal(err)
	}
	v, err := passport.Sign(context.Background(), signertest.CryptoSigner{Key: key}, b,
		&passport.Claims{Attest: 'A', Orig: []byte(callerTN), Dest: [][]byte{[]byte(dest)}, IAT: time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// divPolicy signs div for our forwarding numbers (+1202555...), with the
// given div_unverified, and A for retail callers.
func divPolicy(unverified string) func(*Config, *testEnv) {
	return func(c *Config, _ *testEnv) {
		tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{
			{Name: "forwarding", Attest: "A", Numbers: []string{"+1202555*"}, Div: true, DivUnverified: unverified},
		}}, "C")
		if err != nil {
			panic(err)
		}
		c.Policy = policy.NewHolder(tbl)
	}
}

// identities returns the parsed Identity headers of a forwarded INVITE.
func identities(t *testing.T, got []byte) []*passport.Identity {
	t.Helper()
	m := parse(t, got)
	var out []*passport.Identity
	for i := range int(m.NumIdentity) {
		id, err := passport.ParseIdentityAny(string(m.Identity[i].In(got)))
		if err != nil {
			t.Fatalf("Identity %d: %v\n%s", i, err, got)
		}
		out = append(out, id)
	}
	return out
}

func divTN(t *testing.T, id *passport.Identity) string {
	t.Helper()
	var d struct{ TN string }
	if err := json.Unmarshal(id.Payload.Div, &d); err != nil {
		t.Fatal(err)
	}
	return d.TN
}

// TestDivAdded: a forwarded call that carries the caller's shaken
// PASSporT leaves with it and one div PASSporT per diversion we
// performed, orig copied from it, dest the Request-URI, div the
// diverted-from number, in both retarget headers; the audit line names
// the PASSporT types.
func TestDivAdded(t *testing.T) {
	other := newKey(t)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	var al *audit.Log
	te := start(t, Proxy, func(c *Config, te *testEnv) {
		divPolicy("")(c, te)
		var err error
		if al, err = audit.Open(auditPath, audit.Options{}); err != nil {
			t.Fatal(err)
		}
		c.Audit = al
	})
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	added, divs := mDivAdded.Get(), mPassportDiv.Get()
	for _, c := range []struct {
		name, retarget string
		divs           [][2]string // div, dest
	}{
		{"Diversion", "Diversion: <sip:+1-202-555-0101@ours.example;user=phone>;reason=no-answer;counter=1\r\n",
			[][2]string{{forwarderTN, newTargetTN}}},
		{"History-Info", "History-Info: <sip:+12025550101@ours.example;user=phone>;index=1,<sip:+12155550123@198.18.2.2;user=phone;cause=302>;index=1.1;mp=1\r\n",
			[][2]string{{forwarderTN, newTargetTN}}},
		{"two diversions", "Diversion: <tel:+12025550102>;reason=unconditional, <tel:+12025550101>;reason=user-busy\r\n",
			[][2]string{{forwarderTN, "12025550102"}, {"12025550102", newTargetTN}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			orig := originalIdentity(t, other, forwarderTN)
			te.send(t, invite(ca, "fw"+strings.ReplaceAll(c.name, " ", ""), "Date: "+time.Now().UTC().Format(sipDate)+"\r\n"+c.retarget+"Identity: "+orig+"\r\n"))
			got, _ := recv(t, te.next)
			ids := identities(t, got)
			if len(ids) != 1+len(c.divs) || ids[0].Raw != orig {
				t.Fatalf("want the original Identity first and %d div:\n%s", len(c.divs), got)
			}
			for i, want := range c.divs {
				d := ids[1+i]
				if d.PPT != passport.PPTDiv || d.Info != testX5U || passport.VerifySignature(&te.key.PublicKey, d) != nil {
					t.Fatalf("div %d: ppt %q info %q, or its signature fails", i, d.PPT, d.Info)
				}
				p := d.Payload
				if p.Orig.TN != callerTN || len(p.Dest.TN) != 1 || p.Dest.TN[0] != want[1] || divTN(t, d) != want[0] || p.Attest != "" || p.OrigID != "" {
					t.Errorf("div %d claims %+v div %s, want div %s dest %s", i, p, p.Div, want[0], want[1])
				}
				if p.IAT != ids[0].Payload.IAT && time.Since(time.Unix(p.IAT, 0)) > 2*time.Second {
					t.Errorf("div iat %d", p.IAT)
				}
			}
		})
	}
	if a, d := mDivAdded.Get()-added, mPassportDiv.Get()-divs; a != 3 || d != 4 {
		t.Errorf(`calls_div_total{outcome="added"} +%d, passports_signed_total{ppt="div"} +%d; want +3, +4`, a, d)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], " attest=- ppt=div rule=forwarding ") || !strings.Contains(lines[2], " ppt=div,div ") ||
		!strings.Contains(lines[0], "orig="+callerTN+" dest="+newTargetTN) {
		t.Errorf("audit lines:\n%s", b)
	}
}

// TestDivNotAdded: the cases that leave a forwarded call as it came.
func TestDivNotAdded(t *testing.T) {
	other := newKey(t)
	te := start(t, Proxy, divPolicy("forward"))
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	date := "Date: " + time.Now().UTC().Format(sipDate) + "\r\n"
	five := ""
	db, _ := passport.NewBuilderPPT(otherX5U, passport.PPTDiv)
	for i := range 5 {
		d, err := passport.SignDiv(context.Background(), signertest.CryptoSigner{Key: other}, db, &passport.DivClaims{Orig: []byte(callerTN),
			Dest: [][]byte{[]byte(fmt.Sprint(13125550100 + i))}, Div: []byte(fmt.Sprint(13125550099 + i)), IAT: time.Now().Unix()})
		if err != nil {
			t.Fatal(err)
		}
		five += "Identity: " + d + "\r\n"
	}
	for _, c := range []struct {
		name, extra string
		outcome     *metrics.Counter // shakenline_calls_div_total{outcome}
	}{
		{"diverted from a number no rule forwards for", "Diversion: <tel:+13125550101>\r\nIdentity: " + originalIdentity(t, other, "13125550101") + "\r\n", mDivNotOurs},
		{"already reaching the new target", "Diversion: <tel:+12025550101>\r\nIdentity: " + originalIdentity(t, other, newTargetTN) + "\r\n", mDivNone},
		{"verstat failed upstream", "Diversion: <tel:+12025550101>\r\nIdentity: " + originalIdentity(t, other, forwarderTN) + "\r\n", mDivUnverified},
		{"shaken PASSporT malformed", "Diversion: <tel:+12025550101>\r\nIdentity: eyJ.eyJ.sig;info=<https://x/c.pem>;alg=ES256;ppt=shaken\r\n", mDivUnverified},
		{"unlinked: dest is no diverted target", "Diversion: <tel:+12025550101>\r\nIdentity: " + originalIdentity(t, other, "13125550999") + "\r\n", mDivUnlinked},
		{"Diversion malformed", "Diversion: reason=x\r\nIdentity: " + originalIdentity(t, other, forwarderTN) + "\r\n", mDivBadRetarget},
		{"limit: five div received, one more needed", "Diversion: <tel:+12025550101>\r\nIdentity: " + originalIdentity(t, other, forwarderTN) + "\r\n" + five, mDivLimit},
	} {
		before, added := c.outcome.Get(), mDivAdded.Get()
		inv := invite(ca, fmt.Sprintf("nd%d", len(c.name)), date+c.extra)
		if c.name == "verstat failed upstream" {
			inv = bytes.Replace(inv, []byte("<tel:+1-215-555-0100>"), []byte("<tel:+1-215-555-0100;verstat=TN-Validation-Failed>"), 1)
		}
		var m sip.Message
		if err := m.Parse(inv); err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, inv)
		}
		te.send(t, inv)
		got, _ := recv(t, te.next)
		if n := parse(t, got).TotalIdentity; n != m.TotalIdentity || len(header(got, "P-Identity-Bypass")) != 0 {
			t.Errorf("%s: %d Identity headers, want the %d it came with:\n%s", c.name, n, m.TotalIdentity, got)
		}
		if n := c.outcome.Get() - before; n != 1 || mDivAdded.Get() != added {
			t.Errorf("%s: its outcome counter +%d, want +1; added +%d, want +0", c.name, n, mDivAdded.Get()-added)
		}
	}
}

// TestDivUnverifiedSignsC: with the default div_unverified (sign), a
// forwarded call whose shaken PASSporT an upstream verifier failed gets a
// shaken PASSporT of ours, attestation C; one without any SHAKEN Identity
// is signed like any call.
func TestDivUnverifiedSignsC(t *testing.T) {
	other := newKey(t)
	te := start(t, Proxy, divPolicy(""))
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	inv := invite(ca, "unv", "Diversion: <tel:+12025550101>\r\nIdentity: "+originalIdentity(t, other, forwarderTN)+"\r\n")
	inv = bytes.Replace(inv, []byte("<tel:+1-215-555-0100>"), []byte("<tel:+1-215-555-0100;verstat=No-TN-Validation>"), 1)
	te.send(t, inv)
	got, _ := recv(t, te.next)
	ids := identities(t, got)
	if len(ids) != 2 || ids[1].PPT != passport.PPTShaken || ids[1].Payload.Attest != "C" || ids[1].Payload.Orig.TN != callerTN ||
		passport.VerifySignature(&te.key.PublicKey, ids[1]) != nil {
		t.Fatalf("want the received Identity and ours, attestation C:\n%s", got)
	}
	missing := mDivMissing.Get()
	te.send(t, invite(ca, "missing", "Diversion: <tel:+12025550101>\r\n"))
	got, _ = recv(t, te.next)
	if ids := identities(t, got); len(ids) != 1 || ids[0].Payload.Attest != "C" {
		t.Fatalf("unsigned forwarded call: want one shaken PASSporT (the default attestation):\n%s", got)
	}
	if n := mDivMissing.Get() - missing; n != 1 {
		t.Errorf(`calls_div_total{outcome="missing"} +%d, want +1`, n)
	}
}

// TestDivSignedOnLoop: with a warm software key the div PASSporTs of a
// call diverted twice are signed on the loop, and verify.
func TestDivSignedOnLoop(t *testing.T) {
	other := newKey(t)
	te := start(t, Proxy, func(c *Config, te *testEnv) {
		divPolicy("")(c, te)
		soft, err := hsm.NewSoftware("soft", te.key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { soft.Close() })
		chain, err := hsm.New(context.Background(), hsm.Config{Signers: []hsm.SignerConfig{{Signer: soft}}}, selfSigned(t, te.key))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { chain.Close() })
		c.Signer = chain
	})
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	before := mSignedOnLoop.Get()
	for i := range 20 {
		te.send(t, invite(ca, fmt.Sprintf("dl%d", i), "Diversion: <tel:+12025550102>, <tel:+12025550101>\r\nIdentity: "+originalIdentity(t, other, forwarderTN)+"\r\n"))
		got, _ := recv(t, te.next)
		ids := identities(t, got)
		if len(ids) != 3 {
			t.Fatalf("call %d: %d Identity headers", i, len(ids))
		}
		for _, d := range ids[1:] {
			if passport.VerifySignature(&te.key.PublicKey, d) != nil {
				t.Fatalf("call %d: div signature", i)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if mSignedOnLoop.Get() == before {
		t.Error("no forwarded call was signed on the loop")
	}
}

// TestRCDSigned: a rule's Rich Call Data go into the shaken PASSporT, or
// into an rcd PASSporT of their own (rcd_ppt: rcd).
func TestRCDSigned(t *testing.T) {
	for _, separate := range []bool{false, true} {
		t.Run(fmt.Sprint("separate=", separate), func(t *testing.T) {
			auditPath := filepath.Join(t.TempDir(), "audit.log")
			var al *audit.Log
			te := start(t, Proxy, func(c *Config, _ *testEnv) {
				var err error
				if al, err = audit.Open(auditPath, audit.Options{}); err != nil {
					t.Fatal(err)
				}
				c.Audit = al
				rc := policy.RuleConfig{Name: "bank", Attest: "A", Numbers: []string{"+" + callerTN},
					RCD: &rcd.Config{Nam: "Example Bank", Icn: "https://brand.example/logo.png", Crn: "Fraud alert"}}
				if separate {
					rc.RCDPPT = "rcd"
				}
				tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{rc}}, "C")
				if err != nil {
					t.Fatal(err)
				}
				if err := tbl.ResolveRCD(context.Background(), func(context.Context, string) ([]byte, error) { return []byte("PNG"), nil }); err != nil {
					t.Fatal(err)
				}
				c.Policy = policy.NewHolder(tbl)
			})
			ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
			shakens, rcds := mPassportShaken.Get(), mPassportRCD.Get()
			te.send(t, invite(ca, fmt.Sprint("rcd", separate), ""))
			got, _ := recv(t, te.next)
			ids := identities(t, got)
			want := 1
			if separate {
				want = 2
			}
			if len(ids) != want {
				t.Fatalf("%d Identity headers, want %d:\n%s", len(ids), want, got)
			}
			sh, rc := ids[0], ids[0]
			if separate {
				rc = ids[1]
				if rc.PPT != passport.PPTRCD || len(sh.Payload.RCD) != 0 || rc.Payload.Attest != "" {
					t.Fatalf("separate rcd PASSporT: %+v / %+v", sh.Payload, rc.Payload)
				}
			}
			for _, id := range ids {
				if passport.VerifySignature(&te.key.PublicKey, id) != nil {
					t.Fatalf("%s PASSporT does not verify", id.PPT)
				}
			}
			p := rc.Payload
			if string(p.RCD) != `{"icn":"https://brand.example/logo.png","nam":"Example Bank"}` || p.CRN != "Fraud alert" ||
				string(p.RCDI) != `{"/icn":"`+rcd.Digest([]byte("PNG"))+`"}` || p.Orig.TN != callerTN || p.Dest.TN[0] != newTargetTN {
				t.Errorf("rcd claims %+v", p)
			}
			if sh.Payload.Attest != "A" {
				t.Errorf("attest %q", sh.Payload.Attest)
			}
			wantPPT, wantRCD := " attest=A ppt=shaken+rcd rule=bank ", uint64(0)
			if separate {
				wantPPT, wantRCD = " attest=A ppt=shaken,rcd rule=bank ", 1
			}
			if s, r := mPassportShaken.Get()-shakens, mPassportRCD.Get()-rcds; s != 1 || r != wantRCD {
				t.Errorf(`passports_signed_total{ppt="shaken"} +%d, {ppt="rcd"} +%d; want +1, +%d`, s, r, wantRCD)
			}
			if err := al.Close(); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(auditPath); err != nil || !strings.Contains(string(b), wantPPT) {
				t.Errorf("audit line %q (%v), want %q in it", b, err, wantPPT)
			}
		})
	}
}

// TestPlainPathUnchanged: a call that is not forwarded and has no rcd
// rule still signs exactly one shaken PASSporT (the div and rcd code
// stays off its way).
func TestPlainPathUnchanged(t *testing.T) {
	te := start(t, Proxy, divPolicy(""))
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	te.send(t, invite(ca, "plain", ""))
	got, _ := recv(t, te.next)
	if ids := identities(t, got); len(ids) != 1 || ids[0].PPT != passport.PPTShaken || len(ids[0].Payload.RCD) != 0 {
		t.Fatalf("plain call:\n%s", got)
	}
}
