package compare

import (
	"testing"

	"github.com/shakenline/shakenline/bench/loadgen"
)

func step(rate, lossPct, p99 float64) loadgen.Result {
	return loadgen.Result{TargetRate: rate, AchievedRate: rate, Sent: 1000, Received: 1000, WithIdentity: 1000,
		LossPct: lossPct, Latency: loadgen.Latency{P99: p99}}
}

// The bracket for the latency objective: the highest step within it (clean
// and p99 under the target) and the lowest above it that was not, whether
// by latency or by loss. A step that met it above one that did not still
// counts (on a shared host one step's p99 is noise); the bisection runs
// between the highest that met it and the lowest above that did not.
func TestSLOBracket(t *testing.T) {
	p := DefaultParams(false)
	ramp := []loadgen.Result{step(500, 0, 400), step(650, 0, 900), step(845, 0, 1500), step(1098, 0, 800), step(1428, 0.5, 300)}
	lo, hi, best := sloBracket(ramp, p, false, sloMicros)
	if lo != 1098 || hi != 1428 || best == nil || best.TargetRate != 1098 {
		t.Fatalf("lo %v hi %v best %+v; want 1098, 1428", lo, hi, best)
	}
	lo, hi, _ = sloBracket(ramp[:3], p, false, sloMicros)
	if lo != 650 || hi != 845 {
		t.Fatalf("lo %v hi %v; want 650, 845", lo, hi)
	}
	if lo, _, _ = sloBracket([]loadgen.Result{step(500, 0, 1200)}, p, false, sloMicros); lo != 0 {
		t.Fatalf("nothing within the objective: lo %v", lo)
	}
	// A signing setup: unsigned calls count like lost ones.
	unsigned := step(500, 0, 100)
	unsigned.WithIdentity = 990
	if lo, _, _ = sloBracket([]loadgen.Result{unsigned}, p, true, sloMicros); lo != 0 {
		t.Fatalf("1 %% unsigned within the objective: lo %v", lo)
	}
}
