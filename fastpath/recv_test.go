package fastpath

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
)

// A burst read with recvmmsg comes out as separate, correct datagrams:
// each INVITE is signed for its own calling number and keeps its own
// Call-ID (per-slot output buffers), responses are routed back, and every
// source address is the real one (received/rport on the client's Via).
func TestBurstThroughRecvmmsg(t *testing.T) {
	key := newKey(t)
	chain := softChainKey(t, key)
	waitWarm(t, chain)
	l, next := testLoop(t, chain)
	bs := newBurster(t, l)
	client := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), bs.port(t))
	const n = rxBatch + 8 // more than one recvmmsg
	var burst [][]byte
	for i := range n {
		if i%4 == 3 {
			// A response to an earlier INVITE, for the next hop to read.
			burst = append(burst, []byte("SIP/2.0 200 OK\r\n"+string(l.s.viaPrefix[UDP])+"z9hG4bKsl0123456789abcdef\r\n"+
				"Via: SIP/2.0/UDP "+next.LocalAddr().String()+";branch=z9hG4bK-r"+fmt.Sprint(i)+"\r\n"+
				"From: <sip:+12155550100@198.18.1.2>;tag=a\r\nTo: <sip:+12155550123@198.18.2.2>;tag=s\r\n"+
				fmt.Sprintf("Call-ID: resp%d\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", i)))
			continue
		}
		inv := invite(netip.MustParseAddrPort("198.18.1.2:5060"), fmt.Sprintf("call%d", i), "")
		inv = bytes.ReplaceAll(inv, []byte("+12155550100"), []byte(fmt.Sprintf("+121555501%02d", i)))
		inv = bytes.Replace(inv, []byte("+1-215-555-0100"), []byte(fmt.Sprintf("+1-215-555-01%02d", i)), 1)
		burst = append(burst, inv)
	}
	before := mRecvDatagrams.Get()
	bs.send(burst...)
	l.drainSocket(nil, netip.AddrPort{})
	if got := mRecvDatagrams.Get() - before; got != n {
		t.Fatalf("recvmmsg read %d datagrams, want %d", got, n)
	}
	seen := map[string]bool{}
	for range n {
		got, _ := recv(t, next)
		m := parse(t, got)
		callID := string(m.CallID.In(got))
		if seen[callID] {
			t.Fatalf("%s forwarded twice", callID)
		}
		seen[callID] = true
		if !m.IsRequest {
			if len(header(got, "Via")) != 1 {
				t.Errorf("%s: our Via not removed:\n%s", callID, got)
			}
			continue
		}
		var i int
		if _, err := fmt.Sscanf(callID, "call%d@", &i); err != nil {
			t.Fatalf("unexpected Call-ID %q", callID)
		}
		id, err := passport.ParseIdentity(string(m.Identity[0].In(got)))
		if err != nil {
			t.Fatalf("%s: %v\n%s", callID, err, got)
		}
		if err := passport.VerifySignature(&key.PublicKey, id); err != nil {
			t.Errorf("%s: signature: %v", callID, err)
		}
		if want := fmt.Sprintf("121555501%02d", i); id.Payload.Orig.TN != want {
			t.Errorf("%s: orig %s, want %s (datagrams mixed up)", callID, id.Payload.Orig.TN, want)
		}
		if v := header(got, "Via"); len(v) != 2 || !strings.Contains(v[1], "received=127.0.0.1") ||
			!strings.Contains(v[1], fmt.Sprintf("rport=%d", client.Port())) {
			t.Errorf("%s: source not the client's %v: %q", callID, client, v)
		}
	}
	noRecv(t, next, 100*time.Millisecond)
}

// waitWarm waits until the software key's first nonce pool can sign at
// once (it fills in the background from empty), so that a test's calls are
// signed on the loop rather than queued behind a small job pool.
func waitWarm(t testing.TB, d hsm.Dispatcher) {
	var r hsm.Request
	for deadline := time.Now().Add(10 * time.Second); !d.(syncSigner).TrySign(&r, 0); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the nonce pool did not fill in 10s")
		}
	}
}

func (b *burster) port(t *testing.T) uint16 {
	sa, err := unix.Getsockname(b.tx.fd)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(sa.(*unix.SockaddrInet4).Port)
}

// rx.datagram decodes the sources recvmmsg writes: IPv4, IPv6, and IPv4
// mapped into IPv6 on a dual-stack socket (unmapped).
func TestRxSourceAddresses(t *testing.T) {
	r := &rx{buf: make([]byte, rxBatch*rxSlot)}
	put := func(i int, ap netip.AddrPort) {
		r.hdrs[i].Len = uint32(i + 1)
		sa := &r.names[i]
		*sa = unix.RawSockaddrInet6{}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		if ap.Addr().Is4() {
			s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
			s4.Family = unix.AF_INET
			s4.Addr = ap.Addr().As4()
			p = (*[2]byte)(unsafe.Pointer(&s4.Port))
		} else {
			sa.Family = unix.AF_INET6
			sa.Addr = ap.Addr().As16()
		}
		p[0], p[1] = byte(ap.Port()>>8), byte(ap.Port())
	}
	cases := []struct{ in, want string }{
		{"198.18.0.7:5060", "198.18.0.7:5060"},
		{"[2001:2::9]:5071", "[2001:2::9]:5071"},
		{"[::ffff:198.18.0.8]:65535", "198.18.0.8:65535"},
	}
	for i, c := range cases {
		put(i, netip.MustParseAddrPort(c.in))
	}
	for i, c := range cases {
		pkt, src, ok := r.datagram(i)
		if !ok || src.String() != c.want || len(pkt) != i+1 || &pkt[0] != &r.buf[i*rxSlot] {
			t.Errorf("%s: got %v %v (len %d), want %s", c.in, src, ok, len(pkt), c.want)
		}
	}
	r.names[3].Family = unix.AF_UNIX
	if _, _, ok := r.datagram(3); ok {
		t.Error("an AF_UNIX source was accepted")
	}
}
