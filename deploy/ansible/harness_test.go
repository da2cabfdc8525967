package ansible

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/netns"
	"github.com/shakenline/shakenline/internal/prereq"
)

// Secrets the test gives the role; none may appear in Ansible's output.
const (
	testPIN    = "pin-7305-secret"
	testSOPIN  = "so-pin-5519-secret"
	testToken  = "tok-b1c4f00d-secret"
	nHosts     = 2
	sipPort    = 5060
	apiPort    = 8080
	trafficHz  = 100             // INVITEs per second while the upgrade runs
	trafficMax = trafficHz * 240 // hard bound on INVITEs per traffic run

	// The monitoring tag's targets on the test hosts.
	promAddr     = "127.0.0.1:9090" // a Prometheus on sl1's own loopback
	promRulesDir = "/etc/prometheus/rules.d"
	grafanaDir   = "/var/lib/grafana/dashboards/shakenline"
)

// requireTools skips (or, with CI=true, fails) when a prerequisite is
// missing: root and the namespace privileges (internal/netns), the tools,
// sshd and the softhsm2 module.
func requireTools(t *testing.T) {
	t.Helper()
	netns.Require(t)
	prereq.Tools(t, "ansible-playbook", "ssh", "ssh-keygen", "unshare", "nsenter", "softhsm2-util",
		"setpriv", "start-stop-daemon", "systemd-analyze", "ethtool", "go", "pkcs11-tool")
	for _, f := range []string{"/usr/sbin/sshd (apt-get install openssh-server)", "/usr/lib/softhsm/libsofthsm2.so (apt-get install softhsm2)"} {
		path, _, _ := strings.Cut(f, " ")
		if _, err := os.Stat(path); err != nil {
			prereq.Need(t, fmt.Errorf("ansible test: %s", f))
		}
	}
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// buildAppliance builds cmd/appliance with the given version string.
// APPLIANCE_GOFLAGS adds go build flags (e.g. -overlay=...).
func buildAppliance(t *testing.T, out, version string) {
	t.Helper()
	args := []string{"build", "-trimpath", "-ldflags", "-X main.version=" + version, "-o", out}
	args = append(args, strings.Fields(os.Getenv("APPLIANCE_GOFLAGS"))...)
	args = append(args, "./cmd/appliance")
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/appliance: %v\n%s", err, b)
	}
}

// writeJSON writes v as JSON, which is also YAML.
func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func sha(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for: %s", what)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
