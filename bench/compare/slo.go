package compare

import (
	"context"
	"time"

	"github.com/shakenline/shakenline/bench/loadgen"
)

// sloMicros is the latency objective of every setup but the emulated HSM
// rows (HSMModel.SLOMicros): p99 added latency under 1 ms.
const sloMicros = 1000.0

// SLOResult is a setup's highest rate at its latency objective: the highest
// offered rate whose step was clean (as for the highest clean rate) and
// whose p99 added latency was within TargetMicros.
type SLOResult struct {
	TargetMicros float64          `json:"target_us"`
	Rate         float64          `json:"rate"`           // 0: no rate tried met it
	Lowest       float64          `json:"lowest_tried"`   // the lowest rate tried
	Best         *loadgen.Result  `json:"best,omitempty"` // the step at Rate
	Steps        []loadgen.Result `json:"steps,omitempty"`
	Retries      []float64        `json:"retried_rates,omitempty"`
}

// sloTarget is s's latency objective in µs.
func (s Setup) sloTarget() float64 {
	if s.HSM != nil {
		return s.HSM.SLOMicros()
	}
	return sloMicros
}

// clean is the highest clean rate's rule for one step.
func clean(res loadgen.Result, p Params, signs bool) bool {
	return res.LossPct <= p.LossPct && !(signs && UnsignedPct(res) > p.LossPct) && res.AchievedRate >= 0.97*res.TargetRate
}

// meets reports whether a step was clean and within the objective.
func meets(res loadgen.Result, p Params, signs bool, target float64) bool {
	return clean(res, p, signs) && res.Received > 0 && res.Latency.P99 <= target
}

// sloSearch finds the highest rate at the objective, bisected like the
// highest clean rate: the ramp's steps give the bracket (lo, the highest
// rate that met it; hi, the lowest above lo that did not), then p.Refine
// steps halve it, a failing step retried once. When no ramp step met the
// objective, the rate is halved from the lowest one tried, at most three
// times, for a lower bracket. Each step run here goes to each.
func sloSearch(ctx context.Context, g *loadgen.Generator, p Params, s Setup, ramp []loadgen.Result,
	each func(loadgen.Result)) *SLOResult {
	res := &SLOResult{TargetMicros: s.sloTarget()}
	lo, hi, best := sloBracket(ramp, p, s.Signs, res.TargetMicros)
	for _, st := range ramp {
		if res.Lowest == 0 || st.TargetRate < res.Lowest {
			res.Lowest = st.TargetRate
		}
	}
	run := func(rate float64) (loadgen.Result, bool, error) {
		var r loadgen.Result
		for try := 0; try < 2; try++ {
			if try == 1 {
				res.Retries = append(res.Retries, rate)
			}
			time.Sleep(2 * p.Pause)
			var err error
			if r, err = g.Run(ctx, loadgen.Load{Rate: rate, Duration: p.StepDuration}); err != nil {
				return r, false, err
			}
			if meets(r, p, s.Signs, res.TargetMicros) {
				res.Steps = append(res.Steps, r)
				each(r)
				return r, true, nil
			}
		}
		res.Steps = append(res.Steps, r)
		each(r)
		return r, false, nil
	}
	if lo == 0 && res.Lowest > 0 {
		hi = res.Lowest
		for k, rate := 0, res.Lowest/2; k < 3 && ctx.Err() == nil; k, rate = k+1, rate/2 {
			r, ok, err := run(rate)
			res.Lowest = rate
			if err != nil {
				return res
			}
			if ok {
				lo, best = rate, &r
				break
			}
			hi = rate
		}
	}
	for k := 0; k < p.Refine && lo > 0 && hi > lo*1.02 && ctx.Err() == nil; k++ {
		mid := (lo + hi) / 2
		r, ok, err := run(mid)
		if err != nil {
			break
		}
		if ok {
			lo, best = mid, &r
		} else {
			hi = mid
		}
	}
	res.Rate = lo
	if best != nil {
		b := *best
		res.Best = &b
	}
	return res
}

// sloBracket is the bracket the ramp's steps give: lo, the highest rate
// that met the objective (best, its step), and hi, the lowest rate above lo
// that did not (0: none).
func sloBracket(ramp []loadgen.Result, p Params, signs bool, target float64) (lo, hi float64, best *loadgen.Result) {
	for i := range ramp {
		if st := &ramp[i]; meets(*st, p, signs, target) && st.TargetRate > lo {
			lo, best = st.TargetRate, st
		}
	}
	for _, st := range ramp {
		if st.TargetRate > lo && !meets(st, p, signs, target) && (hi == 0 || st.TargetRate < hi) {
			hi = st.TargetRate
		}
	}
	return lo, hi, best
}
