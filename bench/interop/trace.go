package interop

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/internal/netns"
)

// A tracer timestamps, with the kernel's receive stamps, what crosses the
// core namespace's bridge between carriers: each SIP message (an INVITE
// from an originating proxy to a terminating one, the final response back)
// by Call-ID, and each TCP connection a terminating verifier opens to fetch
// a certificate or a CRL (the SYN to a repository's http port). Beside the
// UAC's send and final times and the UAS's delivery time, that splits each
// call's setup time into the originating proxy's part, the terminating
// one's, and what each waited for (report.go, "Where the time goes").
//
// It reads every frame the core namespace's interfaces receive from a
// carrier (AF_PACKET, cooked, all protocols, IPv4 kept; frames leaving a
// bridge port are skipped, so each crossing is seen once, on its way in).
type tracer struct {
	fd   int
	done chan struct{}

	mu      sync.Mutex
	sip     map[string]*crossing // by Call-ID
	fetches []Fetch
}

// crossing is a call's first INVITE and first final response on the bridge.
type crossing struct {
	invite, final time.Time
}

// Fetch is a TCP connection a carrier opened across the bridge to an http
// repository (x5u or CRL), by its SYN.
type Fetch struct {
	At       time.Time
	From, To netip.AddrPort
}

// CallTrace is one call's timeline (zero times: not seen).
type CallTrace struct {
	Sent      time.Time // the UAC sent the INVITE to its originating proxy
	Crossed   time.Time // the INVITE left the originating carrier
	Delivered time.Time // the UAS (the terminating switch) got it
	Back      time.Time // the final response left the terminating carrier
	Final     time.Time // the UAC got the final response
	// Fetches the terminating carrier started while the INVITE was there
	// (between Crossed and Delivered).
	Fetches []Fetch
}

func startTracer(core *netns.NS) (*tracer, error) {
	t := &tracer{sip: map[string]*crossing{}, done: make(chan struct{})}
	err := core.Do(func() error {
		// ETH_P_ALL: bridged frames reach only the taps of every protocol.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			unix.Close(fd)
			return err
		}
		// Wake the reader at least every 100 ms, so that close is seen.
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		t.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("interop: trace socket: %w", err)
	}
	go t.read()
	return t, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (t *tracer) close() {
	select {
	case <-t.done:
	default:
		close(t.done)
	}
}

func (t *tracer) read() {
	defer unix.Close(t.fd)
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for {
		select {
		case <-t.done:
			return
		default:
		}
		n, oobn, _, from, err := unix.Recvmsg(t.fd, buf, oob, 0)
		if err != nil {
			continue // the read timeout, or a signal
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING || ll.Protocol != htons(unix.ETH_P_IP) {
			continue
		}
		at := time.Now()
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if cm.Header.Level == unix.SOL_SOCKET && cm.Header.Type == unix.SCM_TIMESTAMPNS && len(cm.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
					ts := (*unix.Timespec)(unsafe.Pointer(&cm.Data[0]))
					at = time.Unix(ts.Sec, ts.Nsec)
				}
			}
		}
		t.packet(buf[:n], at)
	}
}

// packet records one IPv4 packet seen at at.
func (t *tracer) packet(p []byte, at time.Time) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+20 {
		return
	}
	src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
	l4 := p[ihl:]
	sport, dport := binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
	switch p[9] {
	case unix.IPPROTO_TCP:
		if flags := l4[13]; flags&0x02 != 0 && flags&0x10 == 0 && dport == portHTTP { // SYN, not SYN-ACK
			t.mu.Lock()
			t.fetches = append(t.fetches, Fetch{At: at, From: netip.AddrPortFrom(src, sport), To: netip.AddrPortFrom(dst, dport)})
			t.mu.Unlock()
		}
	case unix.IPPROTO_UDP:
		msg := l4[8:]
		cid := callID(msg)
		if cid == "" {
			return
		}
		invite := bytes.HasPrefix(msg, []byte("INVITE "))
		final := bytes.HasPrefix(msg, []byte("SIP/2.0 ")) && len(msg) > 9 && msg[8] >= '2'
		if !invite && !final {
			return
		}
		t.mu.Lock()
		c := t.sip[cid]
		if c == nil {
			c = &crossing{}
			t.sip[cid] = c
		}
		if invite && c.invite.IsZero() {
			c.invite = at
		}
		if final && c.final.IsZero() {
			c.final = at
		}
		t.mu.Unlock()
	}
}

// callID returns the Call-ID header's value of a SIP message, or "".
func callID(msg []byte) string {
	for _, name := range [][]byte{[]byte("\r\nCall-ID:"), []byte("\r\ni:")} {
		if i := bytes.Index(msg, name); i >= 0 {
			v := msg[i+len(name):]
			if e := bytes.Index(v, []byte("\r\n")); e >= 0 {
				return string(bytes.TrimSpace(v[:e]))
			}
		}
	}
	return ""
}

// fill completes tr, a call's UAC and UAS times, with its crossings and
// the fetches the terminating host (term) started while the INVITE was
// there.
func (t *tracer) fill(tr *CallTrace, cid string, term netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.sip[cid]; c != nil {
		tr.Crossed, tr.Back = c.invite, c.final
	}
	if tr.Crossed.IsZero() || tr.Delivered.IsZero() {
		return
	}
	for _, f := range t.fetches {
		if f.From.Addr() == term && !f.At.Before(tr.Crossed) && !f.At.After(tr.Delivered) {
			tr.Fetches = append(tr.Fetches, f)
		}
	}
	sort.Slice(tr.Fetches, func(i, j int) bool { return tr.Fetches[i].At.Before(tr.Fetches[j].At) })
}
