package fastpath

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// listenerBuffers returns SO_RCVBUF and SO_SNDBUF of every UDP socket of
// this process bound to port (each loop's SO_REUSEPORT listener, and any
// other UDP socket the server binds there).
func listenerBuffers(t *testing.T, port uint16) (rcv, snd []int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_DGRAM {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		if in, ok := sa.(*unix.SockaddrInet4); !ok || in.Port != int(port) {
			continue
		}
		r, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		s, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
		if err1 == nil && err2 == nil {
			rcv, snd = append(rcv, r), append(snd, s)
		}
	}
	return rcv, snd
}

// sip_receive_buffer (Config.RecvBuffer) is the receive buffer of every
// loop's socket, 4 MiB by default, set apart from the send buffer.
// The kernel reports twice the value set (socket(7)), capped by
// net.core.rmem_max / wmem_max.
func TestReceiveBuffer(t *testing.T) {
	capped := func(v int, sysctl string) int {
		b, err := os.ReadFile("/proc/sys/net/core/" + sysctl)
		if err != nil {
			t.Skip(err)
		}
		m, _ := strconv.Atoi(string(b[:len(b)-1]))
		return 2 * min(v, m)
	}
	for _, tc := range []struct {
		name string
		set  int
		want int
	}{{"default", 0, DefaultRecvBuffer}, {"256 KiB", 256 << 10, 256 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			te := start(t, Proxy, func(c *Config, _ *testEnv) { c.RecvBuffer = tc.set })
			rcv, snd := listenerBuffers(t, te.addr.Port())
			if len(rcv) < 2 {
				t.Fatalf("%d UDP sockets on port %d, want at least one per loop (2)", len(rcv), te.addr.Port())
			}
			for i := range rcv {
				if want := capped(tc.want, "rmem_max"); rcv[i] != want {
					t.Errorf("SO_RCVBUF %d, want %d", rcv[i], want)
				}
				if want := capped(4<<20, "wmem_max"); snd[i] != want {
					t.Errorf("SO_SNDBUF %d, want %d", snd[i], want)
				}
			}
		})
	}
}
