package interop

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// doc is a small document model rendered both as Markdown and as HTML.
type block struct {
	kind  string // h1 h2 p table img pre
	text  string
	head  []string
	rows  [][]string
	image string
}

type doc struct{ blocks []block }

func (d *doc) h1(s string) { d.blocks = append(d.blocks, block{kind: "h1", text: s}) }
func (d *doc) h2(s string) { d.blocks = append(d.blocks, block{kind: "h2", text: s}) }
func (d *doc) p(f string, a ...any) {
	d.blocks = append(d.blocks, block{kind: "p", text: fmt.Sprintf(f, a...)})
}
func (d *doc) pre(s string) { d.blocks = append(d.blocks, block{kind: "pre", text: s}) }
func (d *doc) table(head []string, rows [][]string) {
	d.blocks = append(d.blocks, block{kind: "table", head: head, rows: rows})
}
func (d *doc) img(file, alt string) {
	d.blocks = append(d.blocks, block{kind: "img", image: file, text: alt})
}

func (d *doc) markdown() []byte {
	var b bytes.Buffer
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, bl := range d.blocks {
		switch bl.kind {
		case "h1":
			fmt.Fprintf(&b, "# %s\n\n", bl.text)
		case "h2":
			fmt.Fprintf(&b, "## %s\n\n", bl.text)
		case "p":
			fmt.Fprintf(&b, "%s\n\n", bl.text)
		case "pre":
			fmt.Fprintf(&b, "```\n%s\n```\n\n", bl.text)
		case "img": // the image is not committed beside report.md: name it only
			fmt.Fprintf(&b, "Plot (%s): `%s`, beside this report.\n\n", bl.text, bl.image)
		case "table":
			hs := make([]string, len(bl.head))
			seps := make([]string, len(bl.head))
			for i, h := range bl.head {
				hs[i], seps[i] = cell(h), "---"
			}
			fmt.Fprintf(&b, "| %s |\n| %s |\n", strings.Join(hs, " | "), strings.Join(seps, " | "))
			for _, r := range bl.rows {
				cs := make([]string, len(r))
				for i, c := range r {
					cs[i] = cell(c)
				}
				fmt.Fprintf(&b, "| %s |\n", strings.Join(cs, " | "))
			}
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

// inline renders the two Markdown inline forms the report uses (**bold**
// and `code`) after escaping.
func inline(s string) string {
	s = html.EscapeString(s)
	for _, m := range []struct{ mark, open, close string }{{"**", "<b>", "</b>"}, {"`", "<code>", "</code>"}} {
		for {
			i := strings.Index(s, m.mark)
			if i < 0 {
				break
			}
			j := strings.Index(s[i+len(m.mark):], m.mark)
			if j < 0 {
				break
			}
			j += i + len(m.mark)
			s = s[:i] + m.open + s[i+len(m.mark):j] + m.close + s[j+len(m.mark):]
		}
	}
	return s
}

func (d *doc) html(title string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>%s</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}td.ok{background:#e8f6e8}td.bad{background:#fbe3e3}pre{background:#f6f6f6;padding:1em;overflow:auto}
code{background:#f3f3f3;padding:0 .2em}img{max-width:100%%}</style></head><body>
`, html.EscapeString(title))
	for _, bl := range d.blocks {
		switch bl.kind {
		case "h1":
			fmt.Fprintf(&b, "<h1>%s</h1>\n", inline(bl.text))
		case "h2":
			fmt.Fprintf(&b, "<h2>%s</h2>\n", inline(bl.text))
		case "p":
			fmt.Fprintf(&b, "<p>%s</p>\n", inline(bl.text))
		case "pre":
			fmt.Fprintf(&b, "<pre>%s</pre>\n", html.EscapeString(bl.text))
		case "img":
			fmt.Fprintf(&b, "<p><img src=\"%s\" alt=\"%s\"></p>\n", html.EscapeString(bl.image), html.EscapeString(bl.text))
		case "table":
			b.WriteString("<table><tr>")
			for _, h := range bl.head {
				fmt.Fprintf(&b, "<th>%s</th>", inline(h))
			}
			b.WriteString("</tr>\n")
			for _, r := range bl.rows {
				b.WriteString("<tr>")
				for _, c := range r {
					class := ""
					switch {
					case strings.Contains(c, "✔"):
						class = ` class="ok"`
					case strings.Contains(c, "✘"):
						class = ` class="bad"`
					}
					fmt.Fprintf(&b, "<td%s>%s</td>", class, inline(c))
				}
				b.WriteString("</tr>\n")
			}
			b.WriteString("</table>\n")
		}
	}
	b.WriteString("</body></html>\n")
	return b.Bytes()
}

// Headline is the one-line summary of a run.
func Headline(r *Result) string {
	countries := map[string]bool{}
	for _, c := range r.Calls {
		countries[c.Caller.Country], countries[c.Callee.Country] = true, true
	}
	pass := len(r.Calls) - r.Failed()
	verdict := "PASS"
	if r.Failed() > 0 || r.CountersFailed() > 0 {
		verdict = "FAIL"
	}
	return fmt.Sprintf("interop %s: %d carriers, %d countries, %d cases: %d/%d as expected, verifier counters %d/%d; run %s (calls %s)",
		verdict, len(r.Carriers), len(countries), len(r.Calls), pass, len(r.Calls), len(r.Counters)-r.CountersFailed(), len(r.Counters),
		r.Timings.Total.Round(100*time.Millisecond), r.Timings.Calls.Round(time.Millisecond))
}

// Describe is one call in a line.
func Describe(c CallResult) string {
	got := c.Got.Err
	if got == "" {
		if c.Got.Delivered {
			got = c.Got.Verstat
			if c.Got.Attest != "" {
				got += " attest " + c.Got.Attest
			}
			if c.Got.Name != "" {
				got += fmt.Sprintf(" name %q", c.Got.Name)
			}
			if c.Got.Logo {
				got += " logo"
			}
		} else {
			got = "rejected " + strconv.Itoa(c.Got.Code)
			if c.Got.Reason != "" {
				got += " (" + c.Got.Reason + ")"
			}
		}
	}
	fwd := ""
	if c.Via != "" {
		fwd = fmt.Sprintf(" forwarded by %s from +%s(%s)", c.Via, c.Forwarder.TN, c.Forwarder.Country)
	}
	return fmt.Sprintf("#%d %s %s->%s +%s(%s)->+%s(%s)%s trunk %c via %s: want %s, got %s",
		c.ID, c.Kind, c.Orig, c.Term, c.Caller.TN, c.Caller.Country, c.Callee.TN, c.Callee.Country, fwd, c.Trunk, c.Signer, c.Expect, got)
}

func pct(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func mark(pass, total int) string {
	if pass == total {
		return fmt.Sprintf("✔ %d/%d", pass, total)
	}
	return fmt.Sprintf("✘ %d/%d", pass, total)
}

// WriteReport writes report.md, report.html, results.json, calls.csv and
// latency.png (when gnuplot is installed) to dir and returns their paths.
func WriteReport(dir string, r *Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("interop: %w", err)
	}
	var files []string
	write := func(name string, b []byte) error {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("interop: %w", err)
		}
		files = append(files, p)
		return nil
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("interop: %w", err)
	}
	if err := write("results.json", js); err != nil {
		return nil, err
	}
	var cb bytes.Buffer
	w := csv.NewWriter(&cb)
	_ = w.Write([]string{"id", "kind", "orig", "term", "caller", "caller_country", "callee", "callee_country", "trunk", "signer",
		"expected", "delivered", "code", "reason", "verstat", "attest", "orig_tn", "latency_ms", "pass",
		"orig_invite_ms", "term_invite_ms", "term_response_ms", "orig_response_ms", "term_fetches"})
	for _, c := range r.Calls {
		st := stages(c.Trace)
		row := []string{strconv.Itoa(c.ID), string(c.Kind), c.Orig, c.Term, "+" + c.Caller.TN, c.Caller.Country, "+" + c.Callee.TN,
			c.Callee.Country, string(c.Trunk), c.Signer, c.Expect.String(), strconv.FormatBool(c.Got.Delivered), strconv.Itoa(c.Got.Code),
			c.Got.Reason, c.Got.Verstat, c.Got.Attest, c.Got.OrigTN, ms(c.Latency), strconv.FormatBool(c.Pass)}
		for _, d := range st {
			v := ""
			if d >= 0 {
				v = ms(d)
			}
			row = append(row, v)
		}
		_ = w.Write(append(row, strconv.Itoa(len(c.Trace.Fetches))))
	}
	w.Flush()
	if err := write("calls.csv", cb.Bytes()); err != nil {
		return nil, err
	}
	plotErr := plot(dir, r)
	if plotErr == nil {
		files = append(files, filepath.Join(dir, "latency.png"))
	}
	d := build(r, plotErr)
	if err := write("report.md", d.markdown()); err != nil {
		return nil, err
	}
	if err := write("report.html", d.html("Shakenline global STIR/SHAKEN interoperability PoC")); err != nil {
		return nil, err
	}
	return files, nil
}

// plot draws the cumulative distribution of call setup latency per signer
// with gnuplot.
func plot(dir string, r *Result) error {
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		return fmt.Errorf("gnuplot not installed")
	}
	bySigner := map[string][]time.Duration{}
	for _, c := range r.Calls {
		if c.Got.Err == "" {
			bySigner[c.Signer] = append(bySigner[c.Signer], c.Latency)
		}
	}
	var names []string
	for k := range bySigner {
		names = append(names, k)
	}
	sort.Strings(names)
	tmp, err := os.MkdirTemp("", "interop-plot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var plots []string
	for i, n := range names {
		xs := slices.Clone(bySigner[n])
		slices.Sort(xs)
		var b bytes.Buffer
		for j, x := range xs {
			fmt.Fprintf(&b, "%s %.4f\n", ms(x), float64(j+1)/float64(len(xs)))
		}
		f := filepath.Join(tmp, fmt.Sprintf("s%d.dat", i))
		if err := os.WriteFile(f, b.Bytes(), 0o644); err != nil {
			return err
		}
		plots = append(plots, fmt.Sprintf("'%s' using 1:2 with steps lw 2 title '%s (%d calls)'", f, n, len(xs)))
	}
	script := fmt.Sprintf(`set terminal png size 1000,560
set output '%s'
set title 'Call setup time through originating and terminating proxies (INVITE to final response)'
set xlabel 'milliseconds (log scale)'
set ylabel 'fraction of calls'
set logscale x
set grid
set key bottom right
set yrange [0:1.02]
plot %s
`, filepath.Join(dir, "latency.png"), strings.Join(plots, ", "))
	sf := filepath.Join(tmp, "latency.gp")
	if err := os.WriteFile(sf, []byte(script), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(gp, sf).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gnuplot: %w: %s", err, out)
	}
	return nil
}

// build lays out the report.
func build(r *Result, plotErr error) *doc {
	d := &doc{}
	d.h1("Global STIR/SHAKEN interoperability proof of concept")
	d.p("**%s**", Headline(r))
	d.p("Run started %s on this host with `make interop`. Every number below comes from calls placed in this run.", r.Started.UTC().Format(time.RFC3339))
	d.p("The run wrote report.md (this summary, the only file of it kept in git), report.html, results.json, calls.csv and latency.png, which git ignores; `make interop` writes them all again.")

	d.h2("What was tested")
	d.p("Whether unmodified IETF (RFC 8224, 8225, 8226, 8588) and ATIS (ATIS-1000074, -1000080) STIR/SHAKEN works across borders when numbers come from many national numbering plans in E.164 form and a **non-jurisdictional Global Certificate Authority** issues provider certificates beside national ones. Nothing in the protocol was changed: the same PASSporT, Identity header, TNAuthList certificate extension and verstat are used everywhere; only governance (who admits providers and who is trusted) differs.")
	d.p("Governance in code: a **Global Policy Administrator (G-PA)** and national STI-PAs admit providers, assign their service provider codes (SPCs) and sign SPC tokens (ATIS-1000080 JWTs with `atc` TNAuthList, bound to the provider's account key fingerprint). Each CA (root + issuing intermediate, made with package labpki) issues a certificate only against a valid token of *its own* PA, with the TNAuthList the token authorises. Each CA publishes CRLs at the distribution points in its certificates. The carriers' appliances obtain their certificates from their CA **through ACME** (RFC 8555, TNAuthList identifier, tkauth-01 answered with an SPC token from their PA's token API; rows \"ACME\" below); the other rows are the runner's own certificates for the pre-signed cases.")
	var gov [][]string
	for _, g := range r.Governance {
		gov = append(gov, []string{g.Carrier, g.Kind, g.PA, g.CA, g.TNAuthList, g.NotAfter.UTC().Format("2006-01-02")})
	}
	d.table([]string{"carrier", "certificate", "policy administrator", "issued by", "TNAuthList", "not after"}, gov)

	d.h2("How")
	d.p("Each carrier is its own host: a Linux network namespace on a shared bridge (addresses from 198.18.0.0/15), with an SBC (four trunks: retail, wholesale, gateway and a legacy TDM trunk), an originating proxy that signs (the appliance, or Kamailio with secsipid), a terminating proxy that verifies (the appliance, with named trust stores), the carrier's switch (a UAS that records verstat and the PASSporT on the delivered INVITE) and an http repository serving its certificate chains (x5u). The CAs' CRLs are served from the core host. Calls are real SIP over UDP: SBC → originating proxy → (routed by Request-URI) → terminating proxy → switch, responses back by Via.")
	var ct [][]string
	for _, c := range r.Carriers {
		pol := "verify, annotate verstat"
		if c.Reject {
			pol = "verify-reject (403/428/436/437/438 + Reason)"
		}
		var trusts []string
		for _, t := range c.Trusts {
			trusts = append(trusts, string(t))
		}
		form := "SPC"
		if c.TNRange {
			form = "TN ranges"
		}
		ct = append(ct, []string{c.Display + " (" + c.Name + ")", string(c.CA), form, strings.Join(trusts, ", "), c.Signer, pol, strings.Join(c.Countries, " ")})
	}
	d.table([]string{"carrier", "certificate from", "TNAuthList form", "trust stores (accepted jurisdictions)", "originating signer", "terminating policy", "numbers from"}, ct)
	d.p("Attestation is set by the originating policy per trunk: retail A, wholesale B, gateway C, legacy TDM unsigned. Negative cases are PASSporTs signed with a carrier's real key (or its expired or revoked certificate) and then altered, or replayed, before they enter the carrier's originating proxy, which forwards an INVITE that already carries an Identity header as it is.")

	d.h2("Results per carrier pair")
	d.p("Rows: originating carrier (its CA); columns: terminating carrier. Each cell: calls that ended as expected / calls, and what the terminating side concluded for the normally signed calls (accepted = TN-Validation-Passed; untrusted = the originating CA is not in its trust stores).")
	head := []string{"orig \\ term"}
	for _, t := range r.Carriers {
		head = append(head, t.Name)
	}
	var mrows [][]string
	for _, o := range r.Carriers {
		row := []string{fmt.Sprintf("%s (%s)", o.Name, o.CA)}
		for _, t := range r.Carriers {
			if o.Name == t.Name {
				row = append(row, "—")
				continue
			}
			pass, total, acc, signed := 0, 0, 0, 0
			for _, c := range r.Calls {
				if c.Orig == o.Name && c.Term == t.Name {
					total++
					if c.Pass {
						pass++
					}
					if c.Kind == KindSigned {
						signed++
						if c.Got.Delivered && c.Got.Verstat == Passed {
							acc++
						}
					}
				}
			}
			verdict := "accepted"
			if acc == 0 {
				verdict = "untrusted"
			} else if acc < signed {
				verdict = fmt.Sprintf("accepted %d/%d", acc, signed)
			}
			row = append(row, fmt.Sprintf("%s %s", mark(pass, total), verdict))
		}
		mrows = append(mrows, row)
	}
	d.table(head, mrows)

	d.h2("Results per case")
	type agg struct{ pass, total int }
	kinds := map[Kind]*agg{}
	var order []Kind
	expects := map[Kind]map[string]int{}
	for _, c := range r.Calls {
		if kinds[c.Kind] == nil {
			kinds[c.Kind] = &agg{}
			order = append(order, c.Kind)
			expects[c.Kind] = map[string]int{}
		}
		kinds[c.Kind].total++
		if c.Pass {
			kinds[c.Kind].pass++
		}
		expects[c.Kind][c.Expect.Why]++
	}
	var krows [][]string
	for _, k := range order {
		var whys []string
		for w, n := range expects[k] {
			whys = append(whys, fmt.Sprintf("%s (%d)", w, n))
		}
		sort.Strings(whys)
		krows = append(krows, []string{string(k), mark(kinds[k].pass, kinds[k].total), strings.Join(whys, "; ")})
	}
	d.table([]string{"case", "as expected", "deciding check (calls)"}, krows)

	// Attestation carried end to end.
	var arows [][]string
	for _, a := range []byte("ABC") {
		sent, carried := 0, 0
		for _, c := range r.Calls {
			if c.Kind == KindSigned && c.Trunk == a && c.Expect.Attest != "" {
				sent++
				if c.Got.Attest == string(a) && c.Got.OrigTN == c.Caller.TN {
					carried++
				}
			}
		}
		arows = append(arows, []string{string(a), strconv.Itoa(sent), mark(carried, sent)})
	}
	d.p("Attestation and orig carried end to end (signed calls accepted by the terminating side: the attest and orig claims in the PASSporT the switch received):")
	d.table([]string{"attest", "accepted calls", "delivered with that attest and the caller's E.164 orig"}, arows)

	d.p("The terminating verifiers' own counters (`shakenline_verify_results_total` on each appliance's /metrics) against the results the plan expects of them; this also checks the SIP code behind every TN-Validation-Failed at carriers that annotate rather than reject:")
	var vrows [][]string
	for _, c := range r.Counters {
		st := "✔"
		if !c.Pass {
			st = "✘"
		}
		vrows = append(vrows, []string{c.Carrier, c.Result, strconv.Itoa(c.Want), strconv.Itoa(c.Got), st})
	}
	d.table([]string{"terminating carrier", "verstat/code", "expected", "counted by its verifier", ""}, vrows)

	d.h2("Results per country")
	var crows [][]string
	for _, co := range Countries {
		asCaller, asCallee, pass, total := 0, 0, 0, 0
		for _, c := range r.Calls {
			in := false
			if c.Caller.Country == co.ISO {
				asCaller++
				in = true
			}
			if c.Callee.Country == co.ISO {
				asCallee++
				in = true
			}
			if in {
				total++
				if c.Pass {
					pass++
				}
			}
		}
		if total == 0 {
			continue
		}
		var lens []string
		for _, n := range co.Numbers {
			lens = append(lens, strconv.Itoa(len(n)))
		}
		var nums []string
		for _, n := range co.Numbers {
			nums = append(nums, "+"+n)
		}
		crows = append(crows, []string{co.ISO + " " + co.Name, "+" + co.CC, strings.Join(nums, " "), strings.Join(lens, "/"),
			strconv.Itoa(asCaller), strconv.Itoa(asCallee), mark(pass, total)})
	}
	d.table([]string{"country", "code", "numbers", "E.164 digits", "as caller", "as callee", "as expected"}, crows)

	d.h2("Timings")
	t := r.Timings
	d.table([]string{"phase", "time"}, [][]string{
		{"governance + PKI (PAs, tokens, CAs, certificates, CRLs)", t.PKI.Round(time.Millisecond).String()},
		{"network (namespaces, bridge, veths)", t.Network.Round(time.Millisecond).String()},
		{"hosts (repositories, switches, SBCs, proxies)", t.Processes.Round(time.Millisecond).String()},
		{fmt.Sprintf("%d calls", len(r.Calls)), t.Calls.Round(time.Millisecond).String()},
		{"teardown", t.Teardown.Round(time.Millisecond).String()},
		{"total", t.Total.Round(time.Millisecond).String()},
	})
	by := map[string][]time.Duration{}
	for _, c := range r.Calls {
		if c.Got.Err == "" {
			by["signer: "+c.Signer] = append(by["signer: "+c.Signer], c.Latency)
			by["term: "+c.Term] = append(by["term: "+c.Term], c.Latency)
		}
	}
	var keys []string
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lrows [][]string
	for _, k := range keys {
		xs := by[k]
		lrows = append(lrows, []string{k, strconv.Itoa(len(xs)), ms(pct(xs, .5)), ms(pct(xs, .95)), ms(pct(xs, 1))})
	}
	d.p("Call setup time seen by the SBC, INVITE sent to final response, through both proxies (signing, x5u fetch on first use, chain, CRL and signature checks). First calls to a new certificate include the x5u and CRL fetches.")
	d.table([]string{"group", "calls", "p50 ms", "p95 ms", "max ms"}, lrows)
	if plotErr == nil {
		d.img("latency.png", "cumulative distribution of call setup time per signer")
	} else {
		d.p("Plot not drawn: %v.", plotErr)
	}

	timeline(d, r)

	d.h2("Differences from the expected outcome")
	var bad []string
	for _, c := range r.Calls {
		if !c.Pass {
			bad = append(bad, Describe(c))
		}
	}
	if len(bad) == 0 {
		d.p("None: every call ended exactly as expected.")
	} else {
		d.pre(strings.Join(bad, "\n"))
	}

	d.h2("What the PoC shows")
	d.p("1. **One protocol, many countries.** Calls with callers and callees from %d numbering plans, including variable-length plans, were signed and verified with the unmodified PASSporT/Identity mechanism; numbers travel as E.164 digits and no country-specific extension was needed.", len(crows))
	d.p("2. **A non-jurisdictional CA works beside national ones.** Certificates from the Global CA, issued against G-PA tokens, were accepted by every carrier that put the G-CA in its trust store, whatever its country; national certificates were accepted across borders exactly where a carrier chose to trust that national root, and refused (437) elsewhere. Trust is a per-carrier list of anchors, so a country can opt in to the global root without giving up its own.")
	d.p("3. **The security properties hold across borders.** Attestation A/B/C and orig arrived end to end; TNAuthList range mismatches, tampered numbers and signatures, replays, expired and revoked certificates were caught by the terminating side with the RFC 8224 codes, reported as verstat on the delivered call or as a rejection with an RFC 9410 Reason, per the terminating carrier's policy.")
	d.p("4. **Implementations interoperate.** Calls signed by Kamailio with libsecsipid (an independent implementation packaged by Debian) were verified by the appliance with chain, TNAuthList and CRL checks, with the same results as appliance-signed calls.")
	d.p("Limits of this PoC: one host, lab keys in files, http x5u (allowed only with `--lab`), UDP only, CRLs but no OCSP, no STI-CR (certificate repository) discovery beyond x5u, and the governance (PAs and CAs, their ACME servers and token APIs) runs inside the runner's process, reached over the lab network; Kamailio, with no ACME client, signs with the certificate its carrier's verifier obtained.")
	return d
}
