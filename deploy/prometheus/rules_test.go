package prometheus

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/shakenline/shakenline/internal/prereq"
)

// The rule and test files, relative to this directory.
const (
	recordingFile = "shakenline-rules.yml"
	alertsFile    = "shakenline-alerts.yml"
	testsGlob     = "tests/*.yml"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type testFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name           string `yaml:"name"`
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// load decodes a YAML file; rule files strictly (no unknown keys), test
// files only as far as the checks need.
func load(t *testing.T, path string, v any) {
	t.Helper()
	_, strict := v.(*ruleFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(strict)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestPromtool checks the rule files and runs the unit tests with the real
// promtool (Debian package prometheus): every alert fires when it should
// and stays quiet when it should not (tests/*.yml).
func TestPromtool(t *testing.T) {
	promtool := prereq.Tool(t, "promtool")
	if out, err := exec.Command(promtool, "check", "rules", recordingFile, alertsFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, _ := filepath.Glob(testsGlob)
	if len(tests) == 0 {
		t.Fatal("no rule tests")
	}
	out, err := exec.Command(promtool, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestEveryAlertTested: each alert (per severity) has a case where it fires
// and each alert a case where it is expected quiet; each alert carries a
// severity, a summary, a description naming its metric and threshold, and a
// runbook; every series the rules read is in docs/METRICS.md.
func TestEveryAlertTested(t *testing.T) {
	var rec, alerts ruleFile
	load(t, recordingFile, &rec)
	load(t, alertsFile, &alerts)
	fires := map[string]bool{} // alertname/severity
	quiet := map[string]bool{} // alertname
	files, _ := filepath.Glob(testsGlob)
	for _, f := range files {
		var tf testFile
		load(t, f, &tf)
		if !slices.Contains(tf.RuleFiles, "../"+recordingFile) || !slices.Contains(tf.RuleFiles, "../"+alertsFile) {
			t.Errorf("%s: rule_files %v do not load both rule files", f, tf.RuleFiles)
		}
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTests {
				if len(a.ExpAlerts) == 0 {
					quiet[a.Alertname] = true
				}
				for _, e := range a.ExpAlerts {
					fires[a.Alertname+"/"+e.ExpLabels["severity"]] = true
				}
			}
		}
	}
	recorded := map[string]bool{}
	for _, g := range rec.Groups {
		for _, r := range g.Rules {
			if r.Record == "" || r.Alert != "" {
				t.Errorf("%s: only recording rules belong here (%q)", recordingFile, r.Alert)
			}
			recorded[r.Record] = true
		}
	}
	metricsDoc, err := os.ReadFile("../../docs/METRICS.md")
	if err != nil {
		t.Fatal(err)
	}
	seriesRE := regexp.MustCompile(`\b((?:shakenline|process|go)_[a-z0-9_]+|up)\b`)
	recordedRE := regexp.MustCompile(`\bshakenline:[a-z0-9_:]+`)
	checkDocumented := func(where, expr string) {
		for _, m := range seriesRE.FindAllString(expr, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(m, "_le_bucket"), "_bucket")
			if m != "up" && !strings.Contains(string(metricsDoc), "`"+base+"`") {
				t.Errorf("%s reads %s, which docs/METRICS.md does not list", where, m)
			}
		}
		for _, m := range recordedRE.FindAllString(expr, -1) {
			if !recorded[m] {
				t.Errorf("%s reads %s, which no recording rule records", where, m)
			}
		}
	}
	for _, g := range rec.Groups {
		for _, r := range g.Rules {
			checkDocumented(r.Record, r.Expr)
		}
	}
	n := 0
	for _, g := range alerts.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" {
				t.Errorf("%s: only alerts belong here (%q)", alertsFile, r.Record)
				continue
			}
			id := r.Alert + "/" + r.Labels["severity"]
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q", id, s)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", id, a)
				}
			}
			desc := r.Annotations["description"]
			named := false
			for _, m := range seriesRE.FindAllString(r.Expr+" "+expandRecorded(rec, r.Expr), -1) {
				if strings.Contains(desc, m) {
					named = true
				}
			}
			if !named {
				t.Errorf("%s: the description names none of the metrics of %q", id, r.Expr)
			}
			if !strings.Contains(desc, "threshold") {
				t.Errorf("%s: the description does not state the threshold", id)
			}
			checkDocumented(id, r.Expr)
			if !fires[id] {
				t.Errorf("%s: no test case where it fires (tests/*.yml)", id)
			}
			if !quiet[r.Alert] {
				t.Errorf("%s: no test case where it stays quiet (tests/*.yml)", r.Alert)
			}
		}
	}
	if n < 15 {
		t.Fatalf("only %d alerts", n)
	}
}

// expandRecorded returns the expressions of the recorded series expr uses.
func expandRecorded(rec ruleFile, expr string) string {
	var b strings.Builder
	for _, g := range rec.Groups {
		for _, r := range g.Rules {
			if strings.Contains(expr, r.Record) {
				b.WriteString(r.Expr + " ")
			}
		}
	}
	return b.String()
}
