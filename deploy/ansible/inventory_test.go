package ansible

import (
	"fmt"
	"os"
	"path/filepath"
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
