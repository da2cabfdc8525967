package compare

import (
	"fmt"
	"strings"
)

// goalSLOSpeedup is issue 21's goal: the appliance's highest rate at the
// latency objective over Kamailio + secsipid's, per core (both run on one
// core, the SUT's).
const goalSLOSpeedup = 8.0

// goalHSMShare is issue 21's goal for the emulated network HSM rows: signed
// calls/s at least this share of the device's capacity, within the row's
// latency objective (the device's latency plus 1 ms).
const goalHSMShare = 0.9

// sloCell is a setup's highest rate at its latency objective, with the
// p99 of that step.
func sloCell(s *SetupResult) string {
	o := s.SLO
	switch {
	case o == nil:
		return "–"
	case o.Rate == 0:
		return fmt.Sprintf("< %.0f (p99 ≤ %s µs not met)", o.Lowest, us(o.TargetMicros))
	}
	p99 := "–"
	if o.Best != nil {
		p99 = us(o.Best.Latency.P99)
	}
	target := ""
	if o.TargetMicros != sloMicros {
		target = fmt.Sprintf(", objective %s µs", us(o.TargetMicros))
	}
	return fmt.Sprintf("%.0f (%s%s)", o.Rate, p99, target)
}

// sloGoalRows are the goal table's rows of issue 21: the appliance at the
// latency objective beside Kamailio + secsipid, and the emulated network
// HSM rows' share of their capacity within their objective.
func sloGoalRows(r *Run) string {
	var b strings.Builder
	app, kam := r.setup("appliance-sign-soft"), r.setup("kamailio-sign")
	if app != nil && kam != nil && app.SLO != nil && kam.SLO != nil {
		measured, known, ok := "–", false, false
		switch {
		case kam.SLO.Rate > 0 && app.SLO.Rate > 0:
			x := app.SLO.Rate / kam.SLO.Rate
			measured = fmt.Sprintf("%.0f / %.0f calls/s = %.1f×", app.SLO.Rate, kam.SLO.Rate, x)
			known, ok = true, x >= goalSLOSpeedup
		case kam.SLO.Rate == 0 && app.SLO.Rate > 0:
			measured = fmt.Sprintf("%.0f calls/s; Kamailio + secsipid met the objective at no rate tried (down to %.0f/s)", app.SLO.Rate, kam.SLO.Lowest)
			known, ok = true, true
		case app.SLO.Rate == 0:
			measured = fmt.Sprintf("the appliance met the objective at no rate tried (down to %.0f/s)", app.SLO.Lowest)
			known = true
		}
		fmt.Fprintf(&b, "| appliance calls/s at the latency objective (p99 ≤ 1 ms, loss ≤ %.1f %%) vs Kamailio + secsipid, one core each | ≥ %.0f× | %s | %s |\n",
			r.Params.LossPct, goalSLOSpeedup, measured, verdict(known, ok))
	}
	for _, s := range Setups {
		if s.HSM == nil {
			continue
		}
		res := r.setup(s.Name)
		if res == nil {
			continue
		}
		measured, known, ok := "–", false, false
		if o := res.SLO; o != nil {
			known = true
			share := o.Rate / float64(s.HSM.Capacity)
			ok = share >= goalHSMShare
			measured = fmt.Sprintf("%.0f calls/s = %.0f %% of %d (p99 %s µs)", o.Rate, 100*share, s.HSM.Capacity, p99Of(o))
		}
		fmt.Fprintf(&b, "| %s: signed calls/s within p99 ≤ %s µs (the device's latency + 1 ms) | ≥ %.0f %% of capacity | %s | %s |\n",
			s.Title, us(s.HSM.SLOMicros()), 100*goalHSMShare, measured, verdict(known, ok))
	}
	return b.String()
}

func p99Of(o *SLOResult) string {
	if o.Best == nil {
		return "–"
	}
	return us(o.Best.Latency.P99)
}

// netHSMText is the section on the emulated network HSM rows.
func netHSMText(r *Run) string {
	var rows []string
	for _, s := range Setups {
		if s.HSM == nil {
			continue
		}
		res := r.setup(s.Name)
		if res == nil {
			continue
		}
		m := s.HSM
		clean := cleanRate(res)
		if res.Summary.MaxCleanRate > 0 {
			clean += fmt.Sprintf(" (%.0f %%)", 100*res.Summary.MaxCleanRate/float64(m.Capacity))
		}
		cpu, dev := "–", "–"
		if f := res.Fixed; f != nil && f.CPUMicros > 0 {
			cpu = fmt.Sprintf("%.1f", f.CPUMicros)
		}
		if d := res.Device; d != nil {
			dev = fmt.Sprintf("%d / %d", d.MaxInFlight, d.PoolMisses)
		}
		rows = append(rows, fmt.Sprintf("| %.1f ms + U[0, %.2f ms) | %d | %d | %s | %s | %s |",
			float64(m.Latency.Microseconds())/1000, float64(m.Jitter.Microseconds())/1000, m.Capacity, m.Workers(), clean, sloCell(res), cpu+" | "+dev))
	}
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Emulated network HSM\n\n")
	b.WriteString("The appliance signing through bench/nethsm, a PKCS#11 module that answers like a network HSM: each C_Sign returns after the latency (plus jitter) with the calling thread asleep, the device signs at most its capacity per second for all sessions, and k·G is precomputed before the run, so the host CPU of a C_Sign is that of a blocking call. The appliance runs one event loop per core on both cores, shared with the generator and the sink (the one layout where two cores are the SUT's); workers (PKCS#11 sessions) are 1.5 × capacity × (latency + jitter) + 4, one per request in flight at full capacity with room for the hand-offs. Objective: signed calls/s ≥ 90 % of capacity with p99 ≤ latency + jitter + 1 ms.\n\n")
	b.WriteString("| device latency | capacity (sig/s) | workers | highest clean rate (share of capacity) | highest rate at the objective (p99 µs) | SUT CPU per call at 80 % (µs) | device: most C_Sign in flight / nonces computed on the spot |\n|---|---:|---:|---:|---:|---:|---:|\n")
	b.WriteString(strings.Join(rows, "\n") + "\n")
	return b.String()
}
