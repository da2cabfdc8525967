package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCountries(t *testing.T) {
	if len(Countries) < 20 {
		t.Fatalf("%d countries, want at least 20", len(Countries))
	}
	variable := 0
	for _, c := range Countries {
		lens := map[int]bool{}
		for _, n := range c.Numbers {
			if !strings.HasPrefix(n, c.CC) || len(n) > 15 {
				t.Errorf("%s: %s is not +%s... E.164", c.ISO, n, c.CC)
			}
			lens[len(n)] = true
		}
		if c.Variable != (len(lens) > 1) {
			t.Errorf("%s: Variable %v but %d lengths", c.ISO, c.Variable, len(lens))
		}
		if c.Variable {
			variable++
		}
	}
	if variable < 3 {
		t.Fatalf("%d variable-length plans", variable)
	}
}

func find(calls []Call, k Kind, orig, term string) *Call {
	for i := range calls {
		if c := &calls[i]; c.Kind == k && c.Orig == orig && c.Term == term {
			return c
		}
	}
	return nil
}

// TestPlanExpectations: the trust rules of the issue: global-signed
// accepted by everyone trusting the G-CA, national-signed only where
// trusted, failures rejected with the code at verify-reject carriers.
func TestPlanExpectations(t *testing.T) {
	carriers := DefaultCarriers()
	calls := Plan(carriers)
	for _, tc := range []struct {
		kind       Kind
		orig, term string
		want       string
	}{
		{KindSigned, "meridian", "atlantic", "TN-Validation-Passed attest A"},
		{KindSigned, "atlantic", "meridian", "TN-Validation-Passed attest A"},
		{KindSigned, "atlantic", "sakura", "TN-Validation-Failed"},
		{KindSigned, "atlantic", "lumiere", "rejected 437"},
		{KindSigned, "lumiere", "rheinfunk", "TN-Validation-Passed attest A"},
		{KindUnsigned, "meridian", "lumiere", "rejected 428"},
		{KindUnsigned, "meridian", "sakura", "No-TN-Validation"},
		{KindTNMismatch, "sakura", "lumiere", "rejected 438"},
		{KindRevoked, "meridian", "lumiere", "rejected 437"},
		{KindReplay, "meridian", "atlantic", "TN-Validation-Failed"},
		{KindReplayFirst, "meridian", "atlantic", "TN-Validation-Passed attest A"},
		{KindTamperOrig, "atlantic", "meridian", "TN-Validation-Failed"},
	} {
		c := find(calls, tc.kind, tc.orig, tc.term)
		if c == nil {
			t.Errorf("no %s call %s->%s", tc.kind, tc.orig, tc.term)
			continue
		}
		if got := c.Expect.String(); got != tc.want {
			t.Errorf("%s %s->%s: expect %q, want %q", tc.kind, tc.orig, tc.term, got, tc.want)
		}
	}
	// Forwarded and branded calls (docs/STANDARDS.md, "div" and "rcd").
	for _, tc := range []struct {
		kind      Kind
		via, term string
		want      string
	}{
		{KindForwarded, "atlantic", "meridian", "TN-Validation-Passed attest A"},
		{KindForwardedNoDiv, "atlantic", "meridian", "TN-Validation-Failed"},
		{KindForwarded, "lumiere", "atlantic", "TN-Validation-Failed"}, // FR-signed div, atlantic does not trust FR
		{KindForwarded, "meridian", "sakura", "TN-Validation-Passed attest A"},
		{KindForwardedNoDiv, "meridian", "lumiere", "rejected 438"},
	} {
		var c *Call
		for i := range calls {
			if calls[i].Kind == tc.kind && calls[i].Via == tc.via && calls[i].Term == tc.term {
				c = &calls[i]
			}
		}
		if c == nil {
			t.Errorf("no %s call via %s to %s", tc.kind, tc.via, tc.term)
			continue
		}
		if got := c.Expect.String(); got != tc.want || c.Signer != "pre-signed" || c.Forwarder.TN == "" || c.Orig == tc.via {
			t.Errorf("%s via %s to %s: expect %q (%+v), want %q", tc.kind, tc.via, tc.term, got, c, tc.want)
		}
	}
	for _, tc := range []struct {
		kind       Kind
		orig, term string
		want       string
	}{
		{KindBranded, "meridian", "atlantic", `TN-Validation-Passed attest A name "Meridian Global Voice" logo`},
		{KindBrandChanged, "meridian", "atlantic", "TN-Validation-Passed attest A"},
		{KindBranded, "lumiere", "atlantic", "TN-Validation-Failed"},
		{KindBranded, "atlantic", "lumiere", "rejected 437"},
	} {
		c := find(calls, tc.kind, tc.orig, tc.term)
		if c == nil || c.Expect.String() != tc.want {
			t.Errorf("%s %s->%s: %v, want %q", tc.kind, tc.orig, tc.term, c, tc.want)
		}
	}
	if find(calls, KindBranded, "rheinfunk", "atlantic") != nil {
		t.Error("a Kamailio carrier signs no Rich Call Data")
	}
	// The brand numbers are no other call's caller, and a TN-range
	// certificate covers them.
	for _, c := range calls {
		if c.Kind == KindBranded || c.Kind == KindBrandChanged {
			continue
		}
		for _, o := range carriers {
			if c.Caller == BrandNumber(o) || c.Caller == BrandChangingNumber(o) {
				t.Errorf("%s call %d uses brand number %s", c.Kind, c.ID, c.Caller.TN)
			}
		}
	}
	sk, covered := carriers[3], false
	for _, r := range TNRanges(sk) {
		if b := BrandNumber(sk).TN; len(b) == len(r) && b[:len(b)-2] == r[:len(r)-2] {
			covered = true
		}
	}
	if !covered {
		t.Errorf("sakura's TN ranges %v do not cover its brand number %s", TNRanges(sk), BrandNumber(sk).TN)
	}
	sum := Summary(carriers, calls)
	if !strings.HasPrefix(sum, "5 carriers, 22 countries") {
		t.Errorf("summary %q", sum)
	}
	attests := map[byte]int{}
	for _, c := range calls {
		if c.Kind == KindSigned {
			attests[c.Trunk]++
		}
	}
	if attests['A'] == 0 || attests['B'] == 0 || attests['C'] == 0 {
		t.Errorf("attest coverage %v", attests)
	}
	// The TN-mismatch caller really is outside the carrier's ranges.
	sak := carriers[3]
	out := outside(sak)
	for _, start := range TNRanges(sak) {
		if len(start) == len(out.TN) && out.TN[:len(out.TN)-2] == start[:len(start)-2] {
			t.Errorf("outside number %s is in range %s", out.TN, start)
		}
	}
}

