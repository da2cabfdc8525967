package ansible

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// writeInventory writes the inventory the role is applied with.
func (l *lab) writeInventory(bin string, sinkPort int, pki map[string]string) {
	t := l.t
	l.invDir = filepath.Join(l.dir, "inventory")
	if err := os.MkdirAll(filepath.Join(l.invDir, "group_vars"), 0o700); err != nil {
		t.Fatal(err)
	}
	hosts := map[string]any{}
	for _, h := range l.hosts {
		h.drainDir = filepath.Join(l.dir, "drain")
		hosts[h.name] = map[string]any{
			"ansible_host":       h.addr,
			"appliance_sip":      fmt.Sprintf("%s:%d", h.addr, sipPort),
			"appliance_api":      fmt.Sprintf("%s:%d", h.addr, apiPort),
			"appliance_next_hop": fmt.Sprintf("%s:%d", h.peer, sinkPort),
		}
	}
	if err := os.MkdirAll(filepath.Join(l.dir, "drain"), 0o700); err != nil {
		t.Fatal(err)
	}
	inv := map[string]any{"all": map[string]any{"children": map[string]any{"appliances": map[string]any{"hosts": hosts}}}}
	vars := map[string]any{
		"ansible_user":                 "root",
		"ansible_ssh_private_key_file": l.key,
		"ansible_python_interpreter":   "/usr/bin/python3",
		"appliance_binary_src":         bin,
		"appliance_supervisor":         "pidfile",
		"appliance_mode":               "proxy",
		"appliance_x5u":                fmt.Sprintf("http://198.19.%d.1/sp.pem", l.octet),
		"appliance_lab":                true,
		"appliance_loops":              1,
		"appliance_attest":             "C",
		"appliance_hsm":                "softhsm",
		"appliance_pkcs11_pin":         testPIN,
		"appliance_softhsm_so_pin":     testSOPIN,
		"appliance_softhsm_import_key": "sp",
		"appliance_keys":               map[string]string{"sp": pki["sp.key"]},
		"appliance_cert_pem":           pki["sp.pem"],
		"appliance_signers": []map[string]any{
			{"name": "hsm", "pkcs11": true, "timeout": "200ms"},
			{"name": "soft", "key": "sp", "timeout": "100ms"},
		},
		"appliance_trust_stores": map[string]string{"lab": pki["root.pem"]},
		"appliance_api_tokens":   []string{testToken},
		"appliance_policy": map[string]any{"default": "B", "rules": []map[string]any{
			{"name": "lab-trunks", "attest": "A", "sources": []string{fmt.Sprintf("198.19.%d.0/24", l.octet)}},
		}},
		// Only the per-namespace sysctls can be set inside a test host.
		"appliance_sysctl": map[string]int{
			"net.ipv4.udp_rmem_min": 8192, "net.ipv4.udp_wmem_min": 8192, "net.core.somaxconn": 8192,
		},
		"appliance_nic_ifaces":      []string{"eth0"},
		"appliance_drain_command":   "touch " + filepath.Join(l.dir, "drain") + "/{{ inventory_hostname }}",
		"appliance_undrain_command": "rm -f " + filepath.Join(l.dir, "drain") + "/{{ inventory_hostname }}",
		"appliance_drain_delegate":  "localhost",
		"appliance_drain_wait":      1,
		// --tags monitoring (never by default): rules into the Prometheus
		// on sl1, the dashboard into a provisioning directory on sl2.
		"appliance_prometheus_host":           l.hosts[0].name,
		"appliance_prometheus_rules_dir":      promRulesDir,
		"appliance_prometheus_reload_command": "curl -fsS -X POST http://" + promAddr + "/-/reload",
		"appliance_prometheus_url":            "http://" + promAddr,
		"appliance_grafana_host":              l.hosts[len(l.hosts)-1].name,
		"appliance_grafana_dashboards_dir":    grafanaDir,
	}
	writeJSON(t, filepath.Join(l.invDir, "hosts.yml"), inv)
	writeJSON(t, filepath.Join(l.invDir, "group_vars", "appliances.yml"), vars)
}

type recap struct{ ok, changed, unreachable, failed int }

var recapRE = regexp.MustCompile(`(?m)^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// playbook runs ansible-playbook and returns its output, the per-host recap,
// how long it took and whether it succeeded.
func (l *lab) playbook(name string, args ...string) (string, map[string]recap, time.Duration, error) {
	t := l.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := append([]string{"-i", l.invDir, name}, args...)
	cmd := exec.CommandContext(ctx, "ansible-playbook", a...)
	cmd.Dir = l.ansible
	cp := filepath.Join(l.dir, "cp")
	_ = os.MkdirAll(cp, 0o700)
	cmd.Env = append(os.Environ(),
		"ANSIBLE_CONFIG="+filepath.Join(l.ansible, "ansible.cfg"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(l.dir, "ansible-local"),
		"ANSIBLE_SSH_CONTROL_PATH_DIR="+cp,
		"ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=30s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
		"ANSIBLE_HOST_KEY_CHECKING=False",
		"ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks",
	)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	out := buf.String()
	rc := map[string]recap{}
	for _, m := range recapRE.FindAllStringSubmatch(out, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		rc[m[1]] = recap{n(2), n(3), n(4), n(5)}
	}
	if err := os.WriteFile(filepath.Join(l.dir, fmt.Sprintf("ansible-%d.log", time.Now().UnixNano())), buf.Bytes(), 0o600); err != nil {
		t.Log(err)
	}
	for _, secret := range []string{testPIN, testSOPIN, testToken, "PRIVATE KEY"} {
		if strings.Contains(out, secret) {
			t.Errorf("ansible output contains secret material %q", secret)
		}
	}
	return out, rc, took, err
}

func (l *lab) mustPlaybook(name string, args ...string) (string, map[string]recap, time.Duration) {
	l.t.Helper()
	out, rc, took, err := l.playbook(name, args...)
	if err != nil {
		l.t.Fatalf("ansible-playbook %s %v: %v\n%s", name, args, err, tail(out, 60))
	}
	return out, rc, took
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// steps keeps the task and host lines of an ansible-playbook run.
func steps(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "PLAY ["), strings.HasPrefix(line, "TASK ["), strings.HasPrefix(line, "RUNNING HANDLER"):
			b.WriteString(strings.TrimRight(line, " *") + "\n")
		case strings.HasPrefix(line, "changed: "), strings.HasPrefix(line, "ok: ["), strings.HasPrefix(line, "fatal: "),
			strings.HasPrefix(line, "skipping: ["), strings.Contains(line, "\"msg\":"):
			b.WriteString("    " + strings.TrimSpace(line) + "\n")
		}
	}
	return b.String()
}

// profile returns the slowest tasks from the profile_tasks summary.
func profile(out string) string {
	_, sum, ok := strings.Cut(out, "===============================================================================")
	if !ok {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(sum), "\n")
	if len(lines) > 8 {
		lines = lines[:8]
	}
	return strings.Join(lines, "\n")
}
