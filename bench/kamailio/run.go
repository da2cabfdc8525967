package kamailio

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed kamailio.cfg
var config []byte

// Config returns the kamailio.cfg this package runs.
func Config() []byte { return bytes.Clone(config) }

// Sentinel errors.
var (
	ErrNotInstalled = errors.New("kamailio: kamailio or its secsipid module is not installed")
	ErrOptions      = errors.New("kamailio: bad options")
	ErrStart        = errors.New("kamailio: did not start")
)

// ModuleDir is where Debian installs the Kamailio modules.
const ModuleDir = "/usr/lib/x86_64-linux-gnu/kamailio/modules"

// Options configures one Kamailio instance.
type Options struct {
	// Listen is the address Kamailio binds for UDP, and for Transport on
	// the same port (required).
	Listen netip.AddrPort
	// Transport is what Kamailio listens for besides UDP: "" (UDP only),
	// "tcp", or "tls" (with TLSCert, TLSKey; TCP too).
	Transport string
	// NextHop receives every forwarded request (required), over
	// NextHopTransport: "" or "udp", "tcp", "tls".
	NextHop          netip.AddrPort
	NextHopTransport string
	// TLS: Kamailio's certificate and key (PEM), the anchors it verifies
	// peers against (PEM; it always verifies the server it connects to),
	// and whether a TLS client must present a certificate.
	TLSCert, TLSKey, TLSCA string
	TLSRequireClient       bool
	// Sign adds an Identity header to initial INVITEs, signed with the
	// PEM P-256 private key at KeyPath; X5U goes into info= and x5u
	// (default https://cert.example.net/sp.pem); Attest is A, B or C
	// (default A).
	Sign    bool
	KeyPath string
	X5U     string
	Attest  string
	// VerifyKeyPath, when set, checks the Identity header of INVITEs with
	// this PEM public key (or certificate) and answers 438 on failure.
	VerifyKeyPath string
	// VerifyCAFile, when set (instead of VerifyKeyPath), checks the
	// Identity header with the key of the certificate at its x5u, fetched
	// by libsecsipid (cached per URL), which must chain to the anchors in
	// this PEM file and be valid now; failures get 438.
	VerifyCAFile string
	// Workers is the number of UDP worker processes (-n, default 2).
	Workers int
	// Binary is the kamailio executable (default: "kamailio" from PATH,
	// else /usr/sbin/kamailio).
	Binary string
	// Log, when set, receives Kamailio's stderr.
	Log io.Writer
	// StartTimeout bounds the wait for the listening socket (default 10s).
	StartTimeout time.Duration
}

// Process is a running Kamailio.
type Process struct {
	cmd  *exec.Cmd
	dir  string
	addr netip.AddrPort
	tail *tailBuffer
	done chan struct{}
	err  error
	once sync.Once
}

// Available reports whether kamailio and the secsipid module are installed.
func Available() error {
	if _, err := binary(""); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(ModuleDir, "secsipid.so")); err != nil {
		return fmt.Errorf("%w: %w", ErrNotInstalled, err)
	}
	return nil
}

func binary(b string) (string, error) {
	if b != "" {
		return b, nil
	}
	if p, err := exec.LookPath("kamailio"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/kamailio"); err == nil {
		return "/usr/sbin/kamailio", nil
	}
	return "", ErrNotInstalled
}