// TestReport renders a synthetic result: the matrix, country table and
// failures section are there in both formats.
func TestReport(t *testing.T) {
	carriers := DefaultCarriers()[:2]
	plan := Plan(carriers)
	r := &Result{Started: time.Now(), Carriers: carriers}
	for i, c := range plan {
		cr := CallResult{Call: c, Latency: time.Duration(i+1) * time.Millisecond, Pass: i != 0}
		cr.Got = Outcome{Delivered: c.Expect.Delivered, Code: 200, Verstat: c.Expect.Verstat, Attest: c.Expect.Attest, OrigTN: c.Caller.TN}
		r.Calls = append(r.Calls, cr)
	}
	dir := t.TempDir()
	files, err := WriteReport(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("files %v", files)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	h, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for _, want := range []string{"| atlantic (US) | — |", "interop FAIL", "United States", "#1 signed"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if !strings.Contains(string(h), `<td class="bad">`) || !strings.Contains(string(h), "<b>interop FAIL") {
		t.Errorf("report.html lacks the failure marking")
	}
	// report.md is the summary kept in git without the plot: it names the
	// plot and embeds nothing; report.html, beside the plot, shows it.
	if _, err := os.Stat(filepath.Join(dir, "latency.png")); err == nil {
		if strings.Contains(string(md), "![") || !strings.Contains(string(md), "`latency.png`, beside this report") {
			t.Errorf("report.md embeds or does not name the plot")
		}
		if !strings.Contains(string(h), `<img src="latency.png"`) {
			t.Errorf("report.html lost the plot")
		}
	}
	if !strings.Contains(string(md), "the only file of it kept in git") {
		t.Errorf("report.md does not say which files are kept in git")
	}
}

// TestReplayPairs: a replay repeats its first call's numbers, so only the
// replay check can fail it.
func TestReplayPairs(t *testing.T) {
	calls := Plan(DefaultCarriers())
	n := 0
	for i, c := range calls {
		if c.Kind != KindReplay {
			continue
		}
		n++
		p := calls[i-1]
		if p.Kind != KindReplayFirst || p.Caller != c.Caller || p.Callee != c.Callee || p.Orig != c.Orig || p.Term != c.Term {
			t.Errorf("replay %d does not repeat %d", c.ID, p.ID)
		}
	}
	if n != 5 {
		t.Errorf("%d replay cases", n)
	}
}
