package ansible

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRoleAndRollingUpgrade applies the role to two test hosts, checks
// idempotence, reload-vs-restart, refusal of a broken config, and runs the
// rolling upgrade (good and bad) under live SIP traffic.
func TestRoleAndRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("ansible test: skipped with -short")
	}
	requireTools(t)
	total := time.Now()

	bins := t.TempDir()
	v1, v2, v3 := filepath.Join(bins, "v1", "appliance"), filepath.Join(bins, "v2", "appliance"), filepath.Join(bins, "v3", "appliance")
	buildAppliance(t, v1, "ansible-test-v1")
	buildAppliance(t, v2, "ansible-test-v2")
	t.Logf("built v1 and v2: %v", time.Since(total).Round(100*time.Millisecond))
	// v3: a release that passes config validation but cannot serve.
	if err := os.MkdirAll(filepath.Dir(v3), 0o755); err != nil {
		t.Fatal(err)
	}
	bad := "#!/bin/sh\ncase \" $* \" in *\" --check \"*|\" version \") exec " + v2 + " \"$@\" ;; esac\necho 'appliance: broken build' >&2\nexit 1\n"
	if err := os.WriteFile(v3, []byte(bad), 0o755); err != nil {
		t.Fatal(err)
	}

	// Lab PKI for the signing certificate and the trust store.
	pkiDir := filepath.Join(bins, "pki")
	run(t, v1, "lab-pki", "--out", pkiDir)
	pki := map[string]string{}
	for _, f := range []string{"root.pem", "sp.pem", "sp.key"} {
		b, err := os.ReadFile(filepath.Join(pkiDir, f))
		if err != nil {
			t.Fatal(err)
		}
		pki[f] = string(b)
	}
	// The role validates with `serve --config FILE --check`; refuse to go on
	// with a binary that does not have it.
	if out, err := exec.Command(v1, "serve", "--check", "--config", "/nonexistent").CombinedOutput(); strings.Contains(string(out), "flag provided but not defined: -check") {
		t.Fatalf("appliance serve --check is not implemented yet (the role validates with it): %v %s", err, firstLine(out))
	}

	labStart := time.Now()
	l := newLab(t, nHosts)
	t.Logf("test hosts up: %v", time.Since(labStart).Round(100*time.Millisecond))
	s := newSink(t)
	l.writeInventory(v1, s.port(), pki)
	t.Logf("lab: %d hosts in network namespaces %s.. (198.19.%d.0/24), sink port %d", nHosts, l.hosts[0].ns.Name, l.octet, s.port())

	// 1. First run: bare host -> appliance.
	p := l.mustPlaybook("site.yml")
	t.Logf("first run: %v\n%s", p, p.profile())
	for _, h := range l.hosts {
		if p.recap[h.name].changed == 0 || p.recap[h.name].failed != 0 {
			t.Fatalf("%s: first run recap %+v", h.name, p.recap[h.name])
		}
		if code, body, err := h.get("/readyz"); err != nil || code != 200 {
			t.Fatalf("%s: /readyz %d %q %v", h.name, code, body, err)
		}
		for path, want := range map[string]string{
			"/etc/shakenline/pkcs11.pin":    "440 root shakenline",
			"/etc/shakenline/keys/sp.key":   "440 root shakenline",
			"/etc/shakenline/api-tokens":    "440 root shakenline",
			"/etc/shakenline/appliance.yml": "640 root shakenline",
			"/etc/shakenline":               "750 root shakenline",
			"/usr/local/bin/appliance":      "755 root root",
		} {
			if got := h.in(t, "stat", "-c", "%a %U %G", path); got != want {
				t.Errorf("%s: %s is %q, want %q", h.name, path, got, want)
			}
		}
		if u := h.in(t, "ps", "-o", "user=", "-p", h.pid(t)); u != "shakenline" {
			t.Errorf("%s: appliance runs as %q, want shakenline", h.name, u)
		}
		if caps := h.in(t, "grep", "^CapEff", "/proc/"+h.pid(t)+"/status"); !strings.HasSuffix(caps, "0000000000000400") {
			t.Errorf("%s: effective capabilities %q, want only CAP_NET_BIND_SERVICE", h.name, caps)
		}
		if gro := h.in(t, "ethtool", "-k", "eth0"); !strings.Contains(gro, "generic-receive-offload: off") {
			t.Errorf("%s: GRO still on after the NIC tuning", h.name)
		}
		if v := h.in(t, "sysctl", "-n", "net.ipv4.udp_rmem_min"); v != "8192" {
			t.Errorf("%s: net.ipv4.udp_rmem_min=%s", h.name, v)
		}
		if unit := h.in(t, "cat", "/etc/systemd/system/shakenline.service"); !strings.Contains(unit, "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n") {
			t.Errorf("%s: unit capabilities:\n%s", h.name, unit)
		}
		// The host is bare: root's shell start-up files are Debian's, not
		// this machine's (bareHome).
		if got := h.in(t, "sha256sum", "/root/.bashrc"); !strings.HasPrefix(got, sha(t, "/usr/share/base-files/dot.bashrc")) {
			t.Errorf("%s: /root/.bashrc is not base-files' dot.bashrc", h.name)
		}
	}
	// Calls are signed through the token (HSM first in the chain).
	tr := startTraffic(t, l, "smoke")
	time.Sleep(500 * time.Millisecond)
	tr.halt()
	if got := s.waitSunk(tr.sent.Load()); got != tr.sent.Load() || s.unsigned.Load() != 0 {
		t.Fatalf("smoke: sent %d, sink got %d (%d unsigned)", tr.sent.Load(), got, s.unsigned.Load())
	}

	// 2. Second run: nothing to change.
	p = l.mustPlaybook("site.yml")
	t.Logf("second run: %v\n%s", p, p.profile())
	for _, h := range l.hosts {
		if p.recap[h.name].changed != 0 {
			t.Errorf("%s: second run changed=%d, want 0", h.name, p.recap[h.name].changed)
		}
	}

	h1, h2 := l.hosts[0], l.hosts[1]
	// The monitoring tag is off by default: neither run installed rules or
	// a dashboard although the inventory sets their directories.
	for _, h := range l.hosts {
		for _, f := range []string{promRulesDir + "/shakenline-alerts.yml", grafanaDir + "/shakenline.json"} {
			if h.exists(t, f) {
				t.Errorf("%s: %s installed without --tags monitoring", h.name, f)
			}
		}
	}

	// 3. A policy change reloads (same pid, SIGHUP logged) and does not restart.
	pid1 := h1.pid(t)
	reloadsBefore := strings.Count(h1.log(t), "configuration reloaded")
	startsBefore := strings.Count(h1.log(t), "appliance serving")
	policy2 := filepath.Join(l.dir, "policy2.json")
	writeJSON(t, policy2, map[string]any{"appliance_policy": map[string]any{"default": "B", "rules": []map[string]any{
		{"name": "lab-trunks", "attest": "A", "sources": []string{fmt.Sprintf("198.19.%d.0/24", l.octet)}},
		{"name": "partner", "attest": "B", "sources": []string{"198.18.77.0/24"}},
	}}})
	p = l.mustPlaybook("site.yml", "--limit", h1.name, "--tags", "configure", "-e", "@"+policy2)
	t.Logf("policy change run: %v", p)
	if !strings.Contains(p.out, "Reload the appliance (pidfile)") || strings.Contains(p.out, "RUNNING HANDLER [appliance : Restart") {
		t.Errorf("policy change: want the reload handler and no restart handler:\n%s", tail(p.out, 40))
	}
	waitFor(t, "reload logged", func() bool { return strings.Count(h1.log(t), "configuration reloaded") > reloadsBefore })
	if p := h1.pid(t); p != pid1 {
		t.Errorf("policy change restarted the appliance: pid %s -> %s", pid1, p)
	}
	if n := strings.Count(h1.log(t), "appliance serving"); n != startsBefore {
		t.Errorf("policy change: %d starts logged, want %d", n, startsBefore)
	}

	// 4. A broken config is refused by the binary; the running appliance and
	// its config file stay as they were.
	sumBefore := fileSum(t, h1, "/etc/shakenline/appliance.yml")
	broken := filepath.Join(l.dir, "broken.json")
	writeJSON(t, broken, map[string]any{"appliance_policy": map[string]any{"default": "B", "rules": []map[string]any{
		{"name": "typo", "attest": "Z", "sources": []string{"198.18.77.0/24"}},
	}}})
	p = l.playbook("site.yml", "--limit", h1.name, "--tags", "configure", "-e", "@"+policy2, "-e", "@"+broken)
	t.Logf("broken config run: %v err=%v", p, p.err)
	if p.err == nil || p.recap[h1.name].failed == 0 {
		t.Errorf("broken config was not refused:\n%s", tail(p.out, 40))
	}
	if !strings.Contains(p.out, "failed to validate") {
		t.Errorf("broken config: no validation failure in the output:\n%s", tail(p.out, 40))
	}
	if p := h1.pid(t); p != pid1 {
		t.Errorf("broken config touched the running appliance: pid %s -> %s", pid1, p)
	}
	if sum := fileSum(t, h1, "/etc/shakenline/appliance.yml"); sum != sumBefore {
		t.Errorf("broken config replaced the live config file")
	}
	if code, _, err := h1.get("/readyz"); code != 200 || err != nil {
		t.Errorf("after the refused config: /readyz %d %v", code, err)
	}

	// Does the API sign (ATIS-1000082)? The upgrade checks it when it does.
	probe := signingAPIUp(h1)
	t.Logf("POST /stir/v1/signing answers on v1: %v", probe)

	// 5. Rolling upgrade v1 -> v2 under traffic.
	s.signed.Store(0)
	s.unsigned.Store(0)
	tr = startTraffic(t, l, "upgrade")
	sm := startSampler(l, s, tr)
	time.Sleep(2 * time.Second)
	pidsBefore := []string{h1.pid(t), h2.pid(t)}
	p = l.playbook("rolling-upgrade.yml", "-e", "appliance_binary_src="+v2,
		"-e", fmt.Sprintf("appliance_upgrade_probe_signing=%v", probe))
	time.Sleep(2 * time.Second)
	tr.halt()
	sunk := s.waitSunk(tr.sent.Load())
	lines := sm.halt()
	t.Logf("rolling upgrade v1->v2: %v err=%v\n%s", p, p.err, strings.Join(lines, "\n"))
	t.Logf("rolling upgrade profile:\n%s", p.profile())
	t.Logf("rolling upgrade steps:\n%s", steps(p.out))
	if p.err != nil {
		t.Fatalf("rolling upgrade failed: %v\n%s", p.err, tail(p.out, 60))
	}
	for i, h := range l.hosts {
		if v := h.version(t); !strings.Contains(v, "ansible-test-v2") {
			t.Errorf("%s: version %q after the upgrade", h.name, v)
		}
		if p := h.pid(t); p == pidsBefore[i] {
			t.Errorf("%s: not restarted by the upgrade", h.name)
		}
	}
	t.Logf("upgrade traffic: sent %d (per host %d/%d), sink %d signed %d unsigned, lost %d",
		tr.sent.Load(), tr.perHost[0].Load(), tr.perHost[1].Load(), s.signed.Load(), s.unsigned.Load(), tr.sent.Load()-sunk)
	if sunk != tr.sent.Load() || s.unsigned.Load() != 0 {
		t.Errorf("calls dropped or unsigned during the upgrade: sent %d, sunk %d, unsigned %d", tr.sent.Load(), sunk, s.unsigned.Load())
	}

	// 6. A bad release: the first host fails its checks, is rolled back and
	// the rollout stops before the second host.
	s.signed.Store(0)
	s.unsigned.Store(0)
	pidsBefore = []string{h1.pid(t), h2.pid(t)}
	tr = startTraffic(t, l, "rollback")
	sm = startSampler(l, s, tr)
	time.Sleep(2 * time.Second)
	p = l.playbook("rolling-upgrade.yml", "-e", "appliance_binary_src="+v3,
		"-e", fmt.Sprintf("appliance_upgrade_probe_signing=%v", probe))
	time.Sleep(2 * time.Second)
	tr.halt()
	sunk = s.waitSunk(tr.sent.Load())
	lines = sm.halt()
	t.Logf("rolling upgrade to a bad build: %v err=%v\n%s", p, p.err, strings.Join(lines, "\n"))
	t.Logf("bad-build steps:\n%s", steps(p.out))
	if p.err == nil {
		t.Errorf("rolling upgrade to a broken build succeeded")
	}
	if !strings.Contains(p.out, "rollout stopped") {
		t.Errorf("no rollback message:\n%s", tail(p.out, 40))
	}
	if v := h1.version(t); !strings.Contains(v, "ansible-test-v2") {
		t.Errorf("%s: version %q after the rollback, want v2", h1.name, v)
	}
	if p := h1.pid(t); p == pidsBefore[0] {
		t.Errorf("%s: not restarted (rollback should restart it)", h1.name)
	}
	if code, _, err := h1.get("/readyz"); code != 200 || err != nil {
		t.Errorf("%s after the rollback: /readyz %d %v", h1.name, code, err)
	}
	if p := h2.pid(t); p != pidsBefore[1] {
		t.Errorf("%s was touched although the rollout should have stopped", h2.name)
	}
	if v := h2.in(t, "sha256sum", "/usr/local/bin/appliance"); strings.Contains(v, sha(t, v3)) {
		t.Errorf("%s got the broken build", h2.name)
	}
	t.Logf("bad-build traffic: sent %d (per host %d/%d), sink %d signed %d unsigned, lost %d",
		tr.sent.Load(), tr.perHost[0].Load(), tr.perHost[1].Load(), s.signed.Load(), s.unsigned.Load(), tr.sent.Load()-sunk)
	if sunk != tr.sent.Load() || s.unsigned.Load() != 0 {
		t.Errorf("calls dropped or unsigned during the failed upgrade: sent %d, sunk %d, unsigned %d", tr.sent.Load(), sunk, s.unsigned.Load())
	}
	t.Logf("whole ansible test: %v", time.Since(total).Round(100*time.Millisecond))
}
