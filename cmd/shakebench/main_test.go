package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestRunSelfTestJSON(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"run", "--sink", "127.0.0.1:0", "--rate", "1000", "--count", "200",
		"--duration", "5s", "--sockets", "2", "--full-call", "--json", "--drain", "2s"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.String())
	}
	if m["sent"].(float64) != 200 || m["received"].(float64) != 200 || m["lost"].(float64) != 0 || m["bye_ok"].(float64) != 200 {
		t.Fatalf("result %v", m)
	}
	if !strings.Contains(errb.String(), "recv 200 lost 0") {
		t.Fatalf("human line missing: %q", errb.String())
	}
}

func TestStepJSONLines(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"step", "--sink", "127.0.0.1:0", "--start", "200", "--factor", "2",
		"--max-rate", "400", "--step-duration", "200ms", "--sockets", "2", "--json", "--drain", "300ms"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("want step lines and a summary, got %q", out.String())
	}
	var sum struct {
		Summary struct {
			MaxCleanRate float64 `json:"max_clean_rate"`
			Stop         string  `json:"stop"`
			Steps        []any   `json:"steps"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Summary.Steps) != len(lines)-1 || sum.Summary.Stop == "" {
		t.Fatalf("summary %+v for %d step lines", sum.Summary, len(lines)-1)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"bogus"},
		{"run", "--sink", ""},
		{"run", "--target", "nonsense"},
		{"run", "--sink", "127.0.0.1:0", "--from", "+1555"},
		{"run", "--sink", "127.0.0.1:0", "--rate", "-1"},
		{"run", "extra"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}
}

func TestRunOverTCP(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"run", "--transport", "tcp", "--sink", "127.0.0.1:0", "--rate", "1000", "--count", "200",
		"--duration", "5s", "--sockets", "3", "--full-call", "--json", "--drain", "2s"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.String())
	}
	if m["received"].(float64) != 200 || m["bye_ok"].(float64) != 200 {
		t.Fatalf("result %v", m)
	}
	if code := run(context.Background(), []string{"run", "--transport", "tls", "--sink", "127.0.0.1:0"}, &out, &errb); code != 2 {
		t.Fatalf("tls without a sink certificate: exit %d, want 2", code)
	}
}
