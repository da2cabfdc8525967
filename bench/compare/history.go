package compare

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// The history is bench/results/history.md: one row per full run, newest
// first, with the figures the goals of issue 8 rest on. It is kept in git
// while the runs' raw data is not, so it is the record of how the numbers
// moved. A row is keyed by its first cell, the run's start time.
const historyIntro = `# Benchmark history

One row per full ` + "`make bench`" + ` run, newest first, written by ` + "`bin/shakecompare`" + ` (package bench/compare)
from the run's run.json. The newest run's report is [latest.md](latest.md); the method is in
[../README.md](../README.md). A run's raw data (run.json, step files, plots, logs) stays in
` + "`bench/results/<UTC date-time>/`" + ` on the machine that ran it and is not committed; ` + "`bin/shakecompare report --out DIR\n--history bench/results/history.md`" + ` writes a run's row again from it.

Rates are highest clean rates in calls/s (≥: the generator, not the system under test, ended the ramp);
CPU is the system under test's CPU per signed call at 80 % of its highest clean rate, beside one
` + "`openssl speed ecdsap256`" + ` signature on the same core in the same run; p99 is the appliance's (software key)
added latency at 80 % of its highest clean rate. The machine is shared: the load average at the start
says how busy it was. The ramp's grid changed on 2026-12-07: 3 s steps from 500 calls/s ×1.3 until 17:39, 2 s
steps from 1,000 ×1.5 until 19:04, then 1.5 s steps 200 ms apart (../README.md, step 4); shorter steps let a
queue carry a step that a longer run does not sustain (the report flags such a run at 80 %).
`

// historyHead is the table's header and separator.
const historyHead = "| run (UTC) | load at start | Kamailio + secsipid signs | appliance signs, software key | appliance signs, softhsm2 | appliance signs, softhsm2 via p11-kit server | Kamailio forwards | appliance forwards | speedup (goal ≥ 5×) | CPU per signed call / openssl signature (goal ≤ 1.5×) | p99 at 80 % (goal < 1000 µs) | latency timed by |\n" +
	"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"

// HistoryRow is r's row in the history table.
func HistoryRow(r *Run) string {
	rate := func(name string) string {
		if s := r.setup(name); s != nil {
			return cleanRate(s)
		}
		return "–"
	}
	g := ComputeGoals(r)
	speedup, cost, p99 := "–", "–", "–"
	if g.Known[0] {
		speedup = fmt.Sprintf("%.1f×", g.Speedup)
		if g.SpeedupLowerBound {
			speedup = "≥ " + speedup
		}
	}
	if app := r.setup("appliance-sign-soft"); g.Known[1] && app != nil && app.Fixed != nil {
		cost = fmt.Sprintf("%.1f / %s µs = %.2f×", app.Fixed.CPUMicros, us(r.OpenSSL.SignMicros()), g.CostRatio)
	}
	if g.Known[2] {
		p99 = us(g.P99) + " µs"
	}
	when := r.Started.Format("2006-01-02 15:04")
	if r.Params.Quick {
		when += " (QUICK)"
	}
	timed := "kernel RX and TX stamps"
	switch rx, tx := kernelStamped(r); {
	case rx && !tx:
		timed = "kernel RX stamp, send clock"
	case !rx:
		timed = "sink read time, process clock"
	}
	cells := []string{when, r.Env.LoadStart, rate("kamailio-sign"), rate("appliance-sign-soft"), rate("appliance-sign-hsm"),
		rate(RemoteSetup), rate("kamailio-forward"), rate("appliance-forward"), speedup, cost, p99, timed}
	return "| " + strings.Join(cells, " | ") + " |"
}

// UpdateHistory writes r's row into the history table at path, creating the
// file when it is missing; a row of the same start time is replaced, and
// rows are kept newest first. Text outside the table is kept as it is.
func UpdateHistory(path string, r *Run) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		b, err = []byte(historyIntro+"\n"+historyHead), nil
	}
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	text := string(b)
	i := strings.Index(text, historyHead)
	if i < 0 {
		return fmt.Errorf("compare: %s: no history table (its header changed?)", path)
	}
	head, rest := text[:i+len(historyHead)], text[i+len(historyHead):]
	var rows []string
	for rest != "" {
		line, more, _ := strings.Cut(rest, "\n")
		if !strings.HasPrefix(line, "| ") {
			break
		}
		rows = append(rows, line)
		rest = more
	}
	row := HistoryRow(r)
	key := historyKey(row)
	rows = slices.DeleteFunc(rows, func(l string) bool { return historyKey(l) == key })
	rows = append(rows, row)
	slices.SortStableFunc(rows, func(a, b string) int { return strings.Compare(historyKey(b), historyKey(a)) })
	out := head + strings.Join(rows, "\n") + "\n" + rest
	return os.WriteFile(path, []byte(out), 0o644)
}

// historyKey is a row's first cell (the run's start, sortable as text).
func historyKey(row string) string {
	k, _, _ := strings.Cut(strings.TrimPrefix(row, "| "), " |")
	return k
}
