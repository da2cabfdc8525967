package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/passport"
)

func runIn(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var o, e bytes.Buffer
	code := run(context.Background(), args, env{stdin: strings.NewReader(stdin), stdout: &o, stderr: &e, now: time.Now})
	return code, o.String(), e.String()
}

func TestSignThenVerify(t *testing.T) {
	pki := labPKI(t)
	key, cert := filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem")
	const x5u = "https://cert.example.org/sp.pem"
	signArgs := []string{"sign", "--key", key, "--cert", cert, "--x5u", x5u}

	// Claims as JSON (the ATIS signingRequest shape), with an extension claim.
	code, out, errs := runIn(t, `{"signingRequest":{"attest":"B","dest":{"tn":["+44 20 7946 0018"]},"orig":{"tn":"+1-215-555-0100"},
		"origid":"123e4567-e89b-42d3-a456-426614174000","crn":"Order update"}}`, signArgs...)
	if code != 0 {
		t.Fatalf("sign JSON: exit %d: %s", code, errs)
	}
	id, err := passport.ParseIdentity(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if err := passport.VerifySignature(leafKey(t, pki), id); err != nil {
		t.Fatal(err)
	}
	p := id.Payload
	if p.Attest != "B" || p.Orig.TN != "12155550100" || p.Dest.TN[0] != "442079460018" ||
		p.OrigID != "123e4567-e89b-42d3-a456-426614174000" || p.CRN != "Order update" {
		t.Fatalf("claims %+v", p)
	}

	// The same header through verify: passes; with a tampered payload it
	// fails; with a trust store that does not hold our root it fails.
	in := "Identity: " + strings.TrimSpace(out) + "\nFrom: <tel:+12155550100>\nTo: <tel:+442079460018>\n"
	verifyArgs := []string{"verify", "--trust", "lab=" + filepath.Join(pki, "root.pem"), "--cert", cert}
	code, vout, verrs := runIn(t, in, verifyArgs...)
	var res verifyOutput
	if err := json.Unmarshal([]byte(vout), &res); err != nil || code != 0 || res.Verstat != "TN-Validation-Passed" || res.TrustStore != "lab" {
		t.Fatalf("verify: exit %d %+v %v %s", code, res, err, verrs)
	}
	parts := strings.SplitN(strings.TrimSpace(out), ".", 3)
	tampered := parts[0] + "." + strings.Replace(parts[1], parts[1][10:12], "AA", 1) + "." + parts[2]
	code, vout, _ = runIn(t, "Identity: "+tampered+"\nFrom: <tel:+12155550100>\nTo: <tel:+442079460018>\n", verifyArgs...)
	if code != 1 || !strings.Contains(vout, "TN-Validation-Failed") {
		t.Fatalf("tampered: exit %d %s", code, vout)
	}
	other := labPKI(t)
	code, vout, _ = runIn(t, in, "verify", "--trust", "other="+filepath.Join(other, "root.pem"), "--cert", cert)
	if code != 1 || !strings.Contains(vout, `"reasoncode": 437`) {
		t.Fatalf("untrusted root: exit %d %s", code, vout)
	}

	// A SIP INVITE on stdin: claims taken as the fast path takes them
	// (PAI before From, To for dest, national numbers with the default
	// country).
	invite := "INVITE sip:02079460018@198.18.2.2 SIP/2.0\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\n" +
		"From: <sip:anonymous@anonymous.invalid>;tag=1\nTo: <sip:020-7946-0018@198.18.2.2;user=phone>\n" +
		"P-Asserted-Identity: <tel:01632960123>\nCall-ID: c1\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
	code, out, errs = runIn(t, invite, append(signArgs, "--default-country", "GB", "--attest", "C")...)
	if code != 0 {
		t.Fatalf("sign SIP: exit %d %s", code, errs)
	}
	id, err = passport.ParseIdentity(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if id.Payload.Orig.TN != "441632960123" || id.Payload.Dest.TN[0] != "442079460018" || id.Payload.Attest != "C" {
		t.Fatalf("SIP claims %+v", id.Payload)
	}
	// No number to sign: a clear error, exit 2.
	if code, _, errs := runIn(t, strings.Replace(invite, "P-Asserted-Identity: <tel:01632960123>\n", "", 1), signArgs...); code != 2 || !strings.Contains(errs, "no calling telephone number") {
		t.Fatalf("anonymous: exit %d %q", code, errs)
	}
}

// TestSignDivAndRCD: `appliance sign` makes standard PASSporTs of div
// and Rich Call Data: JSON with a div claim gives a div PASSporT; with rcd
// and --rcd-ppt rcd a shaken and an rcd PASSporT; a forwarded SIP INVITE
// under a div rule gives its div PASSporT, orig copied from the received
// shaken PASSporT.
func TestSignDivAndRCD(t *testing.T) {
	pki := labPKI(t)
	signArgs := signArgsFor(pki)
	key := leafKey(t, pki)
	parse := func(out string, want ...string) []*passport.Identity {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(want) {
			t.Fatalf("%d Identity values, want %d:\n%s", len(lines), len(want), out)
		}
		var ids []*passport.Identity
		for i, l := range lines {
			id, err := passport.ParseIdentityAny(l)
			if err != nil || id.PPT != want[i] || passport.VerifySignature(key, id) != nil {
				t.Fatalf("line %d: %v ppt %v", i, err, id)
			}
			ids = append(ids, id)
		}
		return ids
	}
	code, out, errs := runIn(t, `{"dest":{"tn":["12155550123"]},"orig":{"tn":"12155550100"},"div":{"tn":"12025550101"}}`, signArgs...)
	if code != 0 {
		t.Fatalf("div JSON: exit %d %s", code, errs)
	}
	if p := parse(out, "div")[0].Payload; p.Attest != "" || string(p.Div) != `{"tn":"12025550101"}` || p.Dest.TN[0] != "12155550123" {
		t.Errorf("div claims %+v", p)
	}
	code, out, errs = runIn(t, `{"attest":"A","dest":{"tn":["12155550123"]},"orig":{"tn":"12155550100"},"rcd":{"nam":"Example Bank"},"crn":"Alert"}`,
		append(signArgs, "--rcd-ppt", "rcd")...)
	if code != 0 {
		t.Fatalf("rcd JSON: exit %d %s", code, errs)
	}
	ids := parse(out, "shaken", "rcd")
	if len(ids[0].Payload.RCD) != 0 || string(ids[1].Payload.RCD) != `{"nam":"Example Bank"}` || ids[1].Payload.CRN != "Alert" {
		t.Errorf("shaken %+v rcd %+v", ids[0].Payload, ids[1].Payload)
	}

	// A forwarded INVITE, under a div rule for the forwarding number.
	cfgPath := filepath.Join(t.TempDir(), "sign.yaml")
	if err := os.WriteFile(cfgPath, []byte("policy:\n  rules:\n    - name: fwd\n      attest: A\n      numbers: [\"+1202555*\"]\n      div: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, shaken, errs := runIn(t, `{"attest":"A","dest":{"tn":["12025550101"]},"orig":{"tn":"12155550100"}}`, signArgs...)
	if code != 0 {
		t.Fatalf("%d %s", code, errs)
	}
	invite := "INVITE sip:+12155550123@198.18.2.2 SIP/2.0\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\n" +
		"From: <sip:+12155550100@198.18.1.2>;tag=1\nTo: <sip:+12155550123@198.18.2.2>\nCall-ID: c1\nCSeq: 1 INVITE\n" +
		"Diversion: <tel:+12025550101>;reason=unconditional\nIdentity: " + strings.TrimSpace(shaken) + "\nContent-Length: 0\n\n"
	code, out, errs = runIn(t, invite, append(signArgs, "--config", cfgPath)...)
	if code != 0 {
		t.Fatalf("forwarded SIP: exit %d %s", code, errs)
	}
	if p := parse(out, "div")[0].Payload; p.Orig.TN != "12155550100" || p.Dest.TN[0] != "12155550123" || string(p.Div) != `{"tn":"12025550101"}` {
		t.Errorf("div from SIP %+v %s", p, p.Div)
	}
}

func signArgsFor(pki string) []string {
	return []string{"sign", "--key", filepath.Join(pki, "sp.key"), "--cert", filepath.Join(pki, "sp.pem"),
		"--x5u", "https://cert.example.org/sp.pem"}
}

// TestSignJSONNumbers: `appliance sign` takes JSON TNs as the API does
// (E.164 as given, never a default country; docs/API.md, "Telephone
// numbers").
func TestSignJSONNumbers(t *testing.T) {
	signArgs := signArgsFor(labPKI(t))
	code, out, errs := runIn(t, `{"attest":"A","dest":{"tn":["442079460123"]},"orig":{"tn":"+1 202 555 0143"}}`, signArgs...)
	id, err := passport.ParseIdentity(strings.TrimSpace(out))
	if code != 0 || err != nil || id.Payload.Dest.TN[0] != "442079460123" || id.Payload.Orig.TN != "12025550143" {
		t.Fatalf("JSON: exit %d %s %v %+v", code, errs, err, id)
	}
	for _, tn := range []string{"2025550143x", "2155550123", "02079460123"} {
		code, _, errs := runIn(t, `{"attest":"A","dest":{"tn":["`+tn+`"]},"orig":{"tn":"12025550143"}}`, signArgs...)
		if code != 2 || !strings.Contains(errs, "dest.tn") {
			t.Fatalf("JSON dest %q: exit %d %q, want refused", tn, code, errs)
		}
	}
}

// TestSignSIPDate: `appliance sign` applies the fast path's Date rules to a
// SIP INVITE: no Date, iat now and the Date to send on stderr; a stale
// Date refused (exit 2) unless stale_date: replace.
func TestSignSIPDate(t *testing.T) {
	signArgs := signArgsFor(labPKI(t))
	invite := func(date string) string {
		return "INVITE sip:+442079460123@198.18.2.2 SIP/2.0\nVia: SIP/2.0/UDP 198.18.1.2;branch=z9hG4bK1\n" +
			"From: <sip:+12025550143@198.18.1.2>;tag=1\nTo: <sip:+442079460123@198.18.2.2>\n" +
			"Call-ID: c1\nCSeq: 1 INVITE\n" + date + "Content-Length: 0\n\n"
	}
	code, out, errs := runIn(t, invite(""), signArgs...)
	id, err := passport.ParseIdentity(strings.TrimSpace(out))
	if code != 0 || err != nil || !strings.Contains(errs, "no Date") {
		t.Fatalf("no Date: exit %d %q %v", code, errs, err)
	}
	if want := "Date: " + time.Unix(id.Payload.IAT, 0).UTC().Format(http.TimeFormat); !strings.Contains(errs, want) {
		t.Fatalf("no Date: stderr %q does not name %q", errs, want)
	}
	stale := "Date: " + time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat) + "\n"
	if code, _, errs := runIn(t, invite(stale), signArgs...); code != 2 || !strings.Contains(errs, "freshness") {
		t.Fatalf("stale Date: exit %d %q, want refused", code, errs)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte("stale_date: replace\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runIn(t, invite(stale), append(signArgs, "--config", cfg)...)
	id, err = passport.ParseIdentity(strings.TrimSpace(out))
	if code != 0 || err != nil || !strings.Contains(errs, "stale_date: replace") || time.Since(time.Unix(id.Payload.IAT, 0)) > 5*time.Second {
		t.Fatalf("stale Date, replace: exit %d %q %v", code, errs, err)
	}
}
