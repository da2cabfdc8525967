package loadgen

import (
	"context"
	"fmt"
	"time"
)

// StepConfig drives a rate ramp: Start, then each step multiplies the rate
// by Factor (or adds Increment when set), until loss exceeds LossPct, the
// generator cannot reach the rate, MaxRate or MaxSteps is passed.
type StepConfig struct {
	Start        float64       // first rate, calls/s (required)
	Factor       float64       // default 1.25 when Increment is 0
	Increment    float64       // calls/s added per step
	StepDuration time.Duration // sending time per step (default 5s)
	MaxRate      float64       // last rate tried (default 1,000,000)
	LossPct      float64       // loss threshold in percent (default 0.1)
	MaxSteps     int           // default 40
	Pause        time.Duration // quiet time between steps (default 500ms)
	// MinAchieved is the fraction of the target rate the generator must
	// reach for a step to count (default 0.97); below it the ramp stops
	// with Stop "generator".
	MinAchieved float64
}

// StepSummary is the outcome of a ramp.
type StepSummary struct {
	MaxCleanRate float64  `json:"max_clean_rate"` // highest target rate that stayed clean; 0 if none
	Best         *Result  `json:"best,omitempty"` // the step at MaxCleanRate
	Steps        []Result `json:"steps"`
	// Stop says why the ramp ended: "loss", "generator", "max-rate",
	// "max-steps", "canceled" or "error".
	Stop string `json:"stop"`
}

// Step runs the ramp, calling each (if not nil) after every step.
func (g *Generator) Step(ctx context.Context, sc StepConfig, each func(Result)) (StepSummary, error) {
	if sc.Start <= 0 {
		return StepSummary{}, fmt.Errorf("%w: step start rate %v", ErrConfig, sc.Start)
	}
	if sc.Factor == 0 && sc.Increment == 0 {
		sc.Factor = 1.25
	}
	if sc.Increment == 0 && sc.Factor <= 1 {
		return StepSummary{}, fmt.Errorf("%w: step factor %v", ErrConfig, sc.Factor)
	}
	if sc.Increment < 0 {
		return StepSummary{}, fmt.Errorf("%w: step increment %v", ErrConfig, sc.Increment)
	}
	if sc.StepDuration <= 0 {
		sc.StepDuration = 5 * time.Second
	}
	if sc.MaxRate <= 0 {
		sc.MaxRate = 1_000_000
	}
	if sc.LossPct <= 0 {
		sc.LossPct = 0.1
	}
	if sc.MaxSteps <= 0 {
		sc.MaxSteps = 40
	}
	if sc.Pause <= 0 {
		sc.Pause = 500 * time.Millisecond
	}
	if sc.MinAchieved <= 0 {
		sc.MinAchieved = 0.97
	}
	var sum StepSummary
	rate := sc.Start
	for i := 0; ; i++ {
		if i == sc.MaxSteps {
			sum.Stop = "max-steps"
			return sum, nil
		}
		if rate > sc.MaxRate {
			sum.Stop = "max-rate"
			return sum, nil
		}
		res, err := g.Run(ctx, Load{Rate: rate, Duration: sc.StepDuration})
		sum.Steps = append(sum.Steps, res)
		if each != nil {
			each(res)
		}
		switch {
		case err != nil:
			sum.Stop = "error"
			return sum, err
		case ctx.Err() != nil:
			sum.Stop = "canceled"
			return sum, ctx.Err()
		case res.LossPct > sc.LossPct:
			sum.Stop = "loss"
			return sum, nil
		case res.AchievedRate < sc.MinAchieved*rate:
			sum.Stop = "generator"
			return sum, nil
		}
		sum.MaxCleanRate = rate
		best := res
		sum.Best = &best
		if sc.Increment > 0 {
			rate += sc.Increment
		} else {
			rate *= sc.Factor
		}
		select {
		case <-ctx.Done():
			sum.Stop = "canceled"
			return sum, ctx.Err()
		case <-time.After(sc.Pause):
		}
	}
}
