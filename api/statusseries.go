package api

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// window returns the last n+1 samples (n intervals).
func window(ss []sample, n int) []sample {
	if len(ss) > n+1 {
		return ss[len(ss)-n-1:]
	}
	return ss
}

// selectKeys returns the indices of the keys match selects.
func selectKeys(keys []seriesKey, match func(*seriesKey) bool) []int {
	var idx []int
	for i := range keys {
		if match(&keys[i]) {
			idx = append(idx, i)
		}
	}
	return idx
}

// sumAt sums the values of the keys idx in s.
func sumAt(idx []int, s *sample) float64 {
	var v float64
	for _, i := range idx {
		v += s.val(i)
	}
	return v
}

// rateOver is the per-second increase of the selected keys over ss.
func rateOver(keys []seriesKey, ss []sample, match func(*seriesKey) bool) float64 {
	if len(ss) < 2 {
		return 0
	}
	a, b := &ss[0], &ss[len(ss)-1]
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return 0
	}
	idx := selectKeys(keys, match)
	return max(sumAt(idx, b)-sumAt(idx, a), 0) / dt
}

// latencyOver returns the median and 99th percentile of the signer's
// sign_duration histogram over ss, and the observations it had.
func latencyOver(keys []seriesKey, ss []sample, signer string) (p50, p99 float64, n uint64) {
	if len(ss) < 2 {
		return math.NaN(), math.NaN(), 0
	}
	type bucket struct {
		lo, hi float64
		n      float64
	}
	var bs []bucket
	var total float64
	a, b := &ss[0], &ss[len(ss)-1]
	for i := range keys {
		k := &keys[i]
		if k.name != "shakenline_hsm_sign_duration_seconds_bucket" || k.labels["signer"] != signer {
			continue
		}
		d := b.val(i) - a.val(i)
		if d <= 0 {
			continue
		}
		lo, hi, ok := strings.Cut(k.labels["vmrange"], "...")
		if !ok {
			continue
		}
		l, err1 := strconv.ParseFloat(lo, 64)
		h, err2 := strconv.ParseFloat(hi, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		bs = append(bs, bucket{l, h, d})
		total += d
	}
	if total == 0 {
		return math.NaN(), math.NaN(), 0
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].hi < bs[j].hi })
	q := func(q float64) float64 {
		want, cum := q*total, 0.0
		for _, x := range bs {
			if cum+x.n >= want {
				if math.IsInf(x.hi, 1) {
					return x.lo
				}
				return x.lo + (x.hi-x.lo)*(want-cum)/x.n
			}
			cum += x.n
		}
		return bs[len(bs)-1].hi
	}
	return q(0.5), q(0.99), uint64(total)
}

func errorRows(keys []seriesKey, mins, hours []sample, last []time.Time, now time.Time) []errorRow {
	if len(mins) == 0 {
		return nil
	}
	cur := &mins[len(mins)-1]
	type acc struct {
		reason            string
		total, minute, hr float64
		seen              time.Time
	}
	byReason := map[string]*acc{}
	var order []string
	for i := range keys {
		reason := errorReason(&keys[i])
		if reason == "" {
			continue
		}
		tot := cur.val(i)
		if tot == 0 {
			continue
		}
		a := byReason[reason]
		if a == nil {
			a = &acc{reason: reason}
			byReason[reason] = a
			order = append(order, reason)
		}
		a.total += tot
		a.minute += tot - mins[0].val(i)
		if len(hours) > 0 {
			a.hr += tot - hours[0].val(i)
		} else {
			a.hr += tot - mins[0].val(i)
		}
		if i < len(last) && last[i].After(a.seen) {
			a.seen = last[i]
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := byReason[order[i]], byReason[order[j]]
		if !a.seen.Equal(b.seen) {
			return a.seen.After(b.seen)
		}
		return a.total > b.total
	})
	var rows []errorRow
	for _, r := range order {
		a := byReason[r]
		row := errorRow{Reason: a.reason, Minute: fmtCount(a.minute), Hour: fmtCount(a.hr), Total: fmtCount(a.total), Level: "old"}
		switch {
		case a.minute > 0:
			row.Level = "warn"
		case a.hr > 0:
			row.Level = "recent"
		}
		if a.seen.IsZero() {
			row.Seen = "before sampling started"
		} else {
			row.Seen = fmtDuration(now.Sub(a.seen)) + " ago"
		}
		rows = append(rows, row)
	}
	if len(rows) > 15 {
		rows = rows[:15]
	}
	return rows
}

// drawGraph lays out one SVG graph of calls/s by outcome over span.
func drawGraph(title string, keys []seriesKey, ss []sample, now time.Time, span time.Duration, xl []string) graph {
	g := graph{Title: title, W: 640, H: 190, Left: 56, Top: 10, PlotW: 570, PlotH: 150}
	g.Bottom, g.LabelY, g.GridRight = g.Top+g.PlotH, g.Top+g.PlotH+18, g.Left+g.PlotW
	start := now.Add(-span)
	type pt struct {
		t time.Time
		v float64
	}
	series := make([][]pt, len(outcomes))
	ymax := 0.0
	for oi, o := range outcomes {
		idx := selectKeys(keys, o.match)
		for j := 1; j < len(ss); j++ {
			a, b := &ss[j-1], &ss[j]
			dt := b.at.Sub(a.at).Seconds()
			if dt <= 0 || b.at.Before(start) {
				continue
			}
			v := max(sumAt(idx, b)-sumAt(idx, a), 0) / dt
			series[oi] = append(series[oi], pt{b.at, v})
			ymax = max(ymax, v)
		}
	}
	top := niceCeil(ymax)
	g.YMax, g.YMid, g.MidY = fmtRate(top), fmtRate(top/2), g.Top+g.PlotH/2
	for i, t := range xl {
		g.XLabels = append(g.XLabels, axisLabel{X: g.Left + i*g.PlotW/(len(xl)-1), Text: t})
	}
	g.Empty = true
	var buf []byte
	for oi, o := range outcomes {
		pts := series[oi]
		var lastV float64
		if len(pts) > 0 {
			g.Empty = false
			lastV = pts[len(pts)-1].v
		}
		// A line that stayed at zero the whole time is left out of the
		// drawing (it would hide the axis) but stays in the legend.
		allZero := true
		for _, p := range pts {
			if p.v > 0 {
				allZero = false
				break
			}
		}
		line := graphLine{Label: o.label, Color: o.color, Now: fmtRate(lastV)}
		if !allZero {
			buf = buf[:0]
			for i, p := range pts {
				if i > 0 {
					buf = append(buf, ' ')
				}
				x := float64(g.Left) + float64(g.PlotW)*p.t.Sub(start).Seconds()/span.Seconds()
				y := float64(g.Top+g.PlotH) - float64(g.PlotH)*p.v/top
				buf = strconv.AppendFloat(buf, x, 'f', 1, 64)
				buf = append(buf, ',')
				buf = strconv.AppendFloat(buf, y, 'f', 1, 64)
			}
			line.Points = string(buf)
		}
		g.Lines = append(g.Lines, line)
	}
	if g.Empty {
		g.LegendNote = "collecting samples"
	}
	return g
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*e {
			return m * e
		}
	}
	return 10 * e
}
