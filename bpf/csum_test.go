package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/shakenline/shakenline/bpf/nettest"
)

// L4 checksum states a sender can leave in a frame.
type csumKind int

const (
	csumFull    csumKind = iota // complete and valid
	csumPartial                 // pseudo-header sum only: TX checksum offload (CHECKSUM_PARTIAL)
	csumZero                    // 0: "no checksum" (IPv4 UDP)
	csumBad                     // neither
)

func (k csumKind) String() string { return [...]string{"full", "partial", "zero", "bad"}[k] }

// pseudoSum is the unfolded sum of the pseudo-header (RFC 768, RFC 8200).
func pseudoSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	s, d := src.AsSlice(), dst.AsSlice()
	sum := csumAdd(csumAdd(0, s), d)
	return sum + uint32(proto) + uint32(n>>16) + uint32(n&0xffff)
}

// segment builds a TCP (20-byte header), UDP or ICMP segment carrying
// payload, its checksum in the given state.
func segment(proto uint8, src, dst netip.AddrPort, payload []byte, k csumKind) []byte {
	var seg []byte
	var off int // checksum field
	switch proto {
	case 6:
		seg = make([]byte, 20)
		binary.BigEndian.PutUint16(seg[0:], src.Port())
		binary.BigEndian.PutUint16(seg[2:], dst.Port())
		binary.BigEndian.PutUint32(seg[4:], 0x01020304) // seq
		seg[12] = 5 << 4                                // data offset
		seg[13] = 0x18                                  // PSH ACK
		binary.BigEndian.PutUint16(seg[14:], 65535)
		off = 16
	case 17:
		seg = make([]byte, 8)
		binary.BigEndian.PutUint16(seg[0:], src.Port())
		binary.BigEndian.PutUint16(seg[2:], dst.Port())
		binary.BigEndian.PutUint16(seg[4:], uint16(8+len(payload)))
		off = 6
	case 1, 58:
		seg = []byte{8, 0, 0, 0, 0, 1, 0, 1} // echo request
		off = 2
	default:
		return append([]byte{}, payload...)
	}
	seg = append(seg, payload...)
	var sum uint32
	if proto != 1 { // ICMPv4 has no pseudo-header
		sum = pseudoSum(src.Addr(), dst.Addr(), proto, len(seg))
	}
	var c uint16
	switch k {
	case csumFull:
		c = csumFold(csumAdd(sum, seg))
		if c == 0 && proto == 17 {
			c = 0xffff
		}
	case csumPartial:
		c = ^csumFold(sum)
	case csumBad:
		c = csumFold(csumAdd(sum, seg)) ^ 0x5a5a
	}
	binary.BigEndian.PutUint16(seg[off:], c)
	return seg
}

// l4Valid checks the L4 checksum of an IPv4/IPv6 frame without VLAN tags.
func l4Valid(t *testing.T, f []byte) bool {
	t.Helper()
	var src, dst netip.Addr
	var proto uint8
	var seg []byte
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		ip := f[14:]
		ihl := int(ip[0]&0xf) * 4
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		proto, seg = ip[9], ip[ihl:binary.BigEndian.Uint16(ip[2:])]
	case 0x86dd:
		ip := f[14:]
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		proto, seg = ip[6], ip[40:40+binary.BigEndian.Uint16(ip[4:])]
	default:
		t.Fatalf("not IP")
	}
	var sum uint32
	if proto != 1 {
		sum = pseudoSum(src, dst, proto, len(seg))
	}
	return csumFold(csumAdd(sum, seg)) == 0
}

