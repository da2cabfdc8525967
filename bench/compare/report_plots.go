package compare

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/shakenline/shakenline/bench/loadgen"
)

// plots writes gnuplot data and PNGs into dir; it returns why not, or "".
func plots(dir string, r *Run) string {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return "gnuplot is not installed (apt-get install gnuplot-nox)"
	}
	var names []string
	signs := map[string]bool{}
	for _, s := range r.Setups {
		signs[s.Setup.Name] = s.Setup.Signs
		if len(s.Summary.Steps) == 0 {
			continue
		}
		var d strings.Builder
		d.WriteString("# offered received_per_s loss_pct p50_us p90_us p99_us p999_us signed_per_s\n")
		steps := slices.Clone(s.Summary.Steps) // ramp then bisection: plot by offered rate
		slices.SortStableFunc(steps, func(a, b loadgen.Result) int { return cmp.Compare(a.TargetRate, b.TargetRate) })
		for _, st := range steps {
			thr, signed := 0.0, 0.0
			if st.SendSeconds > 0 {
				thr = float64(st.Received) / st.SendSeconds
				signed = float64(st.WithIdentity) / st.SendSeconds
			}
			l := st.Latency
			fmt.Fprintf(&d, "%.0f %.1f %.4f %.1f %.1f %.1f %.1f %.1f\n", st.TargetRate, thr, st.LossPct, l.P50, l.P90, l.P99, l.P999, signed)
		}
		if err := os.WriteFile(filepath.Join(dir, "steps-"+s.Setup.Name+".dat"), []byte(d.String()), 0o644); err != nil {
			return err.Error()
		}
		names = append(names, s.Setup.Name)
	}
	if len(names) == 0 {
		return "no step data"
	}
	var g strings.Builder
	g.WriteString("set terminal pngcairo size 960,600 font ',10'\nset grid\nset key left top\nset logscale x\n")
	g.WriteString("set xlabel 'offered load (INVITEs/s)'\n")
	g.WriteString("set output 'throughput.png'\nset title 'Throughput at the sink vs offered load (signing setups: signed INVITEs only)'\nset ylabel 'INVITEs/s at the sink'\nset logscale y\n")
	var ps []string
	for _, n := range names {
		col := 2
		if signs[n] {
			col = 8
		}
		ps = append(ps, fmt.Sprintf("'steps-%s.dat' using 1:%d with linespoints title '%s'", n, col, n))
	}
	ps = append(ps, "x with lines dashtype 2 lc rgb 'gray' title 'offered'")
	g.WriteString("plot " + strings.Join(ps, ", \\\n  ") + "\n")
	g.WriteString("set output 'latency-p99.png'\nset title 'p99 one-way latency generator → (proxy) → sink (kernel TX → RX stamp) vs offered load'\nset ylabel 'p99 latency (µs)'\n")
	ps = ps[:0]
	for _, n := range names {
		ps = append(ps, fmt.Sprintf("'steps-%s.dat' using 1:6 with linespoints title '%s'", n, n))
	}
	g.WriteString("plot " + strings.Join(ps, ", \\\n  ") + "\n")
	for _, n := range names {
		fmt.Fprintf(&g, "set output 'latency-%s.png'\nset title 'Latency percentiles vs offered load: %s'\nset ylabel 'one-way latency, kernel TX → RX stamp (µs)'\n", n, n)
		fmt.Fprintf(&g, "plot 'steps-%[1]s.dat' using 1:4 with linespoints title 'p50', 'steps-%[1]s.dat' using 1:5 with linespoints title 'p90', 'steps-%[1]s.dat' using 1:6 with linespoints title 'p99', 'steps-%[1]s.dat' using 1:7 with linespoints title 'p99.9'\n", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "plots.gp"), []byte(g.String()), 0o644); err != nil {
		return err.Error()
	}
	c := exec.Command("gnuplot", "plots.gp")
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Sprintf("gnuplot: %v: %s", err, tail(out, 300))
	}
	return ""
}

// writeSessionTable writes the rows of a raw-versus-chain sessions table
// from the bench/hsmraw lines named prefix+"raw|chain/sessions=N", in
// session order.
func writeSessionTable(b *strings.Builder, lines []BenchLine, prefix string) {
	type row struct{ raw, chain float64 }
	rows := map[string]*row{}
	var keys []string
	for _, l := range lines {
		kind, sess, ok := strings.Cut(strings.TrimPrefix(l.Name, prefix), "/sessions=")
		if !ok || !strings.HasPrefix(l.Name, prefix) {
			continue
		}
		if rows[sess] == nil {
			rows[sess] = &row{}
			keys = append(keys, sess)
		}
		if kind == "raw" {
			rows[sess].raw = l.Metrics["sig/s"]
		} else {
			rows[sess].chain = l.Metrics["sig/s"]
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		return len(keys[i]) < len(keys[j]) || len(keys[i]) == len(keys[j]) && keys[i] < keys[j]
	})
	for _, k := range keys {
		fmt.Fprintf(b, "| %s | %.0f | %.0f |\n", k, rows[k].raw, rows[k].chain)
	}
}

// stallSentence is the stall meter's result in the p99 verdict: how much of
// the time the SUT's CPU was away for a millisecond or more.
func stallSentence(st *Stalls) string {
	n, us1 := st.AtLeast(1000)
	_, us100 := st.AtLeast(100)
	return fmt.Sprintf("the SUT's CPU, measured idle before the runs, stalled ≥ 1 ms %d times in %.0f s (%.2f %% of the time; ≥ 100 µs: %.2f %%)",
		n, st.Seconds, 100*us1/(st.Seconds*1e6), 100*us100/(st.Seconds*1e6))
}

// stallTable lists the stall meter's classes inline.
func stallTable(st *Stalls) string {
	var parts []string
	for i, f := range st.Floors {
		if i >= len(st.Count) || i >= len(st.Micros) {
			break
		}
		parts = append(parts, fmt.Sprintf("≥ %s µs: %d (%.1f ms)", us(f), st.Count[i], st.Micros[i]/1e3))
	}
	return strings.Join(parts, ", ")
}
