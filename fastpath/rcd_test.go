package fastpath

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/rcd"
	"github.com/shakenline/shakenline/sip"
	"github.com/shakenline/shakenline/tnauth"
	"github.com/shakenline/shakenline/verify"
)

func TestStripCallInfo(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"only ours to strip", "Call-Info: <https://x/logo.png>;purpose=icon;verified\r\n", ""},
		{"mixed element list", "Call-Info: <https://x/about>;purpose=info, <https://x/logo.png>;purpose=ICON, <https://x/c.json>;purpose=jcard\r\n",
			"Call-Info: <https://x/about>;purpose=info\r\n"},
		{"call-reason on an info element", "Call-Info: <https://x/about>;purpose=info;call-reason=\"Sale\"\r\n", ""},
		{"harmless", "Call-Info: <https://x/about>;purpose=info\r\n", "Call-Info: <https://x/about>;purpose=info\r\n"},
		{"malformed naming an icon", "Call-Info: https://x/logo.png;purpose=icon\r\n", ""},
		{"malformed, harmless", "Call-Info: https://x/about\r\n", "Call-Info: https://x/about\r\n"},
		{"several lines, lower case name", "call-info: <https://x/a.png>;purpose=icon\r\nSubject: s\r\nCALL-INFO: <https://x/b>;verified\r\n", "Subject: s\r\n"},
	} {
		pkt := []byte("INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\r\nFrom: <tel:+12155550100>;tag=1\r\n" +
			"To: <sip:+12155550123@198.18.2.2>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n" + c.in + "Content-Length: 0\r\n\r\n")
		var m sip.Message
		if err := m.Parse(pkt); err != nil {
			t.Fatal(err)
		}
		out, changed := stripCallInfo(nil, pkt, &m, nil)
		if !changed {
			out = pkt
		}
		want := bytes.Replace(pkt, []byte(c.in), []byte(c.want), 1)
		if !bytes.Equal(out, want) || changed != (c.in != c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, out, want)
		}
	}
}

func TestVerstatAnnotationWithName(t *testing.T) {
	msg := []byte("INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\r\n" +
		"From: Mallory <sip:+12155550100@198.18.1.2>;tag=1\r\nP-Asserted-Identity: tel:+12155550100, \"Bank\" <sip:+12155550100@198.18.1.2;user=phone>\r\n" +
		"To: <sip:+12155550123@198.18.2.2>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	var m sip.Message
	if err := m.Parse(msg); err != nil {
		t.Fatal(err)
	}
	ann, _ := verstatAnnotation(nil, msg, &m, []byte(";verstat=TN-Validation-Passed"), `Example "Bank" \ Ltd`)
	var ed edits
	ann.addTo(&ed)
	got := ed.apply(nil, msg)
	for _, want := range []string{
		"From: \"Example \\\"Bank\\\" \\\\ Ltd\" <sip:+12155550100@198.18.1.2>;tag=1\r\n",
		"P-Asserted-Identity: \"Example \\\"Bank\\\" \\\\ Ltd\" <tel:+12155550100;verstat=TN-Validation-Passed>, \"Example \\\"Bank\\\" \\\\ Ltd\" <sip:+12155550100@198.18.1.2;user=phone>\r\n",
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("want %q in\n%s", want, got)
		}
	}
	if err := m.Parse(got); err != nil {
		t.Fatalf("annotated message does not parse: %v", err)
	}
}

