package compare

import (
	"os"

	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

// hsmServer is the remote setup's "HSM": a `p11-kit server` exporting the
// lab token from its own process on its own core (softhsmtest.Server, the
// one the hsm tests use). p11-kit server forks one p11-kit-remote per
// connection, which runs that connection's calls one at a time: the
// appliance (one connection) sees a serial HSM whatever its session count.
type hsmServer struct {
	srv     *softhsmtest.Server
	logPath string // the server's output is written here when it stops
}

// stop ends the server and the p11-kit-remote processes it forked, and
// keeps its output. A nil s does nothing.
func (s *hsmServer) stop() {
	if s == nil {
		return
	}
	s.srv.Stop()
	_ = os.WriteFile(s.logPath, s.srv.Output(), 0o644)
}
