package ansible

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shakenline/shakenline/internal/prereq"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

// requireTools skips (or, with CI=true, fails) when a prerequisite is missing.
func requireTools(t *testing.T) {
	t.Helper()
	missing := func(what string) { prereq.Need(t, fmt.Errorf("ansible test: %s", what)) }
	if os.Geteuid() != 0 {
		missing("root")
	}
	for _, p := range []string{"ansible-playbook", "ssh", "ssh-keygen", "ip", "unshare", "nsenter", "softhsm2-util",
		"setpriv", "start-stop-daemon", "systemd-analyze", "ethtool", "go", "pkcs11-tool"} {
		if _, err := exec.LookPath(p); err != nil {
			missing(p)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		missing("/usr/sbin/sshd (apt-get install openssh-server)")
	}
	if _, err := os.Stat("/usr/lib/softhsm/libsofthsm2.so"); err != nil {
		missing("softhsm2 module")
	}
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

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

// host is one test host: a network namespace with its own sshd in a
// private mount namespace.
type host struct {
	name     string // inventory name
	ns       string
	addr     string // address inside the namespace
	peer     string // root-namespace side of the veth
	sshd     *exec.Cmd
	sshdLog  string
	nsDir    string
	drainDir string
}

// lab is the set of test hosts plus the controller-side files.
type lab struct {
	t       *testing.T
	dir     string
	key     string // ssh client key
	octet   int
	hosts   []*host
	invDir  string
	ansible string // deploy/ansible
}

func newLab(t *testing.T, n int) *lab {
	t.Helper()
	dir := t.TempDir()
	l := &lab{t: t, dir: dir, octet: 1 + os.Getpid()%250, ansible: filepath.Join(repoRoot(t), "deploy", "ansible")}
	l.key = filepath.Join(dir, "id_ed25519")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", l.key)
	pub, err := os.ReadFile(l.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		l.hosts = append(l.hosts, l.addHost(i, auth))
	}
	return l
}

func (l *lab) addHost(i int, auth string) *host {
	t := l.t
	pid := os.Getpid() % 100000
	h := &host{
		name:  fmt.Sprintf("sl%d", i+1),
		ns:    fmt.Sprintf("slans%d-%d", pid, i),
		addr:  fmt.Sprintf("198.19.%d.%d", l.octet, 4*i+2),
		peer:  fmt.Sprintf("198.19.%d.%d", l.octet, 4*i+1),
		nsDir: filepath.Join(l.dir, fmt.Sprintf("host%d", i+1)),
	}
	veth := fmt.Sprintf("sla%d%c", pid, 'a'+i)
	run(t, "ip", "netns", "add", h.ns)
	t.Cleanup(func() { h.destroy(t) })
	run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", veth+"p")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", veth).Run() })
	run(t, "ip", "link", "set", veth+"p", "netns", h.ns)
	run(t, "ip", "-n", h.ns, "link", "set", veth+"p", "name", "eth0")
	run(t, "ip", "addr", "add", h.peer+"/30", "dev", veth)
	run(t, "ip", "link", "set", veth, "up")
	run(t, "ip", "-n", h.ns, "addr", "add", h.addr+"/30", "dev", "eth0")
	run(t, "ip", "-n", h.ns, "link", "set", "eth0", "up")
	run(t, "ip", "-n", h.ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", h.ns, "route", "add", "default", "via", h.peer)
	// Something for the NIC tuning to do: GRO on, as on a physical NIC.
	run(t, "ip", "netns", "exec", h.ns, "ethtool", "-K", "eth0", "generic-receive-offload", "on")

	if err := os.MkdirAll(h.nsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(h.nsDir, "ssh_host_ed25519_key")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	cfg := filepath.Join(h.nsDir, "sshd_config")
	conf := fmt.Sprintf(`ListenAddress %s:22
HostKey %s
PidFile none
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 50
MaxSessions 50
Subsystem sftp /usr/lib/openssh/sftp-server
`, h.addr, hostKey, auth)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// The host's own view of the filesystem: overlays whose upper layers
	// live in nsDir, a fresh /run.
	var sh strings.Builder
	sh.WriteString("set -e\n")
	for _, d := range []string{"etc", "var", "usr/local", "opt", "root"} {
		up := filepath.Join(h.nsDir, "upper", d)
		wk := filepath.Join(h.nsDir, "work", d)
		fmt.Fprintf(&sh, "mkdir -p %s %s\nmount -t overlay overlay -o lowerdir=/%s,upperdir=%s,workdir=%s /%s\n", up, wk, d, up, wk, d)
	}
	sh.WriteString("mount -t tmpfs -o mode=0755 tmpfs /run\nmkdir -p /run/sshd\nchmod 0755 /run/sshd\n")
	fmt.Fprintf(&sh, "exec /usr/sbin/sshd -D -e -f %s\n", cfg)
	h.sshdLog = filepath.Join(h.nsDir, "sshd.log")
	logf, err := os.Create(h.sshdLog)
	if err != nil {
		t.Fatal(err)
	}
	h.sshd = exec.Command("ip", "netns", "exec", h.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", sh.String())
	h.sshd.Stdout, h.sshd.Stderr = logf, logf
	if err := h.sshd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.sshd.Wait(); logf.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", h.addr+":22", 300*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(h.sshdLog)
			t.Fatalf("%s: sshd did not come up: %v\n%s", h.name, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return h
}

// destroy kills everything in the host's namespace and removes it.
func (h *host) destroy(t *testing.T) {
	for range 3 {
		out, _ := exec.Command("ip", "netns", "pids", h.ns).Output()
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscallKill(pid)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h.sshd != nil && h.sshd.Process != nil {
		_ = h.sshd.Process.Kill()
	}
	if err := exec.Command("ip", "netns", "del", h.ns).Run(); err != nil {
		t.Logf("ip netns del %s: %v", h.ns, err)
	}
}

// in runs a command in the host's network and mount namespaces.
func (h *host) in(t *testing.T, args ...string) string {
	t.Helper()
	a := append([]string{"-t", strconv.Itoa(h.sshd.Process.Pid), "-m", "-n", "--"}, args...)
	return strings.TrimSpace(run(t, "nsenter", a...))
}

// exists reports whether path exists in the host's filesystem view.
func (h *host) exists(t *testing.T, path string) bool {
	t.Helper()
	err := exec.Command("nsenter", "-t", strconv.Itoa(h.sshd.Process.Pid), "-m", "-n", "--", "test", "-e", path).Run()
	return err == nil
}

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

func (h *host) pid(t *testing.T) string {
	return h.in(t, "cat", "/run/shakenline/appliance.pid")
}

func (h *host) version(t *testing.T) string {
	return h.in(t, "/usr/local/bin/appliance", "version")
}

func (h *host) log(t *testing.T) string {
	return h.in(t, "cat", "/var/log/shakenline/appliance.log")
}

func (h *host) get(path string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s:%d%s", h.addr, apiPort, path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

var signedRE = regexp.MustCompile(`(?m)^shakenline_calls_signed_total\{[^}]*\} ([0-9]+)`)

// signed is the host's signed-call counter (all attestation levels), -1 when
// the API does not answer.
func (h *host) signed() int {
	code, body, err := h.get("/metrics")
	if err != nil || code != 200 {
		return -1
	}
	n := 0
	for _, m := range signedRE.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

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

// sink is the next hop: it counts the INVITEs the appliances forward.
type sink struct {
	conn     *net.UDPConn
	signed   atomic.Int64
	unsigned atomic.Int64
	mu       sync.Mutex
	seen     map[string]bool
}

func newSink(t *testing.T) *sink {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{conn: c, seen: map[string]bool{}}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 8192)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := buf[:n]
			if !bytes.HasPrefix(msg, []byte("INVITE ")) {
				continue
			}
			id := header(msg, "Call-ID")
			s.mu.Lock()
			dup := s.seen[id]
			s.seen[id] = true
			s.mu.Unlock()
			if dup {
				continue
			}
			if bytes.Contains(msg, []byte("\r\nIdentity: ")) && bytes.Contains(msg, []byte("ppt=shaken")) {
				s.signed.Add(1)
			} else {
				s.unsigned.Add(1)
			}
		}
	}()
	return s
}

func (s *sink) port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

func header(msg []byte, name string) string {
	for _, line := range strings.Split(string(msg), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// traffic plays the SBC: INVITEs round-robin over the hosts that are not
// drained, at trafficHz, until stop is closed or trafficMax were sent.
type traffic struct {
	sent    atomic.Int64
	perHost []atomic.Int64
	stop    chan struct{}
	done    chan struct{}
}

func startTraffic(t *testing.T, l *lab, tag string) *traffic {
	tr := &traffic{perHost: make([]atomic.Int64, len(l.hosts)), stop: make(chan struct{}), done: make(chan struct{})}
	conns := make([]*net.UDPConn, len(l.hosts))
	for i, h := range l.hosts {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(h.addr), Port: sipPort})
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	go func() {
		defer close(tr.done)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		tick := time.NewTicker(time.Second / trafficHz)
		defer tick.Stop()
		next := 0
		for n := 0; n < trafficMax; n++ {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
			}
			// Pick the next host that is in service.
			i := -1
			for k := 0; k < len(l.hosts); k++ {
				j := (next + k) % len(l.hosts)
				if _, err := os.Stat(filepath.Join(l.dir, "drain", l.hosts[j].name)); errors.Is(err, os.ErrNotExist) {
					i = j
					break
				}
			}
			next++
			if i < 0 {
				continue
			}
			h := l.hosts[i]
			msg := invite(h, fmt.Sprintf("%s-%d", tag, n))
			if _, err := conns[i].Write(msg); err == nil {
				tr.sent.Add(1)
				tr.perHost[i].Add(1)
			}
		}
	}()
	return tr
}

func (tr *traffic) halt() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	<-tr.done
}

func invite(h *host, id string) []byte {
	return []byte("INVITE sip:+12025550143@" + h.addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + h.peer + ":5099;branch=z9hG4bK-" + id + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:+12025550142@" + h.peer + ";user=phone>;tag=" + id + "\r\n" +
		"To: <tel:+12025550143>\r\n" +
		"Call-ID: " + id + "@ansible-test\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"P-Asserted-Identity: <tel:+12025550142>\r\n" +
		"Contact: <sip:caller@" + h.peer + ":5099>\r\n" +
		"Content-Length: 0\r\n\r\n")
}

// waitSunk waits until the sink has seen want INVITEs (or 5 s pass).
func (s *sink) waitSunk(want int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s.signed.Load()+s.unsigned.Load() >= want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s.signed.Load() + s.unsigned.Load()
}

// sampler records the signed-call counters once a second.
type sampler struct {
	mu    sync.Mutex
	lines []string
	stop  chan struct{}
	done  chan struct{}
}

func startSampler(l *lab, s *sink, tr *traffic) *sampler {
	sm := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(sm.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for n := 0; n < 600; n++ {
			var b strings.Builder
			fmt.Fprintf(&b, "t=%5.1fs", time.Since(start).Seconds())
			for _, h := range l.hosts {
				drained := ""
				if _, err := os.Stat(filepath.Join(l.dir, "drain", h.name)); err == nil {
					drained = "(drained)"
				}
				fmt.Fprintf(&b, "  %s signed=%d%s", h.name, h.signed(), drained)
			}
			fmt.Fprintf(&b, "  sent=%d sink_signed=%d sink_unsigned=%d", tr.sent.Load(), s.signed.Load(), s.unsigned.Load())
			sm.mu.Lock()
			sm.lines = append(sm.lines, b.String())
			sm.mu.Unlock()
			select {
			case <-sm.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return sm
}

func (sm *sampler) halt() []string {
	close(sm.stop)
	<-sm.done
	return sm.lines
}

func fileSum(t *testing.T, h *host, path string) string {
	sum := sha256.Sum256([]byte(h.in(t, "cat", path)))
	return hex.EncodeToString(sum[:8])
}

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
	t.Logf("lab: %d hosts in network namespaces %s.. (198.19.%d.0/24), sink port %d", nHosts, l.hosts[0].ns, l.octet, s.port())

	// 1. First run: bare host -> appliance.
	out, rc, took := l.mustPlaybook("site.yml")
	t.Logf("first run: %v %+v\n%s", took.Round(100*time.Millisecond), rc, profile(out))
	for _, h := range l.hosts {
		if rc[h.name].changed == 0 || rc[h.name].failed != 0 {
			t.Fatalf("%s: first run recap %+v", h.name, rc[h.name])
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
	}
	// Calls are signed through the token (HSM first in the chain).
	tr := startTraffic(t, l, "smoke")
	time.Sleep(500 * time.Millisecond)
	tr.halt()
	if got := s.waitSunk(tr.sent.Load()); got != tr.sent.Load() || s.unsigned.Load() != 0 {
		t.Fatalf("smoke: sent %d, sink got %d (%d unsigned)", tr.sent.Load(), got, s.unsigned.Load())
	}

	// 2. Second run: nothing to change.
	out, rc, took = l.mustPlaybook("site.yml")
	t.Logf("second run: %v %+v\n%s", took.Round(100*time.Millisecond), rc, profile(out))
	for _, h := range l.hosts {
		if rc[h.name].changed != 0 {
			t.Errorf("%s: second run changed=%d, want 0", h.name, rc[h.name].changed)
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
	out, rc, took = l.mustPlaybook("site.yml", "--limit", h1.name, "--tags", "configure", "-e", "@"+policy2)
	t.Logf("policy change run: %v %+v", took.Round(100*time.Millisecond), rc)
	if !strings.Contains(out, "Reload the appliance (pidfile)") || strings.Contains(out, "RUNNING HANDLER [appliance : Restart") {
		t.Errorf("policy change: want the reload handler and no restart handler:\n%s", tail(out, 40))
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
	out, rc, took, err := l.playbook("site.yml", "--limit", h1.name, "--tags", "configure", "-e", "@"+policy2, "-e", "@"+broken)
	t.Logf("broken config run: %v %+v err=%v", took.Round(100*time.Millisecond), rc, err)
	if err == nil || rc[h1.name].failed == 0 {
		t.Errorf("broken config was not refused:\n%s", tail(out, 40))
	}
	if !strings.Contains(out, "failed to validate") {
		t.Errorf("broken config: no validation failure in the output:\n%s", tail(out, 40))
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
	out, rc, took, err = l.playbook("rolling-upgrade.yml", "-e", "appliance_binary_src="+v2,
		"-e", fmt.Sprintf("appliance_upgrade_probe_signing=%v", probe))
	time.Sleep(2 * time.Second)
	tr.halt()
	sunk := s.waitSunk(tr.sent.Load())
	lines := sm.halt()
	t.Logf("rolling upgrade v1->v2: %v %+v err=%v\n%s", took.Round(100*time.Millisecond), rc, err, strings.Join(lines, "\n"))
	t.Logf("rolling upgrade profile:\n%s", profile(out))
	t.Logf("rolling upgrade steps:\n%s", steps(out))
	if err != nil {
		t.Fatalf("rolling upgrade failed:\n%s", tail(out, 60))
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
	out, rc, took, err = l.playbook("rolling-upgrade.yml", "-e", "appliance_binary_src="+v3,
		"-e", fmt.Sprintf("appliance_upgrade_probe_signing=%v", probe))
	time.Sleep(2 * time.Second)
	tr.halt()
	sunk = s.waitSunk(tr.sent.Load())
	lines = sm.halt()
	t.Logf("rolling upgrade to a bad build: %v %+v err=%v\n%s", took.Round(100*time.Millisecond), rc, err, strings.Join(lines, "\n"))
	t.Logf("bad-build steps:\n%s", steps(out))
	if err == nil {
		t.Errorf("rolling upgrade to a broken build succeeded")
	}
	if !strings.Contains(out, "rollout stopped") {
		t.Errorf("no rollback message:\n%s", tail(out, 40))
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
	out, rc, took := l.mustPlaybook("site.yml", "--tags", "monitoring")
	t.Logf("monitoring run: %v %+v", took.Round(100*time.Millisecond), rc)
	if !strings.Contains(out, "Reload Prometheus") {
		t.Errorf("monitoring run: Prometheus was not reloaded:\n%s", steps(out))
	}
	// Only the monitoring tasks ran (and the role's argument check).
	for _, m := range regexp.MustCompile(`(?m)^TASK \[appliance : ([^\]]+)\]`).FindAllStringSubmatch(out, -1) {
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
	out, rc, _ = l.mustPlaybook("site.yml", "--tags", "monitoring")
	for _, h := range l.hosts {
		if rc[h.name].changed != 0 {
			t.Errorf("%s: second monitoring run changed=%d, want 0\n%s", h.name, rc[h.name].changed, steps(out))
		}
	}
	// A rule file promtool refuses is not installed; the running rules stay.
	badRules := filepath.Join(l.dir, "bad", "shakenline-alerts.yml")
	_ = os.MkdirAll(filepath.Dir(badRules), 0o700)
	if err := os.WriteFile(badRules, []byte("groups:\n  - name: shakenline.alerts\n    rules:\n      - alert: Broken\n        expr: rate(x[\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badVars, _ := json.Marshal(map[string]any{"appliance_prometheus_rules_files": []string{badRules}})
	out, _, _, err := l.playbook("site.yml", "--tags", "monitoring", "-e", string(badVars))
	if err == nil || !strings.Contains(out, "failed to validate") {
		t.Errorf("a rule file promtool refuses was not refused:\n%s", tail(out, 30))
	}
	if got := h1.in(t, "sha256sum", promRulesDir+"/shakenline-alerts.yml"); !strings.HasPrefix(got, sha(t, filepath.Join(repo, "prometheus", "shakenline-alerts.yml"))) {
		t.Errorf("the refused rule file replaced the installed one")
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

// signingAPIUp reports whether the host signs through POST /stir/v1/signing.
func signingAPIUp(h *host) bool {
	body := fmt.Sprintf(`{"signingRequest":{"attest":"A","dest":{"tn":["12025550143"]},"iat":%d,"orig":{"tn":"12025550142"},"origid":"8f5a2a1e-6c2b-4c5e-9d2f-1b4d3c2a1f00"}}`, time.Now().Unix())
	req, err := http.NewRequest("POST", fmt.Sprintf("http://%s:%d/stir/v1/signing", h.addr, apiPort), strings.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode == 200 && bytes.Contains(b, []byte("ppt=shaken"))
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
