package ansible

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
)

// startPrometheus runs a Prometheus (Debian package) on the host's
// loopback, in its mount namespace, loading promRulesDir/*.yml: the
// "existing Prometheus" the monitoring tag installs into. t.Cleanup and the
// host's teardown stop it.
func startPrometheus(t *testing.T, h *host) {
	t.Helper()
	cfg := fmt.Sprintf("global: {evaluation_interval: 5s}\nrule_files: [%q]\n", promRulesDir+"/*.yml")
	h.in(t, "sh", "-c", "mkdir -p /etc/prometheus /var/lib/prometheus-test && cat > /etc/prometheus/test.yml <<'EOF'\n"+cfg+"EOF")
	logf, err := os.Create(filepath.Join(h.nsDir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(h.sshd.Process.Pid), "-m", "-n", "--", "prometheus",
		"--config.file=/etc/prometheus/test.yml", "--storage.tsdb.path=/var/lib/prometheus-test",
		"--web.listen-address="+promAddr, "--web.enable-lifecycle", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	deadline := time.Now().Add(20 * time.Second)
	for exec.Command("nsenter", "-t", strconv.Itoa(h.sshd.Process.Pid), "-m", "-n", "--", "curl", "-fsS", "http://"+promAddr+"/-/ready").Run() != nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(h.nsDir, "prometheus.log"))
			t.Fatalf("%s: Prometheus did not come up:\n%s", h.name, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// monitoringTasks are the tasks --tags monitoring may run.
var monitoringTasks = map[string]bool{
	"Validating arguments against arg spec 'main' - Shakenline signing appliance": true,
	"Check the monitoring variables":                                              true,
	"Create the rules directory":                                                  true,
	"Install the rule files (validated with promtool)":                            true,
	"Reload Prometheus":                                                           true,
	"Wait for Prometheus to load the Shakenline rules":                            true,
	"Create the dashboards directory":                                             true,
	"Install the dashboard JSON (Grafana's file provider picks it up)":            true,
}

// TestMonitoringTag applies the role's monitoring tag (off by default) to
// two test hosts: the rules go into a real Prometheus (Debian package)
// running on sl1's loopback, validated with promtool, Prometheus reloaded
// and seen to load them; the dashboard goes into sl2's provisioning
// directory; nothing else runs, a second run changes nothing, and a rule
// file promtool refuses fails the play and leaves the installed rules.
// That the tag is off by default is checked by TestRoleAndRollingUpgrade.
func TestMonitoringTag(t *testing.T) {
	if testing.Short() {
		t.Skip("ansible test: skipped with -short")
	}
	requireTools(t)
	if _, err := exec.LookPath("prometheus"); err != nil {
		prereq.Need(t, fmt.Errorf("ansible test: prometheus (Debian package): %w", err))
	}
	l := newLab(t, nHosts)
	// The appliance variables are required by the role's argument check
	// only; the monitoring tasks do not use them.
	l.writeInventory("/nonexistent/appliance", 5070, map[string]string{"sp.key": "-", "sp.pem": "-", "root.pem": "-"})
	h1, h2 := l.hosts[0], l.hosts[1]
	startPrometheus(t, h1)
	p := l.mustPlaybook("site.yml", "--tags", "monitoring")
	t.Logf("monitoring run: %v", p)
	if !strings.Contains(p.out, "Reload Prometheus") {
		t.Errorf("monitoring run: Prometheus was not reloaded:\n%s", steps(p.out))
	}
	// Only the monitoring tasks ran (and the role's argument check).
	for _, m := range regexp.MustCompile(`(?m)^TASK \[appliance : ([^\]]+)\]`).FindAllStringSubmatch(p.out, -1) {
		if !monitoringTasks[m[1]] {
			t.Errorf("--tags monitoring ran %q", m[1])
		}
	}
	repo := filepath.Join(repoRoot(t), "deploy")
	for _, f := range []struct {
		host      *host
		path, src string
	}{
		{h1, promRulesDir + "/shakenline-rules.yml", filepath.Join(repo, "prometheus", "shakenline-rules.yml")},
		{h1, promRulesDir + "/shakenline-alerts.yml", filepath.Join(repo, "prometheus", "shakenline-alerts.yml")},
		{h2, grafanaDir + "/shakenline.json", filepath.Join(repo, "grafana", "shakenline.json")},
	} {
		if got := f.host.in(t, "sha256sum", f.path); !strings.HasPrefix(got, sha(t, f.src)) {
			t.Errorf("%s: %s is not %s", f.host.name, f.path, f.src)
		}
		if m := f.host.in(t, "stat", "-c", "%a", f.path); m != "644" {
			t.Errorf("%s: %s mode %s", f.host.name, f.path, m)
		}
	}
	if h2.exists(t, promRulesDir+"/shakenline-alerts.yml") || h1.exists(t, grafanaDir+"/shakenline.json") {
		t.Errorf("monitoring files went to the wrong host (rules belong on %s, the dashboard on %s)", h1.name, h2.name)
	}
	if groups := h1.in(t, "curl", "-fsS", "http://"+promAddr+"/api/v1/rules"); !strings.Contains(groups, `"name":"shakenline.alerts"`) ||
		!strings.Contains(groups, `"name":"shakenline.recording"`) {
		t.Errorf("Prometheus on %s did not load the rules: %.300s", h1.name, groups)
	}
	p = l.mustPlaybook("site.yml", "--tags", "monitoring")
	for _, h := range l.hosts {
		if p.recap[h.name].changed != 0 {
			t.Errorf("%s: second monitoring run changed=%d, want 0\n%s", h.name, p.recap[h.name].changed, steps(p.out))
		}
	}
	// A rule file promtool refuses is not installed; the running rules stay.
	badRules := filepath.Join(l.dir, "bad", "shakenline-alerts.yml")
	_ = os.MkdirAll(filepath.Dir(badRules), 0o700)
	if err := os.WriteFile(badRules, []byte("groups:\n  - name: shakenline.alerts\n    rules:\n      - alert: Broken\n        expr: rate(x[\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badVars, _ := json.Marshal(map[string]any{"appliance_prometheus_rules_files": []string{badRules}})
	p = l.playbook("site.yml", "--tags", "monitoring", "-e", string(badVars))
	if p.err == nil || !strings.Contains(p.out, "failed to validate") {
		t.Errorf("a rule file promtool refuses was not refused:\n%s", tail(p.out, 30))
	}
	if got := h1.in(t, "sha256sum", promRulesDir+"/shakenline-alerts.yml"); !strings.HasPrefix(got, sha(t, filepath.Join(repo, "prometheus", "shakenline-alerts.yml"))) {
		t.Errorf("the refused rule file replaced the installed one")
	}

}
