package ansible

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/netns"
)

// host is one test host: a network namespace with its own sshd in a
// private mount namespace.
type host struct {
	name     string // inventory name
	ns       *netns.NS
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
	prefix  string // of the namespaces' names (netns.Prefix)
	octet   int
	hosts   []*host
	invDir  string
	ansible string // deploy/ansible
}

// nsTag starts the test hosts' namespace names: slans<pid>-<n>-<i>.
const nsTag = "slans"

// sweep removes, once per process, the test hosts a killed run left.
var sweep sync.Once

func newLab(t *testing.T, n int) *lab {
	t.Helper()
	sweep.Do(func() {
		if gone, err := netns.RemoveLeftovers(nsTag); len(gone) > 0 || err != nil {
			t.Logf("removed the test hosts of killed runs: %v (%v)", gone, err)
		}
	})
	dir := t.TempDir()
	l := &lab{t: t, dir: dir, prefix: netns.Prefix(nsTag), octet: 1 + os.Getpid()%250, ansible: filepath.Join(repoRoot(t), "deploy", "ansible")}
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
	h := &host{
		name:  fmt.Sprintf("sl%d", i+1),
		addr:  fmt.Sprintf("198.19.%d.%d", l.octet, 4*i+2),
		peer:  fmt.Sprintf("198.19.%d.%d", l.octet, 4*i+1),
		nsDir: filepath.Join(l.dir, fmt.Sprintf("host%d", i+1)),
	}
	// Its removal (t.Cleanup) kills what runs inside: sshd, the appliance.
	h.ns = netns.New(t, fmt.Sprintf("%s-%d", l.prefix, i))
	// The controller's end of the host's link, in this process's namespace.
	veth := fmt.Sprintf("sla%d%c", os.Getpid(), 'a'+i)
	self := &netns.NS{}
	must(t, netns.Veth(netns.End{Name: veth}, netns.End{NS: h.ns, Name: "eth0"}))
	t.Cleanup(func() { _ = self.IP("link", "del", veth) })
	must(t, self.AddAddr(veth, netip.MustParsePrefix(h.peer+"/30")))
	must(t, h.ns.AddAddr("eth0", netip.MustParsePrefix(h.addr+"/30")))
	must(t, h.ns.IP("route", "add", "default", "via", h.peer))
	// Something for the NIC tuning to do: GRO on, as on a physical NIC.
	must(t, h.ns.SetGRO("eth0", true))

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
	// live in nsDir, a fresh /run, and root's home as a bare Debian has it.
	var sh strings.Builder
	sh.WriteString("set -e\n")
	for _, d := range []string{"etc", "var", "usr/local", "opt"} {
		up := filepath.Join(h.nsDir, "upper", d)
		wk := filepath.Join(h.nsDir, "work", d)
		fmt.Fprintf(&sh, "mkdir -p %s %s\nmount -t overlay overlay -o lowerdir=/%s,upperdir=%s,workdir=%s /%s\n", up, wk, d, up, wk, d)
	}
	fmt.Fprintf(&sh, "mount --bind %s /root\n", bareHome(t, h.nsDir))
	sh.WriteString("mount -t tmpfs -o mode=0755 tmpfs /run\nmkdir -p /run/sshd\nchmod 0755 /run/sshd\n")
	fmt.Fprintf(&sh, "exec /usr/sbin/sshd -D -e -f %s\n", cfg)
	h.sshdLog = filepath.Join(h.nsDir, "sshd.log")
	logf, err := os.Create(h.sshdLog)
	if err != nil {
		t.Fatal(err)
	}
	h.sshd = h.ns.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", sh.String())
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

// bareHome makes root's home for a test host under dir: the .bashrc and
// .profile of a fresh Debian (base-files). Not this machine's /root: bash
// runs ~/.bashrc for every command sshd starts, so whatever a developer's
// shell sets up there (a pyenv init takes seconds on a loaded machine)
// would run for each of the hundreds of SSH commands a playbook makes, and
// the hosts would not be the bare hosts the role is written for.
func bareHome(t *testing.T, dir string) string {
	t.Helper()
	home := filepath.Join(dir, "root")
	must(t, os.MkdirAll(home, 0o700))
	for src, dst := range map[string]string{"/usr/share/base-files/dot.bashrc": ".bashrc", "/usr/share/base-files/dot.profile": ".profile"} {
		b, err := os.ReadFile(src)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		must(t, os.WriteFile(filepath.Join(home, dst), b, 0o644))
	}
	return home
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

func fileSum(t *testing.T, h *host, path string) string {
	sum := sha256.Sum256([]byte(h.in(t, "cat", path)))
	return hex.EncodeToString(sum[:8])
}
