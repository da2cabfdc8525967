package compare

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"time"
)

// Stalls is what a thread that does nothing but read the clock saw on one
// CPU: every gap between two consecutive readings of at least Floors[i] and
// below the next floor, counted in Count[i] and summed in Micros[i]. On a
// quiet bare-metal core the gaps are timer ticks of a few microseconds; on a
// virtual machine they include the times the hypervisor ran something else
// on that vCPU. Whatever runs on the CPU during such a gap waits with it,
// and a proxy at utilisation ρ needs about gap·ρ/(1-ρ) more to work off the
// datagrams that queued meanwhile: the stalls set a floor under any
// proxy's latency percentiles on this CPU.
type Stalls struct {
	CPU     int       `json:"cpu"`
	Seconds float64   `json:"seconds"`
	Floors  []float64 `json:"floors_us"`
	Count   []int     `json:"count"`
	Micros  []float64 `json:"total_us"`
}

// stallFloors are the gap classes, in microseconds.
var stallFloors = []float64{10, 100, 500, 1000, 2000, 5000}

// measureStalls spins for d on the calling goroutine's OS thread (pinned by
// the caller's taskset) and classifies the gaps between clock readings.
func measureStalls(d time.Duration) Stalls {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := Stalls{Seconds: d.Seconds(), Floors: stallFloors,
		Count: make([]int, len(stallFloors)), Micros: make([]float64, len(stallFloors))}
	start := time.Now()
	prev := time.Duration(0)
	for {
		now := time.Since(start)
		if now >= d {
			break
		}
		gap := float64(now-prev) / 1e3
		prev = now
		for i := len(stallFloors) - 1; i >= 0; i-- {
			if gap >= stallFloors[i] {
				s.Count[i]++
				s.Micros[i] += gap
				break
			}
		}
	}
	return s
}

// AtLeast sums the gaps of at least floor µs: how many and how long.
func (s Stalls) AtLeast(floor float64) (n int, micros float64) {
	for i, f := range s.Floors {
		if f >= floor && i < len(s.Count) && i < len(s.Micros) {
			n += s.Count[i]
			micros += s.Micros[i]
		}
	}
	return n, micros
}

// PrintStalls is "shakecompare stalls --seconds N": it measures Stalls for
// seconds and prints them as JSON. The bench runs it under taskset on the
// system under test's CPU (sutStalls).
func PrintStalls(seconds float64, w io.Writer) error {
	if seconds <= 0 || seconds > 60 {
		return fmt.Errorf("%w: --seconds must be in (0, 60]", ErrUsage)
	}
	return json.NewEncoder(w).Encode(measureStalls(time.Duration(seconds * float64(time.Second))))
}

// sutStalls runs the stall meter on cpu for seconds, in a process of its
// own so that nothing else of this process shares that CPU: the running
// binary again, with the arguments "stalls --seconds N" (cmd/shakecompare
// answers them with PrintStalls).
func sutStalls(cpu int, seconds float64) (*Stalls, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	out, err := exec.Command("taskset", "-c", strconv.Itoa(cpu), self, "stalls",
		"--seconds", strconv.FormatFloat(seconds, 'f', -1, 64)).Output()
	if err != nil {
		return nil, fmt.Errorf("compare: stall meter: %w", err)
	}
	var s Stalls
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("compare: stall meter: %w", err)
	}
	s.CPU = cpu
	return &s, nil
}
