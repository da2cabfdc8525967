package interop

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// stages splits a traced call's setup time: the originating proxy with the
// INVITE, the terminating proxy with it (verification), the terminating
// proxy with the final response, the originating proxy with it. -1 where a
// time is missing.
func stages(t CallTrace) [4]time.Duration {
	out := [4]time.Duration{-1, -1, -1, -1}
	span := func(a, b time.Time) time.Duration {
		if a.IsZero() || b.IsZero() || b.Before(a) {
			return -1
		}
		return b.Sub(a)
	}
	out[0] = span(t.Sent, t.Crossed)
	out[1] = span(t.Crossed, t.Delivered)
	out[2] = span(t.Delivered, t.Back)
	out[3] = span(t.Back, t.Final)
	return out
}

// timeline writes "Where the time goes": the calls' setup time split by
// stage (trace.go), per signer, and the terminating stage of calls during
// which the terminating verifier fetched an x5u or a CRL apart from the
// others.
func timeline(d *doc, r *Result) {
	type agg struct{ st [4][]time.Duration }
	by := map[string]*agg{}
	var fetch, none []time.Duration
	nfetch := map[string]int{}
	for _, c := range r.Calls {
		if c.Got.Err != "" {
			continue
		}
		st := stages(c.Trace)
		k := "signer: " + c.Signer
		if by[k] == nil {
			by[k] = &agg{}
		}
		for i, v := range st {
			if v >= 0 {
				by[k].st[i] = append(by[k].st[i], v)
			}
		}
		if st[1] >= 0 {
			if len(c.Trace.Fetches) > 0 {
				fetch = append(fetch, st[1])
				nfetch[c.Signer]++
			} else {
				none = append(none, st[1])
			}
		}
	}
	if len(by) == 0 {
		return
	}
	d.h2("Where the time goes")
	d.p("Each call traced on the core namespace's bridge (kernel receive stamps of the INVITE and the final response crossing between carriers, and of each TCP connection a carrier opened to an http repository), beside the SBC's send and final times and the switch's delivery time: the originating proxy's part (SBC to bridge, with the INVITE), the terminating proxy's (bridge to switch: verification, with any x5u and CRL fetch), and each one's part on the way back with the final response.")
	var keys []string
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var rows [][]string
	for _, k := range keys {
		a := by[k]
		row := []string{k, strconv.Itoa(len(a.st[0]))}
		for _, xs := range a.st {
			row = append(row, ms(pct(xs, .5))+" / "+ms(pct(xs, .95)))
		}
		rows = append(rows, row)
	}
	d.table([]string{"group", "calls traced", "originating, INVITE p50 / p95 ms", "terminating, INVITE p50 / p95 ms",
		"terminating, response p50 / p95 ms", "originating, response p50 / p95 ms"}, rows)
	var fk []string
	for k, n := range nfetch {
		fk = append(fk, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(fk)
	d.table([]string{"terminating stage", "calls", "p50 ms", "p95 ms", "max ms"}, [][]string{
		{"with an x5u or CRL fetch started meanwhile (" + strings.Join(fk, ", ") + ")", strconv.Itoa(len(fetch)), ms(pct(fetch, .5)), ms(pct(fetch, .95)), ms(pct(fetch, 1))},
		{"without", strconv.Itoa(len(none)), ms(pct(none, .5)), ms(pct(none, .95)), ms(pct(none, 1))},
	})
}
