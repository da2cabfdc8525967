package compare

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// historyRun is a run of the given start with an appliance signing rate.
func historyRun(t *testing.T, start time.Time, rate float64) *Run {
	t.Helper()
	sum, err := ParseSteps(strings.NewReader(stepSample), 0.1)
	if err != nil {
		t.Fatal(err)
	}
	r := &Run{Started: start, OpenSSL: &OpenSSLSpeed{SignPerSec: 40000}}
	r.Env.LoadStart = "0.50 0.40 0.30"
	app := SetupResult{Setup: setupNamed(t, "appliance-sign-soft"), Summary: sum, Fixed: &FixedRun{Rate: 1600, CPUMicros: 50}}
	app.Summary.MaxCleanRate = rate
	app.Fixed.Result.Received, app.Fixed.Result.WithIdentity, app.Fixed.Result.Latency.P99 = 3200, 3200, 800
	kam := SetupResult{Setup: setupNamed(t, "kamailio-sign")}
	kam.Summary.MaxCleanRate = 500
	r.Setups = []SetupResult{kam, app}
	return r
}

// TestUpdateHistory: the table is created with its introduction, rows stay
// newest first whatever order runs are added in, a run written again
// replaces its row, and text after the table is kept.
func TestUpdateHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.md")
	d := func(h int) time.Time { return time.Date(2026, 11, 23, h, 0, 0, 0, time.UTC) }
	for _, r := range []*Run{historyRun(t, d(18), 2000), historyRun(t, d(20), 3000), historyRun(t, d(19), 2500)} {
		if err := UpdateHistory(path, r); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# Benchmark history") || !strings.Contains(string(b), "not committed") {
		t.Fatalf("introduction missing:\n%s", b)
	}
	if err := os.WriteFile(path, append(b, "\nA note below the table.\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateHistory(path, historyRun(t, d(19), 2600)); err != nil { // the 19:00 run again
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	var rows []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "| 2026-") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 3 {
		t.Fatalf("want 3 rows, got %d:\n%s", len(rows), b)
	}
	for i, want := range []string{"| 2026-11-23 20:00 | 0.50 0.40 0.30 | 500 | 3000 |", "| 2026-11-23 19:00 | 0.50 0.40 0.30 | 500 | 2600 |", "| 2026-11-23 18:00 |"} {
		if !strings.HasPrefix(rows[i], want) {
			t.Errorf("row %d = %q, want prefix %q", i, rows[i], want)
		}
	}
	if !strings.Contains(rows[0], "| 6.0× | 50.0 / 25 µs = 2.00× | 800 µs | sink read time, process clock |") {
		t.Errorf("row figures: %q", rows[0])
	}
	if !strings.HasSuffix(string(b), "\nA note below the table.\n") {
		t.Errorf("text after the table lost:\n%s", b)
	}
}

// TestDetachedReport: the committed report (latest.md) embeds no image and
// links no raw file, names the run directory and says how to regenerate it;
// the report in the run directory keeps its images and links.
func TestDetachedReport(t *testing.T) {
	r := historyRun(t, time.Date(2026, 11, 23, 21, 42, 0, 0, time.UTC), 2000)
	md := Markdown(r, "bench/results/2026-11-23-2142/", "../README.md", "", true)
	if strings.Contains(md, "![") || strings.Contains(md, ".png)") || strings.Contains(md, ".jsonl)") || strings.Contains(md, "README.md)") && !strings.Contains(md, "(../README.md)") {
		t.Errorf("detached report links raw files:\n%s", md)
	}
	for _, want := range []string{"`bench/results/2026-11-23-2142/README.md` on the machine that ran it (not in git)", "make bench", "bin/shakecompare report --out bench/results/2026-11-23-2142/"} {
		if !strings.Contains(md, want) {
			t.Errorf("detached report lacks %q", want)
		}
	}
	in := Markdown(r, "", "../README.md", "", false)
	if !strings.Contains(in, "![throughput](throughput.png)") || !strings.Contains(in, "[steps-appliance-sign-soft.jsonl](steps-appliance-sign-soft.jsonl)") {
		t.Errorf("run directory's report lost its images or links:\n%s", in)
	}
}
