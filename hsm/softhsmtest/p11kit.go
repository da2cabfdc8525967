package softhsmtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
)

// P11KitClient is where Debian's p11-kit-modules installs the client module
// that forwards every Cryptoki call to a p11-kit server.
const P11KitClient = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"

// P11KitAvailable reports whether p11-kit (the server) and the client
// module are installed (Debian packages p11-kit and p11-kit-modules).
func P11KitAvailable() error {
	if _, err := exec.LookPath("p11-kit"); err != nil {
		return fmt.Errorf("softhsmtest: p11-kit not installed: %w", err)
	}
	if _, err := os.Stat(P11KitClient); err != nil {
		return fmt.Errorf("softhsmtest: p11-kit client module missing (p11-kit-modules): %w", err)
	}
	return nil
}

// Server is a `p11-kit server` process exporting one SoftHSM token over a
// Unix socket: the layout of a network HSM, whose signing runs in another
// process (on another core when pinned) than the caller's.
//
// p11-kit server forks one p11-kit-remote process per connection, and that
// process executes its connection's calls one at a time. A process that
// loads the client module has one connection, so all of its sessions share
// one serial executor: more sessions only pipeline requests into the socket.
type Server struct {
	Address string // the P11_KIT_SERVER_ADDRESS value clients need
	Module  string // the client module (P11KitClient)
	Socket  string
	cmd     *exec.Cmd
	done    chan struct{}
	log     *bytes.Buffer
}

// StartServer starts `p11-kit server` in the foreground for the token
// labelled label, loading SoftHSM with this Env's configuration, listening
// on a socket in the Env's directory. With cpu >= 0 the server (and the
// p11-kit-remote processes it forks) is pinned to that CPU with taskset.
// Stop ends it.
func (e *Env) StartServer(label string, cpu int) (*Server, error) {
	if err := P11KitAvailable(); err != nil {
		return nil, err
	}
	sock := filepath.Join(filepath.Dir(e.Dir), "p11kit-"+label+".sock")
	_ = os.Remove(sock)
	args := []string{"server", "-f", "-q", "--provider", e.Module, "-n", sock, "pkcs11:token=" + escape(label)}
	name := "p11-kit"
	if cpu >= 0 {
		args = append([]string{"-c", strconv.Itoa(cpu), "p11-kit"}, args...)
		name = "taskset"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("softhsmtest: p11-kit server: %w", err)
	}
	s := &Server{Address: "unix:path=" + sock, Module: P11KitClient, Socket: sock, cmd: cmd, done: make(chan struct{}), log: &out}
	go func() { _ = cmd.Wait(); close(s.done) }()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("softhsmtest: p11-kit server exited: %s", bytes.TrimSpace(out.Bytes()))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, errors.New("softhsmtest: p11-kit server: no socket after 5s")
		}
	}
}

// Stop terminates the server and the p11-kit-remote processes it forked
// (one process group), waiting at most 3s before killing them.
func (s *Server) Stop() {
	s.Resume()
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	_ = os.Remove(s.Socket)
}

// Output is what the server and its p11-kit-remote processes printed; read
// it after Stop.
func (s *Server) Output() []byte { return s.log.Bytes() }

// Serve starts a server for tk (see StartServer) for the rest of the test
// and points P11_KIT_SERVER_ADDRESS at it. It skips the test when p11-kit
// is missing, and fails it when CI=true.
func (e *Env) Serve(t testing.TB, tk *Token, cpu int) *Server {
	t.Helper()
	prereq.Need(t, P11KitAvailable())
	s, err := e.StartServer(tk.Label, cpu)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	t.Setenv("P11_KIT_SERVER_ADDRESS", s.Address)
	return s
}

// URIWith is URI with another module: the same token and key reached
// through module (for instance P11KitClient).
func (tk *Token) URIWith(module string) string {
	return "pkcs11:token=" + escape(tk.Label) + ";object=" + escape(tk.KeyLabel) + ";id=" + pctBytes(tk.KeyID) +
		";type=private?module-path=" + escape(module) + "&pin-source=file:" + escape(tk.PINFile)
}

// Pause stops the server and its p11-kit-remote processes (SIGSTOP): calls
// in flight and new ones hang, as with a device that stopped answering.
// Resume continues them.
func (s *Server) Pause() { _ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { _ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGCONT) }
