package compare

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// The meter classifies gaps into its floors; the gaps it counts fit in the
// time it ran.
func TestMeasureStalls(t *testing.T) {
	d := 100 * time.Millisecond
	st := measureStalls(d)
	if len(st.Count) != len(stallFloors) || len(st.Micros) != len(stallFloors) || st.Seconds != d.Seconds() {
		t.Fatalf("shape: %+v", st)
	}
	total := 0.0
	for i := range st.Count {
		if st.Count[i] < 0 || (st.Count[i] == 0) != (st.Micros[i] == 0) {
			t.Fatalf("class %d: %d gaps, %.0f µs", i, st.Count[i], st.Micros[i])
		}
		if st.Count[i] > 0 && st.Micros[i] < float64(st.Count[i])*st.Floors[i] {
			t.Fatalf("class %d (≥ %v µs): %d gaps sum to %.0f µs", i, st.Floors[i], st.Count[i], st.Micros[i])
		}
		total += st.Micros[i]
	}
	if total > 1.01*float64(d.Microseconds())+1000 {
		t.Fatalf("gaps sum to %.0f µs in a %v run", total, d)
	}
}

func TestStallsAtLeastAndReport(t *testing.T) {
	st := &Stalls{CPU: 1, Seconds: 2, Floors: stallFloors,
		Count:  []int{100, 10, 4, 3, 2, 1},
		Micros: []float64{2000, 2000, 3000, 4000, 6000, 8000}}
	if n, us := st.AtLeast(1000); n != 6 || us != 18000 {
		t.Fatalf("AtLeast(1000) = %d, %v", n, us)
	}
	if n, us := st.AtLeast(100); n != 20 || us != 23000 {
		t.Fatalf("AtLeast(100) = %d, %v", n, us)
	}
	s := stallSentence(st)
	for _, want := range []string{"≥ 1 ms 6 times in 2 s", "0.90 % of the time", "≥ 100 µs: 1.15 %"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	if tb := stallTable(st); !strings.Contains(tb, "≥ 5000 µs: 1 (8.0 ms)") {
		t.Errorf("table %q", tb)
	}
}

func TestStallsCommand(t *testing.T) {
	var b bytes.Buffer
	if err := PrintStalls(0.05, &b); err != nil {
		t.Fatal(err)
	}
	var st Stalls
	if err := json.Unmarshal(b.Bytes(), &st); err != nil || st.Seconds != 0.05 {
		t.Fatalf("%v %+v", err, st)
	}
	for _, bad := range []float64{0, -1, 61} {
		if err := PrintStalls(bad, &b); !errors.Is(err, ErrUsage) {
			t.Errorf("--seconds %v: %v", bad, err)
		}
	}
}