// TestProgramChecksums: on an interface whose frames may carry partial
// checksums (IF_CSUM_VERIFY: native mode on a veth), the program
// redirects a frame only with a complete L4 checksum: complete ones as
// they are, partial ones completed (every length, to cover each step of
// the bounded sum), anything it cannot prove complete handed to the
// kernel unmodified. Without the flag (a NIC, or generic mode) it does
// not look.
//
// The frames go from the server side (as0) to the client side (ac0, MTU
// 3400), so that L4 segments up to 3000 bytes are forwarded, not left to
// the kernel to fragment.
func TestProgramChecksums(t *testing.T) {
	e := newProgEnvWith(t, nettest.Options{ClientMTU: 3400})
	e.setVerify(t, e.as, true)
	src4, dst4 := netip.AddrPortFrom(nettest.ServerV4, 40000), netip.AddrPortFrom(nettest.ClientV4, 40002)
	src6, dst6 := netip.AddrPortFrom(nettest.ServerV6, 40000), netip.AddrPortFrom(nettest.ClientV6, 40002)
	ingress, ingressMAC, peerMAC := e.as, nettest.ApplianceServerMAC, nettest.ServerMAC

	type tc struct {
		proto    uint8
		v6       bool
		n        int
		k        csumKind
		mf       bool
		verdict  string
		reason   Reason
		complete bool // output checksum valid
	}
	var cases []tc
	for _, proto := range []uint8{17, 6} {
		for _, v6 := range []bool{false, true} {
			for _, n := range []int{0, 1, 2, 3, 5, 12, 160, 200, 511, 512, 513, 1023, 1400, 1472, 2047, 3000} {
				cases = append(cases,
					tc{proto, v6, n, csumFull, false, "REDIRECT", ReasonForwarded, true},
					tc{proto, v6, n, csumPartial, false, "REDIRECT", ReasonForwardedCsum, true})
			}
			cases = append(cases, tc{proto, v6, 200, csumBad, false, "PASS", ReasonUnsafeChecksum, false})
		}
	}
	cases = append(cases,
		tc{17, false, 200, csumZero, false, "PASS", ReasonUnsafeChecksum, true}, // none: cannot tell
		tc{17, true, 200, csumZero, false, "PASS", ReasonUnsafeChecksum, false},
		tc{17, false, 1000, csumPartial, true, "REDIRECT", ReasonForwarded, false}, // a fragment: checksummed before fragmenting, not ours to judge
		tc{1, false, 56, csumFull, false, "REDIRECT", ReasonForwarded, true},       // ICMP: always software
		tc{58, true, 56, csumFull, false, "REDIRECT", ReasonForwarded, true},
		tc{132, false, 100, csumFull, false, "PASS", ReasonUnsafeChecksum, false}, // SCTP: CRC32c offload we cannot see
		tc{47, true, 100, csumFull, false, "PASS", ReasonUnsafeChecksum, false},   // GRE
	)
	for _, c := range cases {
		fam := "v4"
		if c.v6 {
			fam = "v6"
		}
		t.Run(fmt.Sprintf("%s-proto%d-%d-%s-mf%v", fam, c.proto, c.n, c.k, c.mf), func(t *testing.T) {
			src, dst := src4, dst4
			if c.v6 {
				src, dst = src6, dst6
			}
			payload := make([]byte, c.n)
			for i := range payload {
				payload[i] = byte(i*7 + 0xa5)
			}
			seg := segment(c.proto, src, dst, payload, c.k)
			in := frame{dstMAC: ingressMAC, srcMAC: peerMAC, src: src, dst: dst,
				proto: c.proto, seg: seg, mf: c.mf}.bytes()
			before := e.counters(t)[ingress.Name]
			ret, out := e.run(t, ingress, in)
			if verdict(ret) != c.verdict {
				t.Fatalf("verdict %s, want %s", verdict(ret), c.verdict)
			}
			after := e.counters(t)[ingress.Name]
			if d := after.ByReason[c.reason] - before.ByReason[c.reason]; d != 1 {
				t.Errorf("%s/%s counter +%d, want 1", c.reason.Action(), c.reason, d)
			}
			if c.verdict == "PASS" {
				if !bytes.Equal(out, in) {
					t.Errorf("frame handed to the kernel modified")
				}
				return
			}
			if got := l4Valid(t, out); got != c.complete {
				t.Errorf("output L4 checksum valid %v, want %v", got, c.complete)
			}
			l3 := 14
			hl := 20
			if c.v6 {
				hl = 40
			}
			if !bytes.Equal(out[l3+hl:], in[l3+hl:]) && c.k != csumPartial {
				t.Errorf("L4 segment changed")
			}
		})
	}

	t.Run("no-verify-flag", func(t *testing.T) {
		e.setVerify(t, ingress, false)
		defer e.setVerify(t, ingress, true)
		seg := segment(17, src4, dst4, make([]byte, 200), csumPartial)
		in := frame{dstMAC: ingressMAC, srcMAC: peerMAC, src: src4, dst: dst4, proto: 17, seg: seg}.bytes()
		ret, out := e.run(t, ingress, in)
		if verdict(ret) != "REDIRECT" || !bytes.Equal(out[34:], in[34:]) {
			t.Fatalf("verdict %s, segment unchanged %v: want REDIRECT, untouched", verdict(ret), bytes.Equal(out[34:], in[34:]))
		}
	})
}

// TestProgramUnsafeEgress: a managed interface that does not take
// redirected frames (not in tx_ports) gets the frame through the kernel,
// unmodified and counted; an unmanaged one as before.
func TestProgramUnsafeEgress(t *testing.T) {
	e := newProgEnv(t)
	e.setRedirect(t, e.as, false)
	in := frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4, dst: srvV4,
		payload: []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nContent-Length: 0\r\n\r\n")}.bytes()
	ret, out := e.run(t, e.ac, in)
	if verdict(ret) != "PASS" || !bytes.Equal(out, in) {
		t.Fatalf("verdict %s (want PASS), unmodified %v", verdict(ret), bytes.Equal(out, in))
	}
	c := e.counters(t)[nettest.ApplianceClientIf]
	if c.ByReason[ReasonUnsafeEgress] != 1 || c.RedirectUnsafe() != 1 || c.Forwarded() != 0 {
		t.Errorf("counters %+v: want one redirect_unsafe_egress", c.ByReason)
	}
	e.setRedirect(t, e.as, true)
	if ret, _ := e.run(t, e.ac, in); verdict(ret) != "REDIRECT" {
		t.Fatalf("verdict %s after the egress became a target, want REDIRECT", verdict(ret))
	}
}