// Args returns the kamailio command-line arguments for o and a config path.
func (o Options) Args(cfgPath, runDir string) ([]string, error) {
	if !o.Listen.IsValid() || !o.NextHop.IsValid() {
		return nil, fmt.Errorf("%w: Listen and NextHop are required", ErrOptions)
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.X5U == "" {
		o.X5U = "https://cert.example.net/sp.pem"
	}
	if o.Attest == "" {
		o.Attest = "A"
	}
	if o.Attest != "A" && o.Attest != "B" && o.Attest != "C" {
		return nil, fmt.Errorf("%w: attest %q", ErrOptions, o.Attest)
	}
	for _, s := range []string{o.KeyPath, o.X5U, o.VerifyKeyPath, o.VerifyCAFile} {
		if strings.ContainsAny(s, "\"\n\r") {
			return nil, fmt.Errorf("%w: quote or newline in %q", ErrOptions, s)
		}
	}
	nexthop := "sip:" + hostPort(o.NextHop)
	switch o.NextHopTransport {
	case "", "udp":
	case "tcp", "tls":
		nexthop += ";transport=" + o.NextHopTransport
	default:
		return nil, fmt.Errorf("%w: next hop transport %q", ErrOptions, o.NextHopTransport)
	}
	args := []string{
		"-DD", "-E", "-f", cfgPath,
		"-l", "udp:" + o.Listen.String(),
		"-n", strconv.Itoa(o.Workers),
		"-Y", runDir, "-w", runDir,
		"-m", "128", "-M", "16",
		"-A", `NEXTHOP="` + nexthop + `"`,
	}
	tls := o.Transport == "tls" || o.NextHopTransport == "tls"
	switch o.Transport {
	case "":
	case "tcp", "tls":
		args = append(args, "-l", o.Transport+":"+o.Listen.String())
	default:
		return nil, fmt.Errorf("%w: transport %q", ErrOptions, o.Transport)
	}
	if o.Transport != "" || o.NextHopTransport == "tcp" || tls {
		args = append(args, "-N", strconv.Itoa(o.Workers), "-A", "WITH_TCP")
	}
	if tls {
		for _, f := range []string{o.TLSCert, o.TLSKey, o.TLSCA} {
			if f == "" || strings.ContainsAny(f, "\"\n\r") {
				return nil, fmt.Errorf("%w: TLS needs TLSCert, TLSKey and TLSCA", ErrOptions)
			}
		}
		require := "0"
		if o.TLSRequireClient {
			require = "1"
		}
		args = append(args, "-A", "WITH_TLS", "-A", `TLSCERT="`+o.TLSCert+`"`, "-A", `TLSKEY="`+o.TLSKey+`"`,
			"-A", `TLSCA="`+o.TLSCA+`"`, "-A", "TLSREQUIRE="+require)
	}
	if o.Sign {
		if o.KeyPath == "" {
			return nil, fmt.Errorf("%w: Sign needs KeyPath", ErrOptions)
		}
		args = append(args, "-A", "WITH_SIGN",
			"-A", `KEYPATH="`+o.KeyPath+`"`,
			"-A", `X5U="`+o.X5U+`"`,
			"-A", `ATTEST="`+o.Attest+`"`)
	}
	switch {
	case o.VerifyKeyPath != "" && o.VerifyCAFile != "":
		return nil, fmt.Errorf("%w: VerifyKeyPath or VerifyCAFile, not both", ErrOptions)
	case o.VerifyKeyPath != "":
		args = append(args, "-A", "WITH_VERIFY", "-A", `PUBKEYPATH="`+o.VerifyKeyPath+`"`)
	case o.VerifyCAFile != "":
		args = append(args, "-A", "WITH_VERIFY_X5U", "-A", `CAFILEOPT="CertCAFile=`+o.VerifyCAFile+`"`,
			"-A", `CACHEDIR="`+filepath.Join(runDir, "x5u-cache")+`"`)
	}
	return args, nil
}

func hostPort(ap netip.AddrPort) string {
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		return "[" + ap.Addr().String() + "]:" + strconv.Itoa(int(ap.Port()))
	}
	return ap.Addr().Unmap().String() + ":" + strconv.Itoa(int(ap.Port()))
}

// Start writes the config into a temporary directory, starts
// `kamailio -DD -E -f cfg` in the foreground (its own process group) and
// returns once it listens on o.Listen. Cancelling ctx stops it.
func Start(ctx context.Context, o Options) (*Process, error) {
	bin, err := binary(o.Binary)
	if err != nil {
		return nil, err
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	dir, err := os.MkdirTemp("", "shakebench-kamailio-")
	if err != nil {
		return nil, fmt.Errorf("kamailio: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "x5u-cache"), 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("kamailio: %w", err)
	}
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfgPath, config, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("kamailio: %w", err)
	}
	args, err := o.Args(cfgPath, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p := &Process{dir: dir, addr: o.Listen, tail: &tailBuffer{max: 8192}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var logw io.Writer = p.tail
	if o.Log != nil {
		logw = io.MultiWriter(p.tail, o.Log)
	}
	p.cmd.Stderr = logw
	p.cmd.Stdout = logw
	if err := p.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Stop()
		case <-p.done:
		}
	}()
	deadline := time.Now().Add(o.StartTimeout)
	for {
		if listening(o.Listen) {
			// The main process binds before forking the workers; give
			// them a moment so the first packets are not queued behind
			// the fork.
			time.Sleep(200 * time.Millisecond)
			select {
			case <-p.done:
			default:
				return p, nil
			}
		}
		select {
		case <-p.done:
			_ = p.Stop()
			return nil, fmt.Errorf("%w: exited (%v): %s", ErrStart, p.err, p.tail.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Stop()
			return nil, fmt.Errorf("%w: not listening on %s after %v: %s", ErrStart, o.Listen, o.StartTimeout, p.tail.String())
		}
	}
}

// Addr is the address Kamailio listens on.
func (p *Process) Addr() netip.AddrPort { return p.addr }

// Log returns the last few KiB of Kamailio's output.
func (p *Process) Log() string { return p.tail.String() }

// Stop terminates Kamailio and its workers (SIGTERM to the process group,
// SIGKILL after 5 s) and removes the temporary directory.
func (p *Process) Stop() error {
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		// Workers left behind by a killed main process.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = os.RemoveAll(p.dir)
	})
	return nil
}

// listening reports whether a UDP socket is bound to ap, from
// /proc/net/udp or /proc/net/udp6.
func listening(ap netip.AddrPort) bool {
	file, want := "/proc/net/udp", ""
	a := ap.Addr().Unmap()
	if a.Is4() {
		b := a.As4()
		want = fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], ap.Port())
	} else {
		file = "/proc/net/udp6"
		b := a.As16()
		var sb strings.Builder
		for i := 0; i < 16; i += 4 {
			fmt.Fprintf(&sb, "%02X%02X%02X%02X", b[i+3], b[i+2], b[i+1], b[i])
		}
		want = fmt.Sprintf("%s:%04X", sb.String(), ap.Port())
	}
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && fields[1] == want {
			return true
		}
	}
	return false
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