// TestTerminatingRichCallData: a verified call's name becomes the display
// name and its logo a Call-Info marked verified, the caller's own
// Call-Info icon removed; a logo changed after signing shows neither, and
// the call still passes.
func TestTerminatingRichCallData(t *testing.T) {
	var logo atomic.Value
	logo.Store("PNG-v1")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(logo.Load().(string)))
	}))
	t.Cleanup(web.Close)
	icon := web.URL + "/logo.png"
	rc, err := rcd.Compile(rcd.Config{Nam: "Example Bank", Icn: icon, Crn: "Card alert"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Resolve(context.Background(), verify.NewContentFetcher(verify.ContentConfig{AllowHTTP: true, AllowPrivate: true}).Fetch); err != nil {
		t.Fatal(err)
	}
	// The peer carrier and a verifier that trusts it.
	root, _ := labpki.NewCA("peer-root", nil)
	inter, _ := labpki.NewCA("peer-intermediate", root)
	leaf, key, err := inter.IssueSP("5678", tnauth.List{SPCs: []string{"5678"}}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	v, err := verify.New(verify.Config{Trust: map[string]*x509.CertPool{"peer": pool}, AllowHTTP: true, AllowPrivate: true,
		Static: map[string][]*x509.Certificate{peerX5U: {leaf, inter.Cert}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	b, _ := passport.NewBuilder(peerX5U)
	sign := func() string {
		c := passport.Claims{Attest: 'A', Orig: []byte("12155550100"), Dest: [][]byte{[]byte("12155550123")}, IAT: time.Now().Unix(), RCD: rc.Passport()}
		_, _ = rand.Read(c.OrigID[:])
		id, err := passport.Sign(context.Background(), signertest.CryptoSigner{Key: key}, b, &c)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	te := start(t, Proxy, func(c *Config, _ *testEnv) {
		c.Verifier = realVerifier{v}
		tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{{Name: "peer", Action: "verify", Sources: []string{"127.0.0.0/8"}}}}, "C")
		if err != nil {
			t.Fatal(err)
		}
		c.Policy.Store(tbl)
	})
	ca := te.client.LocalAddr().(*net.UDPAddr).AddrPort()
	forged := "Call-Info: <https://evil.example/logo.png>;purpose=icon;verified, <https://bank.example/about>;purpose=info\r\n"

	te.send(t, invite(ca, "rcd1", "Identity: "+sign()+"\r\n"+forged))
	got, _ := recv(t, te.next)
	pai, from, ci := header(got, "P-Asserted-Identity"), header(got, "From"), header(got, "Call-Info")
	if len(pai) != 1 || pai[0] != `"Example Bank" <tel:+1-215-555-0100;verstat=TN-Validation-Passed>` {
		t.Errorf("PAI %q", pai)
	}
	if len(from) != 1 || !strings.HasPrefix(from[0], `"Example Bank" <sip:+12155550100@198.18.1.2>;tag=`) {
		t.Errorf("From %q", from)
	}
	if len(ci) != 2 || ci[0] != "<https://bank.example/about>;purpose=info" ||
		ci[1] != "<"+icon+`>;purpose=icon;verified;call-reason="Card alert"` {
		t.Errorf("Call-Info %q", ci)
	}

	// The logo changes after signing: verstat passes, nothing of the rcd
	// is shown, the forged icon is still removed.
	logo.Store("PNG-v2")
	te.send(t, invite(ca, "rcd2", "Identity: "+sign()+"\r\n"+forged))
	got, _ = recv(t, te.next)
	pai, ci = header(got, "P-Asserted-Identity"), header(got, "Call-Info")
	if len(pai) != 1 || pai[0] != "<tel:+1-215-555-0100;verstat=TN-Validation-Passed>" || strings.Contains(string(got), "Example Bank") {
		t.Errorf("changed logo: PAI %q\n%s", pai, got)
	}
	if len(ci) != 1 || ci[0] != "<https://bank.example/about>;purpose=info" {
		t.Errorf("changed logo: Call-Info %q", ci)
	}
}

// FuzzStripCallInfo: what stripCallInfo leaves parses, holds no RCD
// Call-Info element, and keeps every other header line.
func FuzzStripCallInfo(f *testing.F) {
	for _, h := range []string{
		"Call-Info: <https://x/logo.png>;purpose=icon;verified, <https://x/about>;purpose=info\r\n",
		"call-info :<https://x/c.json> ; purpose=\"jcard\";call-reason=\"a, b\"\r\nCall-Info: https://x/y;purpose=icon\r\n",
		"Call-Info: <https://x/a>\r\n, <b>\r\n",
	} {
		f.Add([]byte("INVITE sip:+12155550123@198.18.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\r\nFrom: <tel:+12155550100>;tag=1\r\n" +
			"To: <sip:+12155550123@198.18.2.2>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n" + h + "Content-Length: 0\r\n\r\n"))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var in, out sip.Message
		if in.Parse(b) != nil {
			return
		}
		got, changed := stripCallInfo(nil, b, &in, nil)
		if !changed {
			return
		}
		if err := out.Parse(got); err != nil {
			t.Fatalf("stripped message does not parse: %v\nin:  %q\nout: %q", err, b, got)
		}
		for line, v := sip.NextHeader(got, &out, 0, "call-info", ""); !line.Empty(); line, v = sip.NextHeader(got, &out, int(line.End), "call-info", "") {
			cis, ok := sip.ParseCallInfo(got, v, nil)
			if !ok && rcdMentions(v.In(got)) {
				t.Fatalf("malformed RCD Call-Info kept: %q", line.In(got))
			}
			for i := range cis {
				if rcdCallInfo(got, &cis[i]) {
					t.Fatalf("RCD Call-Info kept: %q\nout: %q", cis[i].Value.In(got), got)
				}
			}
		}
		if out.CallID != in.CallID && !bytes.Equal(out.CallID.In(got), in.CallID.In(b)) || out.TotalIdentity != in.TotalIdentity ||
			!bytes.Equal(out.Body.In(got), in.Body.In(b)) {
			t.Fatalf("other headers or body changed:\nin:  %q\nout: %q", b, got)
		}
	})
}
