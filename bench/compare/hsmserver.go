package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// hsmServer is a `p11-kit server` exporting the lab token: the "HSM" of
// the remote setup, in its own process on its own core. p11-kit server
// forks one p11-kit-remote per connection, which runs that connection's
// calls one at a time: the appliance (one connection) sees a serial HSM
// whatever its session count.
type hsmServer struct {
	address string // P11_KIT_SERVER_ADDRESS for the clients
	pgid    int
	done    chan struct{}
}

// startHSMServer starts the server pinned to cpu, logging to logPath.
func startHSMServer(l *lab, cpu int, logPath string) (*hsmServer, error) {
	if _, err := exec.LookPath("p11-kit"); err != nil {
		return nil, fmt.Errorf("compare: p11-kit missing (make deps installs p11-kit p11-kit-modules): %w", err)
	}
	if _, err := os.Stat(p11KitClient); err != nil {
		return nil, fmt.Errorf("compare: p11-kit client module missing (p11-kit-modules): %w", err)
	}
	sock := filepath.Join(l.dir, "p11kit.sock")
	_ = os.Remove(sock)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	cmd := exec.Command("taskset", "-c", strconv.Itoa(cpu), "p11-kit", "server", "-f", "-q",
		"--provider", "/usr/lib/softhsm/libsofthsm2.so", "-n", sock, "pkcs11:token=shakebench")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+l.softhsmConf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("compare: p11-kit server: %w", err)
	}
	s := &hsmServer{address: "unix:path=" + sock, pgid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(s.done) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("compare: p11-kit server exited: %s", tail(b, 1000))
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("compare: p11-kit server: no socket %s after 5s", sock)
		}
	}
}

// stop ends the server and the p11-kit-remote processes it forked.
func (s *hsmServer) stop() {
	if s == nil {
		return
	}
	_ = syscall.Kill(-s.pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-s.pgid, syscall.SIGKILL)
		<-s.done
	}
}
