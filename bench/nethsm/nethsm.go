package nethsm

import (
	"bufio"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
)

//go:embed module/nethsm.c
var source []byte

// The build's inputs: a C compiler, OpenSSL's libcrypto and p11-kit's
// PKCS#11 header (Debian: gcc, libssl-dev, libp11-kit-dev).
const (
	headerDir = "/usr/include/p11-kit-1"
	header    = headerDir + "/p11-kit/pkcs11.h"
)

// Available reports what is missing to build the module, or nil.
func Available() error {
	if _, err := exec.LookPath(cc()); err != nil {
		return fmt.Errorf("nethsm: no C compiler (%s): %w", cc(), err)
	}
	if _, err := os.Stat(header); err != nil {
		return fmt.Errorf("nethsm: p11-kit's PKCS#11 header missing (Debian package libp11-kit-dev): %w", err)
	}
	if _, err := os.Stat("/usr/include/openssl/ec.h"); err != nil {
		return fmt.Errorf("nethsm: OpenSSL headers missing (Debian package libssl-dev): %w", err)
	}
	return nil
}

func cc() string {
	if c := os.Getenv("CC"); c != "" {
		return c
	}
	return "cc"
}

// Build compiles the module into dir and returns the path of the shared
// library, dir/libnethsm.so.
func Build(dir string) (string, error) {
	if err := Available(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("nethsm: %w", err)
	}
	src := filepath.Join(dir, "nethsm.c")
	if err := os.WriteFile(src, source, 0o644); err != nil {
		return "", fmt.Errorf("nethsm: %w", err)
	}
	out := filepath.Join(dir, "libnethsm.so")
	tmp := out + ".tmp" + strconv.Itoa(os.Getpid())
	cmd := exec.Command(cc(), "-O2", "-Wall", "-fPIC", "-shared", "-I"+headerDir, "-o", tmp, src, "-lcrypto", "-lpthread")
	if o, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("nethsm: %s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(o)))
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("nethsm: %w", err)
	}
	return out, nil
}

var cached struct {
	once sync.Once
	path string
	err  error
}

// Cached builds the module once per process into a directory of the
// system's temporary directory named by the source's hash, which other
// processes reuse (the build is atomic).
func Cached() (string, error) {
	cached.once.Do(func() {
		sum := sha256.Sum256(source)
		dir := filepath.Join(os.TempDir(), "shakenline-nethsm-"+hex.EncodeToString(sum[:6]))
		so := filepath.Join(dir, "libnethsm.so")
		if _, err := os.Stat(so); err == nil {
			cached.path = so
			return
		}
		cached.path, cached.err = Build(dir)
	})
	return cached.path, cached.err
}

// Module returns the built module for a test: it skips t (fails it under
// CI=true) when the module cannot be built for a missing prerequisite.
func Module(t testing.TB) string {
	t.Helper()
	prereq.Need(t, Available())
	p, err := Cached()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Config is one emulated device. Zero values take the defaults shown.
type Config struct {
	KeyFile     string        // PEM private key (PKCS#8 or SEC 1), P-256; required
	Token       string        // token label; default "nethsm"
	Object      string        // key label; default "shaken"
	ID          []byte        // CKA_ID; default 01
	PIN         string        // user PIN; default "1234"
	Latency     time.Duration // per C_Sign; default 0
	Jitter      time.Duration // added uniformly in [0, Jitter); default 0
	Capacity    int           // signatures per second for all sessions; 0: unlimited
	MaxSessions int           // default 64
	Pool        int           // precomputed nonces; default 100000
	PoolThreads int           // threads filling the pool; default 1
	Control     string        // control socket path; default none
}

func (c *Config) fill() {
	if c.Token == "" {
		c.Token = "nethsm"
	}
	if c.Object == "" {
		c.Object = "shaken"
	}
	if len(c.ID) == 0 {
		c.ID = []byte{1}
	}
	if c.PIN == "" {
		c.PIN = "1234"
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 64
	}
	if c.Pool <= 0 {
		c.Pool = 100000
	}
	if c.PoolThreads <= 0 {
		c.PoolThreads = 1
	}
}

// Write writes c as the module's configuration file.
func (c Config) Write(path string) error {
	c.fill()
	var b strings.Builder
	fmt.Fprintf(&b, "# emulated network HSM (bench/nethsm)\nkey = %s\ntoken = %s\nobject = %s\nid = %x\npin = %s\n",
		c.KeyFile, c.Token, c.Object, c.ID, c.PIN)
	fmt.Fprintf(&b, "latency_us = %d\njitter_us = %d\ncapacity = %d\nmax_sessions = %d\npool = %d\npool_threads = %d\n",
		c.Latency.Microseconds(), c.Jitter.Microseconds(), c.Capacity, c.MaxSessions, c.Pool, c.PoolThreads)
	if c.Control != "" {
		fmt.Fprintf(&b, "control = %s\n", c.Control)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("nethsm: %w", err)
	}
	return nil
}

// Device is one configured device: its configuration file, a PIN file for
// the appliance's pin-source, and its control socket.
type Device struct {
	Module  string // the module's path
	Conf    string // the configuration file (NETHSM_CONF)
	PINFile string
	Control string
	Config  Config
}

// NewDevice writes cfg into dir (nethsm.conf, the PIN file, and the control
// socket's path when cfg has none) for the module at module.
func NewDevice(dir, module string, cfg Config) (*Device, error) {
	cfg.fill()
	if cfg.Control == "" {
		// sun_path holds 108 bytes: keep the socket's path short.
		f, err := os.CreateTemp("", "nethsm-*.sock")
		if err != nil {
			return nil, fmt.Errorf("nethsm: %w", err)
		}
		cfg.Control = f.Name()
		f.Close()
		os.Remove(cfg.Control)
	}
	d := &Device{Module: module, Conf: filepath.Join(dir, "nethsm.conf"), PINFile: filepath.Join(dir, "nethsm.pin"),
		Control: cfg.Control, Config: cfg}
	if err := cfg.Write(d.Conf); err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.PINFile, []byte(cfg.PIN), 0o600); err != nil {
		return nil, fmt.Errorf("nethsm: %w", err)
	}
	return d, nil
}

