package api

import (
	"bytes"
	"io"
	"math"
	"strconv"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// The registry's histograms (VictoriaMetrics/metrics) are exposed with
// vmrange buckets: 18 log-spaced buckets per decade, each counted on its
// own. Prometheus' histogram_quantile needs cumulative buckets with an le
// label, so /metrics also writes every such histogram a second time as
//
//	<name>_le_bucket{<labels>,le="<bound>"} <observations <= bound>
//
// at the bounds leBounds (three per decade, 10 us to 10 s, each a vmrange
// bucket edge, so the conversion is exact) and +Inf. <name>_sum and
// <name>_count are the histogram's own. docs/METRICS.md lists the series.

// leBounds are 10^(k/3) for k = -15..3: 1e-05, 2.154e-05, 4.642e-05, ... 10.
var leBounds, leLabels = func() ([]float64, []string) {
	var b []float64
	var l []string
	for k := -15; k <= 3; k++ {
		v := math.Pow(10, float64(k)/3)
		b = append(b, v)
		l = append(l, strconv.FormatFloat(v, 'g', 4, 64))
	}
	return b, append(l, "+Inf")
}()

var expoBufs = sync.Pool{New: func() any { return new(expoBuf) }}

type expoBuf struct {
	all, extra bytes.Buffer
	key, cur   []byte    // group keys: the line being read, the histogram being read
	upper      []float64 // of the vmrange buckets of the histogram being read
	counts     []uint64
}

// writeExposition writes the Prometheus exposition (process metrics
// included) followed by the le form of every vmrange histogram.
func writeExposition(w io.Writer) {
	b := expoBufs.Get().(*expoBuf)
	b.all.Reset()
	b.extra.Reset()
	metrics.WritePrometheus(&b.all, true)
	appendLeBuckets(&b.extra, b.all.Bytes(), b)
	_, _ = w.Write(b.all.Bytes())
	_, _ = w.Write(b.extra.Bytes())
	if b.all.Cap() <= 4<<20 {
		expoBufs.Put(b)
	}
}

// appendLeBuckets scans an exposition for vmrange bucket lines and appends
// the le form of each histogram to dst. The buckets of one histogram are
// consecutive lines (VictoriaMetrics writes them so).
func appendLeBuckets(dst *bytes.Buffer, expo []byte, b *expoBuf) {
	open := false // b.cur holds "<name>{<labels without vmrange>" of the histogram being read
	flush := func() {
		if open {
			writeLeGroup(dst, b.cur, b.upper, b.counts)
		}
		open, b.upper, b.counts = false, b.upper[:0], b.counts[:0]
	}
	for len(expo) > 0 {
		line := expo
		if i := bytes.IndexByte(expo, '\n'); i >= 0 {
			line, expo = expo[:i], expo[i+1:]
		} else {
			expo = nil
		}
		var upper float64
		var count uint64
		var ok bool
		b.key, upper, count, ok = parseVMRangeLine(b.key[:0], line)
		if !ok {
			flush()
			continue
		}
		if open && !bytes.Equal(b.cur, b.key) {
			flush()
		}
		if !open {
			b.cur, open = append(b.cur[:0], b.key...), true
		}
		b.upper = append(b.upper, upper)
		b.counts = append(b.counts, count)
	}
	flush()
}

// parseVMRangeLine parses `<name>_bucket{<labels>vmrange="<lo>...<hi>"} <n>`
// into key "<name>{<labels>" (trailing comma removed; appended to key), hi
// and n.
func parseVMRangeLine(key, line []byte) (_ []byte, upper float64, count uint64, ok bool) {
	i := bytes.Index(line, []byte(`vmrange="`))
	if i < 0 {
		return key, 0, 0, false
	}
	br := bytes.IndexByte(line, '{')
	if br < len("_bucket") || br > i || !bytes.Equal(line[br-len("_bucket"):br], []byte("_bucket")) {
		return key, 0, 0, false
	}
	rest := line[i+len(`vmrange="`):]
	q := bytes.IndexByte(rest, '"')
	if q < 0 {
		return key, 0, 0, false
	}
	_, hi, found := bytes.Cut(rest[:q], []byte("..."))
	if !found {
		return key, 0, 0, false
	}
	u, err := strconv.ParseFloat(string(hi), 64)
	if err != nil {
		return key, 0, 0, false
	}
	sp := bytes.LastIndexByte(rest, ' ')
	if sp < 0 {
		return key, 0, 0, false
	}
	n, err := strconv.ParseUint(string(rest[sp+1:]), 10, 64)
	if err != nil {
		return key, 0, 0, false
	}
	// key: name without _bucket, then the labels before vmrange.
	key = append(key, line[:br-len("_bucket")]...)
	key = append(key, line[br:i]...)
	return bytes.TrimSuffix(key, []byte(",")), u, n, true
}

func writeLeGroup(dst *bytes.Buffer, key []byte, upper []float64, counts []uint64) {
	br := bytes.IndexByte(key, '{')
	name, labels := key[:br], key[br+1:]
	var total uint64
	for _, c := range counts {
		total += c
	}
	for j, lab := range leLabels {
		var cum uint64
		if j == len(leBounds) {
			cum = total
		} else {
			lim := leBounds[j] * (1 + 1e-3) // the vmrange edges are printed with 4 digits
			for k, u := range upper {
				if u <= lim {
					cum += counts[k]
				}
			}
		}
		dst.Write(name)
		dst.WriteString("_le_bucket{")
		if len(labels) > 0 {
			dst.Write(labels)
			dst.WriteByte(',')
		}
		dst.WriteString(`le="`)
		dst.WriteString(lab)
		dst.WriteString(`"} `)
		dst.WriteString(strconv.FormatUint(cum, 10))
		dst.WriteByte('\n')
	}
}
