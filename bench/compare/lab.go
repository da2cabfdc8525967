package compare

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shakenline/shakenline/bench/kamailio"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
	"github.com/shakenline/shakenline/labpki"
)

// lab is the key material shared by all setups.
type lab struct {
	dir, key, ecKey, cert, pkcs11URI, softhsmConf string
	pkcs11RemoteURI                               string // the same key through p11-kit-client.so
	hsm                                           *softhsmtest.Env
	// SIP over TLS: a lab CA and certificates for 127.0.0.1 (PEM files:
	// certificate, key) for the appliance, Kamailio and the sink.
	tlsCA                 string
	tlsPool               *x509.CertPool
	applianceTLS, sinkTLS [2]string
}

// readECKey reads the lab's PKCS#8 P-256 key.
func readECKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("compare: %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("compare: %s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("compare: %s: not an ECDSA key", path)
	}
	return ec, nil
}

const x5u = "https://cert.example.net/sp.pem"

func sh(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("compare: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func makeLab(bin, dir string) (*lab, error) {
	l := &lab{dir: dir}
	pki := filepath.Join(dir, "pki")
	if _, err := sh(bin, "lab-pki", "--out", pki); err != nil {
		return nil, err
	}
	l.key, l.cert = filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem")
	// secsipid wants a SEC 1 key; it is the same key.
	l.ecKey = filepath.Join(pki, "sp-sec1.key")
	if _, err := sh("openssl", "ec", "-in", l.key, "-out", l.ecKey); err != nil {
		return nil, err
	}
	// The same key in a SoftHSM token, made as the hsm tests make theirs.
	hsmEnv, err := softhsmtest.NewEnv(dir)
	if err != nil {
		return nil, err
	}
	key, err := readECKey(l.key)
	if err != nil {
		return nil, err
	}
	tk, err := hsmEnv.CreateToken("shakebench", key)
	if err != nil {
		return nil, err
	}
	l.hsm, l.softhsmConf = hsmEnv, hsmEnv.Conf
	l.pkcs11URI = tk.URI()
	l.pkcs11RemoteURI = tk.URIWith(softhsmtest.P11KitClient)
	if err := l.makeTLS(filepath.Join(dir, "tls")); err != nil {
		return nil, err
	}
	return l, nil
}

// makeTLS writes the SIP TLS lab material: a CA and a certificate for
// 127.0.0.1 each for the appliance and the sink (never the STI ones).
func (l *lab) makeTLS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	ca, err := labpki.NewCA("Shakebench SIP TLS CA", nil)
	if err != nil {
		return err
	}
	l.tlsCA = filepath.Join(dir, "ca.pem")
	if err := labpki.WriteCerts(l.tlsCA, ca.Cert); err != nil {
		return err
	}
	l.tlsPool = x509.NewCertPool()
	l.tlsPool.AddCert(ca.Cert)
	for _, x := range []struct {
		name string
		to   *[2]string
	}{{"appliance", &l.applianceTLS}, {"sink", &l.sinkTLS}} {
		cert, key, err := ca.IssueTLS(x.name, []net.IP{net.IPv4(127, 0, 0, 1)}, nil, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		if err != nil {
			return err
		}
		*x.to = [2]string{filepath.Join(dir, x.name+".pem"), filepath.Join(dir, x.name+".key")}
		if err := labpki.WriteCerts(x.to[0], cert); err != nil {
			return err
		}
		if err := labpki.WriteKey(x.to[1], key); err != nil {
			return err
		}
	}
	return nil
}

// tlsServer is a TLS server configuration with the certificate in files.
func (l *lab) tlsServer(files [2]string) *tls.Config {
	c, err := tls.LoadX509KeyPair(files[0], files[1])
	if err != nil {
		return nil
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
}

// tlsClient trusts the lab CA.
func (l *lab) tlsClient() *tls.Config {
	return &tls.Config{RootCAs: l.tlsPool, MinVersion: tls.VersionTLS12}
}

func freePort(network string) (uint16, error) {
	switch network {
	case "udp":
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, fmt.Errorf("compare: %w", err)
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("compare: %w", err)
		}
		defer l.Close()
		return uint16(l.Addr().(*net.TCPAddr).Port), nil
	}
}

// sut is a running system under test.
type sut struct {
	pgid    int
	api     string // appliance API address
	stop    func()
	logPath string
}

func startAppliance(ctx context.Context, bin string, p Params, l *lab, s Setup, next netip.AddrPort, logPath string, dev *device) (*sut, netip.AddrPort, error) {
	sipPort, err := freePort("udp")
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	apiPort, err := freePort("tcp")
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sipPort)
	api := fmt.Sprintf("127.0.0.1:%d", apiPort)
	// What the generator sends to: the SIP address (UDP or TCP), or the
	// TLS listener.
	target := listen
	nextHop := next.String()
	var streamArgs []string
	switch s.Transport {
	case "tcp":
		nextHop = "sip:" + next.String() + ";transport=tcp"
	case "tls":
		tlsPort, err := freePort("tcp")
		if err != nil {
			return nil, listen, err
		}
		target = netip.AddrPortFrom(listen.Addr(), tlsPort)
		nextHop = "sip:" + next.String() + ";transport=tls"
		streamArgs = []string{"--sip-tls", target.String(), "--tls-cert", l.applianceTLS[0], "--tls-key", l.applianceTLS[1], "--tls-ca", l.tlsCA}
	}
	cpu := p.SUTCPU
	var hsmSrv *hsmServer
	if s.Key == "hsm-remote" {
		// The HSM gets the SUT core; the appliance shares the generator's.
		srv, err := l.hsm.StartServer("shakebench", p.SUTCPU)
		if err != nil {
			return nil, listen, fmt.Errorf("compare: %w (make deps installs p11-kit p11-kit-modules)", err)
		}
		hsmSrv = &hsmServer{srv: srv, logPath: logPath + ".p11kit"}
		cpu = p.GenCPU
	}
	args := []string{"-c", strconv.Itoa(cpu), bin, "serve", "--sip", listen.String(), "--next-hop", nextHop,
		"--cert", l.cert, "--x5u", x5u, "--attest", "A", "--api", api}
	args = append(args, streamArgs...)
	switch s.Key {
	case "hsm":
		args = append(args, "--pkcs11", l.pkcs11URI)
	case "hsm-remote":
		args = append(args, "--pkcs11", l.pkcs11RemoteURI)
	case "nethsm":
		args = append(args, "--config", dev.conf)
	default:
		args = append(args, "--key", l.key)
	}
	if s.YAML != "" {
		conf := filepath.Join(l.dir, s.Name+".yaml")
		if err := os.WriteFile(conf, []byte(s.YAML), 0o600); err != nil {
			return nil, listen, fmt.Errorf("compare: %w", err)
		}
		args = append(args, "--config", conf)
	}
	if s.AllCPUs {
		args[1] = "0-" + strconv.Itoa(machineCPUs()-1)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, listen, fmt.Errorf("compare: %w", err)
	}
	cmd := exec.Command("taskset", args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+l.softhsmConf)
	if hsmSrv != nil {
		cmd.Env = append(cmd.Env, "P11_KIT_SERVER_ADDRESS="+hsmSrv.srv.Address)
	}
	if dev != nil {
		cmd.Env = append(cmd.Env, dev.dev.Env())
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		hsmSrv.stop()
		return nil, listen, fmt.Errorf("compare: appliance: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	u := &sut{pgid: cmd.Process.Pid, api: api, logPath: logPath}
	u.stop = func() {
		_ = syscall.Kill(-u.pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-u.pgid, syscall.SIGKILL)
			<-done
		}
		hsmSrv.stop()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			hsmSrv.stop()
			b, _ := os.ReadFile(logPath)
			return nil, listen, fmt.Errorf("compare: appliance exited: %s", tail(b, 2000))
		default:
		}
		if udpListening(listen) && httpUp("http://"+api+"/metrics") && tcpUp(target) {
			time.Sleep(200 * time.Millisecond)
			return u, target, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			u.stop()
			b, _ := os.ReadFile(logPath)
			return nil, listen, fmt.Errorf("compare: appliance not ready: %s", tail(b, 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startKamailio(ctx context.Context, p Params, l *lab, s Setup, next netip.AddrPort, dir, logPath string) (*sut, netip.AddrPort, error) {
	port, err := freePort("udp")
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	listen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	kbin, err := exec.LookPath("kamailio")
	if err != nil {
		kbin = "/usr/sbin/kamailio"
	}
	// A wrapper pins Kamailio (and so every worker it forks) to the SUT
	// core and records its pid, which is also its process group.
	pidFile := filepath.Join(dir, "kamailio-"+s.Name+".pid")
	wrapper := filepath.Join(dir, "kamailio-pinned.sh")
	script := fmt.Sprintf("#!/bin/sh\necho $$ > %q\nexec taskset -c %d %q \"$@\"\n", pidFile, p.SUTCPU, kbin)
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		return nil, listen, fmt.Errorf("compare: %w", err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, listen, fmt.Errorf("compare: %w", err)
	}
	o := kamailio.Options{Listen: listen, NextHop: next, Workers: p.KamailioWorkers, Binary: wrapper, Log: logf,
		Transport: s.Transport, NextHopTransport: s.Transport}
	if s.Signs {
		o.Sign, o.KeyPath, o.X5U, o.Attest = true, l.ecKey, x5u, "A"
	}
	proc, err := kamailio.Start(ctx, o)
	if err != nil {
		logf.Close()
		return nil, listen, err
	}
	b, err := os.ReadFile(pidFile)
	pid, err2 := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || err2 != nil {
		_ = proc.Stop()
		logf.Close()
		return nil, listen, fmt.Errorf("compare: kamailio pid file: %w", errors.Join(err, err2))
	}
	return &sut{pgid: pid, logPath: logPath, stop: func() { _ = proc.Stop(); logf.Close() }}, listen, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

func httpUp(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return true
}

// tcpUp reports whether something accepts TCP connections on ap.
func tcpUp(ap netip.AddrPort) bool {
	c, err := net.DialTimeout("tcp", ap.String(), time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// udpListening reports whether an IPv4 UDP socket is bound to ap.
func udpListening(ap netip.AddrPort) bool {
	b := ap.Addr().As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], ap.Port())
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 1 && fs[1] == want {
			return true
		}
	}
	return false
}

// scrapeMetrics returns the shakenline_* samples of /metrics.
func scrapeMetrics(api string) map[string]float64 {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + api + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "shakenline_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil && v != 0 {
			m[line[:i]] = v
		}
	}
	return m
}

// machineCPUs counts the machine's processors in /proc/cpuinfo (this
// process runs under taskset: runtime.NumCPU sees only its own).
func machineCPUs() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 1
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "processor" {
			n++
		}
	}
	return max(n, 1)
}