// URI is the RFC 7512 URI of the device's private key for package hsm
// (and `appliance serve --pkcs11`).
func (d *Device) URI() string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s;type=private?module-path=%s&pin-source=file:%s",
		d.Config.Token, d.Config.Object, d.Module, d.PINFile)
}

// Env is the environment entry that points the module at the device.
func (d *Device) Env() string { return "NETHSM_CONF=" + d.Conf }

// ErrControl is an error answer of the control socket.
var ErrControl = errors.New("nethsm: control")

// Cmd sends one command line to the device's control socket and returns
// the answer after "ok" (ErrControl on "err ..."). The module must be
// loaded (C_Initialize) by some process.
func (d *Device) Cmd(ctx context.Context, line string) (string, error) {
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", d.Control)
	if err != nil {
		return "", fmt.Errorf("nethsm: control %s: %w", d.Control, err)
	}
	defer c.Close()
	if t, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(t)
	} else {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", fmt.Errorf("nethsm: control: %w", err)
	}
	ans, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("nethsm: control: %w", err)
	}
	ans = strings.TrimSpace(ans)
	switch {
	case ans == "ok":
		return "", nil
	case strings.HasPrefix(ans, "ok "):
		return ans[3:], nil
	}
	return "", fmt.Errorf("%w: %s: %s", ErrControl, line, ans)
}

// Fault names accepted by Device.Fault.
const (
	DeviceError          = "device-error"
	DeviceRemoved        = "device-removed"
	SessionHandleInvalid = "session-handle-invalid"
	TokenNotPresent      = "token-not-present"
)

// Fault makes every call that reaches the device answer the error kind
// (DeviceError, ...) until Clear.
func (d *Device) Fault(ctx context.Context, kind string) error {
	_, err := d.Cmd(ctx, "fault "+kind)
	return err
}

// Hang makes C_Sign block until Clear.
func (d *Device) Hang(ctx context.Context) error { _, err := d.Cmd(ctx, "hang"); return err }

// Slow adds by to every C_Sign until Clear.
func (d *Device) Slow(ctx context.Context, by time.Duration) error {
	_, err := d.Cmd(ctx, "slow "+strconv.FormatInt(by.Microseconds(), 10))
	return err
}

// Stale closes every session at once, hands the freed handle numbers out
// again and points the private key's old object handle at the decoy key.
func (d *Device) Stale(ctx context.Context) error { _, err := d.Cmd(ctx, "stale"); return err }

// Clear turns every fault off; hung calls go on.
func (d *Device) Clear(ctx context.Context) error { _, err := d.Cmd(ctx, "clear"); return err }

// Set changes the latency, jitter and capacity at run time.
func (d *Device) Set(ctx context.Context, latency, jitter time.Duration, capacity int) error {
	_, err := d.Cmd(ctx, fmt.Sprintf("set latency_us=%d jitter_us=%d capacity=%d",
		latency.Microseconds(), jitter.Microseconds(), capacity))
	return err
}

// Stats are the device's counters since it was loaded.
type Stats struct {
	Signs       uint64 `json:"signs"`       // signatures returned
	SignErrors  uint64 `json:"sign_errors"` // C_Sign calls answered with an error
	ComputeNS   uint64 `json:"compute_ns"`  // time spent computing signatures (wall clock, in C_Sign)
	PoolSize    int    `json:"pool_size"`
	PoolFilled  int    `json:"pool_filled"`
	PoolUsed    int    `json:"pool_used"`
	PoolMisses  uint64 `json:"pool_misses"` // signatures whose nonce was computed in C_Sign
	Sessions    int    `json:"sessions"`
	MaxSessions int    `json:"max_sessions"`
	InFlight    int    `json:"in_flight"`
	MaxInFlight int    `json:"max_in_flight"` // the most C_Sign calls at once
	Hung        uint64 `json:"hung"`          // C_Sign calls that met a hang
	Logins      uint64 `json:"logins"`        // successful C_Login calls
	Opens       uint64 `json:"opens"`         // sessions opened
	Closes      uint64 `json:"closes"`        // sessions closed by C_CloseSession
	NotLoggedIn uint64 `json:"not_logged_in"` // C_SignInit refused for want of a login
	Fault       string `json:"fault"`
	Hang        int    `json:"hang"`
	SlowUS      int64  `json:"slow_us"`
	LatencyUS   int64  `json:"latency_us"`
	JitterUS    int64  `json:"jitter_us"`
	Capacity    int    `json:"capacity"`
}

// Stats reads the device's counters.
func (d *Device) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	ans, err := d.Cmd(ctx, "stats")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal([]byte(ans), &s); err != nil {
		return s, fmt.Errorf("nethsm: stats %q: %w", ans, err)
	}
	return s, nil
}

// WaitPool waits until the nonce pool is full (or ctx ends).
func (d *Device) WaitPool(ctx context.Context) error {
	for {
		s, err := d.Stats(ctx)
		if err == nil && s.PoolFilled >= s.PoolSize {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nethsm: pool not filled (%d of %d): %w", s.PoolFilled, s.PoolSize, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
