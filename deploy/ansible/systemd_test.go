package ansible

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/internal/prereq"
)

// TestUnitVerifies renders the systemd unit for each mode (inline adds the
// XDP capabilities, netlink, bpf and the ethtool ExecStartPre) and checks
// it with systemd-analyze verify: the network-namespace hosts cannot run
// systemd, so this is where the unit itself is proven.
func TestUnitVerifies(t *testing.T) {
	prereq.Tools(t, "ansible-playbook", "systemd-analyze")
	dir := t.TempDir()
	role := filepath.Join(repoRoot(t), "deploy", "ansible", "roles", "appliance")
	pb := filepath.Join(dir, "render.yml")
	play := fmt.Sprintf(`- hosts: localhost
  gather_facts: false
  vars_files: [%s/defaults/main.yml, %s/vars/main.yml]
  tasks:
    - ansible.builtin.template:
        src: %s/templates/appliance.service.j2
        dest: "{{ out }}"
        mode: "0644"
`, role, role, role)
	if err := os.WriteFile(pb, []byte(play), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode string
		want []string
	}{
		{"proxy", []string{"CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n", "NoNewPrivileges=yes"}},
		{"inline", []string{"CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_BPF CAP_PERFMON\n",
			"AF_NETLINK", "ExecStartPre=-+/usr/sbin/ethtool -K eth0 large-receive-offload off generic-receive-offload off",
			"Environment=SOFTHSM2_CONF=/etc/shakenline/softhsm2.conf", "LimitMEMLOCK=infinity"}},
	} {
		out := filepath.Join(dir, tc.mode, "shakenline.service")
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			t.Fatal(err)
		}
		extra, _ := json.Marshal(map[string]any{"out": out, "appliance_mode": tc.mode, "appliance_iface": []string{"eth0"},
			"appliance_hsm": "softhsm", "appliance_bin": "/bin/true"})
		cmd := exec.Command("ansible-playbook", "-i", "localhost,", "-c", "local", pb, "-e", string(extra))
		cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: render: %v\n%s", tc.mode, err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s unit lacks %q:\n%s", tc.mode, w, b)
			}
		}
		if v, err := exec.Command("systemd-analyze", "verify", out).CombinedOutput(); err != nil {
			t.Errorf("%s: systemd-analyze verify: %v\n%s", tc.mode, err, v)
		}
	}
	// The verifier is not a rubber stamp: a unit whose binary is missing fails.
	bad := filepath.Join(dir, "bad", "shakenline.service")
	_ = os.MkdirAll(filepath.Dir(bad), 0o700)
	if err := os.WriteFile(bad, []byte("[Service]\nExecStart=/nonexistent/appliance serve\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("systemd-analyze", "verify", bad).Run(); err == nil {
		t.Errorf("systemd-analyze verify accepted a unit with a missing binary")
	}
}
