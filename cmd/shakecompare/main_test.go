package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// TestUsage: command-line errors exit 2 with the usage or the reason.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate", "--out", t.TempDir()},
		{"run"},                      // no --out
		{"report", "--no-such-flag"}, // unknown flag
		{"stalls", "--seconds", "0"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
		if errb.Len() == 0 {
			t.Errorf("%q: nothing on stderr", args)
		}
	}
}

// TestStalls: "stalls" prints the stall meter's JSON on stdout, the form
// the bench reads back when it runs this binary on the SUT's CPU.
func TestStalls(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"stalls", "--seconds", "0.05"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.String())
	}
	if f, ok := m["floors_us"].([]any); !ok || len(f) == 0 {
		t.Fatalf("no floors_us in %s", out.String())
	}
}

// TestReportMissingRun: report on a directory without run.json fails with
// exit 1, not a usage error.
func TestReportMissingRun(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"report", "--out", t.TempDir()}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1 (stderr %q)", code, errb.String())
	}
}
