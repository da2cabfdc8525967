package bpf

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/shakenline/shakenline/bpf/nettest"
)

// xdpMD mirrors struct xdp_md for BPF_PROG_TEST_RUN.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

const testSteerPort = 5999

var (
	cliV4 = netip.AddrPortFrom(nettest.ClientV4, 5060)
	srvV4 = netip.AddrPortFrom(nettest.ServerV4, 5060)
	cliV6 = netip.AddrPortFrom(nettest.ClientV6, 5060)
	srvV6 = netip.AddrPortFrom(nettest.ServerV6, 5060)
)

func invite(size int) []byte {
	msg := "INVITE sip:+12025550123@198.18.2.2 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 198.18.1.2:5060;branch=z9hG4bK776asdhds\r\n" +
		"From: <sip:+12025550100@198.18.1.2>;tag=1928301774\r\n" +
		"To: <sip:+12025550123@198.18.2.2>\r\n" +
		"Call-ID: a84b4c76e66710@198.18.1.2\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n"
	if pad := size - len(msg) - 2; pad > 0 {
		msg += "X-Pad: " + strings.Repeat("p", max(pad-9, 0)) + "\r\n"
	}
	return []byte(msg + "\r\n")
}

// progEnv is a loaded (not attached) Steering in the appliance namespace.
type progEnv struct {
	topo   *nettest.Topology
	s      *Steering
	ac, as *net.Interface
}

func newProgEnv(t *testing.T) *progEnv { return newProgEnvWith(t, nettest.Options{}) }

func newProgEnvWith(t *testing.T, opts nettest.Options) *progEnv {
	topo := nettest.New(t, opts)
	e := &progEnv{topo: topo}
	err := topo.Appliance.Do(func() error {
		var err error
		e.s, err = load(Config{
			Ifaces:    []string{nettest.ApplianceClientIf, nettest.ApplianceServerIf},
			SIPPorts:  []uint16{5060, 5080},
			SteerPort: testSteerPort,
		})
		if err != nil {
			return err
		}
		if e.ac, err = net.InterfaceByName(nettest.ApplianceClientIf); err != nil {
			return err
		}
		e.as, err = net.InterfaceByName(nettest.ApplianceServerIf)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.s.Close() })
	// load leaves tx_ports to Attach: here both links take redirected
	// frames, as with tuned neighbours.
	for _, ifc := range []*net.Interface{e.ac, e.as} {
		e.setRedirect(t, ifc, true)
	}
	return e
}

// setRedirect puts ifc into tx_ports or takes it out, as Attach does when
// it learns whether the interface takes redirected frames.
func (e *progEnv) setRedirect(t *testing.T, ifc *net.Interface, ok bool) {
	t.Helper()
	key := uint32(ifc.Index)
	var err error
	if ok {
		err = e.s.objs.TxPorts.Put(key, key)
	} else {
		err = e.s.objs.TxPorts.Delete(key)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// setVerify sets or clears IF_CSUM_VERIFY on ifc, as Attach does for
// native mode on a veth.
func (e *progEnv) setVerify(t *testing.T, ifc *net.Interface, on bool) {
	t.Helper()
	for i := range e.s.ifaces {
		a := &e.s.ifaces[i]
		if a.ifindex != ifc.Index {
			continue
		}
		a.mode = "generic"
		if on {
			a.mode = "native"
		}
		a.driver = "veth"
		if _, err := e.s.setIfaceFlags(a); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs the program on frame as received on ifc and returns the verdict
// and output frame.
func (e *progEnv) run(t *testing.T, ifc *net.Interface, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+4096)
	var ret uint32
	err := e.topo.Appliance.Do(func() error {
		var err error
		opts := &ebpf.RunOptions{
			Data:    frame,
			DataOut: out,
			Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifc.Index)},
		}
		ret, err = e.s.objs.XdpSteer.Run(opts)
		out = opts.DataOut
		return err
	})
	if err != nil {
		t.Fatalf("Program.Run: %v", err)
	}
	return ret, out
}

func (e *progEnv) counters(t *testing.T) map[string]IfaceCounters {
	t.Helper()
	c, err := e.s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func verdict(v uint32) string {
	return map[uint32]string{0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX", 4: "REDIRECT"}[v]
}

func TestProgramSteersInvite(t *testing.T) {
	e := newProgEnv(t)
	cases := []struct {
		name     string
		src, dst netip.AddrPort
		steerTo  netip.Addr
		vlans    []uint16
		size     int
	}{
		{"v4", cliV4, srvV4, nettest.ApplianceClientV4, nil, 400},
		{"v4-odd", cliV4, srvV4, nettest.ApplianceClientV4, nil, 401},
		{"v6-even", cliV6, srvV6, nettest.ApplianceClientV6, nil, 400},
		{"v6-odd", cliV6, srvV6, nettest.ApplianceClientV6, nil, 401},
		{"v4-vlan", cliV4, srvV4, nettest.ApplianceClientV4, []uint16{42}, 333},
		{"v6-qinq", cliV6, srvV6, nettest.ApplianceClientV6, []uint16{7, 42}, 333},
		{"v4-port5080", cliV4, netip.AddrPortFrom(nettest.ServerV4, 5080), nettest.ApplianceClientV4, nil, 300},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.counters(t)[nettest.ApplianceClientIf]
			pl := invite(tc.size)
			in := frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, vlans: tc.vlans,
				src: tc.src, dst: tc.dst, payload: pl}.bytes()
			ret, out := e.run(t, e.ac, in)
			if ret != 2 {
				t.Fatalf("verdict %s, want PASS", verdict(ret))
			}
			p, ok := parseFrame(out)
			if !ok {
				t.Fatalf("output frame does not parse: % x", out)
			}
			if !p.ipOK || !p.udpOK {
				t.Errorf("checksums: ip %v udp %v", p.ipOK, p.udpOK)
			}
			if p.dst != netip.AddrPortFrom(tc.steerTo, testSteerPort) {
				t.Errorf("dst %v, want %v:%d", p.dst, tc.steerTo, testSteerPort)
			}
			if p.src != tc.src {
				t.Errorf("src %v, want original %v", p.src, tc.src)
			}
			if p.dstMAC.String() != nettest.ApplianceClientMAC {
				t.Errorf("dst MAC %v", p.dstMAC)
			}
			payload, fl, ok := e.s.DecodeMeta(p.payload)
			if !ok {
				t.Fatalf("no metadata in % x", p.payload[:min(len(p.payload), MetaLen)])
			}
			if !bytes.Equal(payload, pl) {
				t.Errorf("payload changed")
			}
			var vlan uint16
			if len(tc.vlans) > 0 {
				vlan = tc.vlans[0]
			}
			want := Flow{Src: tc.src, Dst: tc.dst, Ifindex: e.ac.Index, VLAN: vlan}
			if fl != want {
				t.Errorf("flow %+v, want %+v", fl, want)
			}
			after := e.counters(t)[nettest.ApplianceClientIf]
			if d := after.ByReason[ReasonSteered] - before.ByReason[ReasonSteered]; d != 1 {
				t.Errorf("steered counter moved by %d, want 1", d)
			}
		})
	}
}

func TestProgramForwardsEverythingElse(t *testing.T) {
	e := newProgEnv(t)
	options := []byte("OPTIONS sip:198.18.2.2 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
	ok200 := []byte("SIP/2.0 200 OK\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n")
	ack := []byte("ACK sip:+12025550123@198.18.2.2 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
	rtp := append([]byte{0x80, 0x00}, make([]byte, 170)...)
	cases := []struct {
		name        string
		ingress     func() *net.Interface
		f           frame
		wantVerdict string
		reason      Reason
		wantTTL     uint8
		wantDstMAC  string
	}{
		{"options-v4", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4, dst: srvV4, payload: options},
			"REDIRECT", ReasonForwarded, 63, nettest.ServerMAC},
		{"options-v6", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV6, dst: srvV6, payload: options},
			"REDIRECT", ReasonForwarded, 63, nettest.ServerMAC},
		{"ack", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4, dst: srvV4, payload: ack},
			"REDIRECT", ReasonForwarded, 63, nettest.ServerMAC},
		{"response-v4", func() *net.Interface { return e.as },
			frame{dstMAC: nettest.ApplianceServerMAC, srcMAC: nettest.ServerMAC, src: srvV4, dst: cliV4, payload: ok200},
			"REDIRECT", ReasonForwarded, 63, nettest.ClientMAC},
		{"response-v6", func() *net.Interface { return e.as },
			frame{dstMAC: nettest.ApplianceServerMAC, srcMAC: nettest.ServerMAC, src: srvV6, dst: cliV6, payload: ok200},
			"REDIRECT", ReasonForwarded, 63, nettest.ClientMAC},
		{"rtp", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC,
				src: netip.AddrPortFrom(nettest.ClientV4, 20000), dst: netip.AddrPortFrom(nettest.ServerV4, 30000), payload: rtp},
			"REDIRECT", ReasonForwarded, 63, nettest.ServerMAC},
		{"invite-other-port", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC,
				src: cliV4, dst: netip.AddrPortFrom(nettest.ServerV4, 5070), payload: invite(300)},
			"REDIRECT", ReasonForwarded, 63, nettest.ServerMAC},
		{"lowercase-invite", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4, dst: srvV4,
				payload: bytes.ToLower(invite(300))},
			"REDIRECT", ReasonForwarded, 63, nettest.ServerMAC},
		{"truncated-invite", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4, dst: srvV4, payload: []byte("INVIT")},
			"REDIRECT", ReasonForwarded, 63, nettest.ServerMAC},
		{"invite-first-fragment", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4, dst: srvV4, payload: invite(300), mf: true},
			"REDIRECT", ReasonForwarded, 63, nettest.ServerMAC},
		{"ttl-1", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4, dst: srvV4, payload: options, ttl: 1},
			"PASS", ReasonPassTTL, 1, nettest.ApplianceClientMAC},
		{"to-appliance", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4,
				dst: netip.AddrPortFrom(nettest.ApplianceClientV4, 22), payload: options},
			"PASS", ReasonPassLocal, 64, nettest.ApplianceClientMAC},
		{"other-mac", func() *net.Interface { return e.ac },
			frame{dstMAC: "02:00:00:00:09:09", srcMAC: nettest.ClientMAC, src: cliV4, dst: srvV4, payload: options},
			"PASS", ReasonPassL2, 64, "02:00:00:00:09:09"},
		{"vlan-options", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, vlans: []uint16{42}, src: cliV4, dst: srvV4, payload: options},
			"PASS", ReasonPassVLAN, 64, nettest.ApplianceClientMAC},
		{"arp", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, etherType: 0x0806},
			"PASS", ReasonPassNotIP, 0, nettest.ApplianceClientMAC},
		{"direct-to-steer-port", func() *net.Interface { return e.ac },
			frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4,
				dst: netip.AddrPortFrom(nettest.ApplianceClientV4, testSteerPort), payload: AppendMeta(nil, Flow{Src: cliV4, Dst: srvV4}, 0, invite(300))},
			"DROP", ReasonDropSteerDirect, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ifc := tc.ingress()
			before := e.counters(t)
			in := tc.f.bytes()
			ret, out := e.run(t, ifc, in)
			if verdict(ret) != tc.wantVerdict {
				t.Fatalf("verdict %s, want %s", verdict(ret), tc.wantVerdict)
			}
			after := e.counters(t)
			if d := after[ifc.Name].ByReason[tc.reason] - before[ifc.Name].ByReason[tc.reason]; d != 1 {
				t.Errorf("%s/%s counter moved by %d, want 1", tc.reason.Action(), tc.reason, d)
			}
			if d := after[ifc.Name].Steered() - before[ifc.Name].Steered(); d != 0 {
				t.Errorf("steered moved by %d", d)
			}
			if tc.f.etherType != 0 || tc.wantVerdict == "DROP" {
				return
			}
			p, ok := parseFrame(out)
			if !ok {
				t.Fatalf("output does not parse")
			}
			if p.src != tc.f.src || p.dst != tc.f.dst {
				t.Errorf("addresses rewritten: %v -> %v", p.src, p.dst)
			}
			if !bytes.Equal(p.payload, tc.f.payload) {
				t.Errorf("payload changed")
			}
			if p.ttl != tc.wantTTL || !p.ipOK || !p.udpOK {
				t.Errorf("ttl %d (want %d), ip csum %v, udp csum %v", p.ttl, tc.wantTTL, p.ipOK, p.udpOK)
			}
			if p.dstMAC.String() != tc.wantDstMAC {
				t.Errorf("dst MAC %v, want %v", p.dstMAC, tc.wantDstMAC)
			}
		})
	}
	t.Run("fragment-event", func(t *testing.T) {
		c := e.counters(t)[nettest.ApplianceClientIf]
		if c.ByReason[ReasonInviteFragment] != 1 {
			t.Errorf("invite fragment events %d, want 1", c.ByReason[ReasonInviteFragment])
		}
	})
}

// tcpSeg is a TCP segment (PSH|ACK) carrying payload; its checksum is
// left zero (the program does not look at it).
func tcpSeg(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	b[12], b[13] = 5<<4, 0x18
	binary.BigEndian.PutUint16(b[14:], 65535)
	return append(b, payload...)
}

// tcpFrame is f carrying payload in a TCP segment.
func tcpFrame(f frame, payload []byte) frame {
	f.proto, f.seg = 6, tcpSeg(f.src, f.dst, payload)
	return f
}

// SIP over TCP through the wire (inline mode): forwarded unchanged, not
// steered, and counted as a sip_tcp event, in both directions; TCP on
// other ports is not counted.
func TestProgramCountsSIPOverTCP(t *testing.T) {
	e := newProgEnv(t)
	invTCP := invite(300)
	for _, tc := range []struct {
		name    string
		ingress func() *net.Interface
		f       frame
		counted bool
	}{
		{"invite-to-5060", func() *net.Interface { return e.ac },
			tcpFrame(frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: netip.AddrPortFrom(nettest.ClientV4, 40000),
				dst: srvV4}, invTCP), true},
		{"response-from-5060-v6", func() *net.Interface { return e.as },
			tcpFrame(frame{dstMAC: nettest.ApplianceServerMAC, srcMAC: nettest.ServerMAC, src: srvV6,
				dst: netip.AddrPortFrom(nettest.ClientV6, 40000)}, []byte("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")), true},
		{"https", func() *net.Interface { return e.ac },
			tcpFrame(frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: netip.AddrPortFrom(nettest.ClientV4, 40000),
				dst: netip.AddrPortFrom(nettest.ServerV4, 443)}, []byte("x")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ifc := tc.ingress()
			before := e.counters(t)[ifc.Name]
			in := tc.f.bytes()
			ret, out := e.run(t, ifc, in)
			if verdict(ret) != "REDIRECT" {
				t.Fatalf("verdict %s, want REDIRECT (forwarded)", verdict(ret))
			}
			after := e.counters(t)[ifc.Name]
			want := uint64(0)
			if tc.counted {
				want = 1
			}
			if d := after.ByReason[ReasonSIPOverTCP] - before.ByReason[ReasonSIPOverTCP]; d != want {
				t.Errorf("sip_tcp moved by %d, want %d", d, want)
			}
			if d := after.ByReason[ReasonForwarded] - before.ByReason[ReasonForwarded]; d != 1 {
				t.Errorf("forwarded moved by %d, want 1", d)
			}
			if after.Steered() != before.Steered() {
				t.Error("a TCP segment was steered")
			}
			// Unchanged but for the MACs and the TTL the forwarding rewrites.
			if len(out) != len(in) || !bytes.Equal(out[len(out)-len(tc.f.seg):], tc.f.seg) {
				t.Error("segment changed")
			}
		})
	}
}

func TestProgramShortFrames(t *testing.T) {
	e := newProgEnv(t)
	full := frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV6, dst: srvV6, payload: invite(300)}.bytes()
	for _, n := range []int{14, 20, 34, 53, 54, 61} {
		before := e.counters(t)[nettest.ApplianceClientIf]
		ret, _ := e.run(t, e.ac, full[:n])
		after := e.counters(t)[nettest.ApplianceClientIf]
		if verdict(ret) != "PASS" && verdict(ret) != "REDIRECT" {
			t.Errorf("len %d: verdict %s", n, verdict(ret))
		}
		if after.Steered() != before.Steered() {
			t.Errorf("len %d: truncated frame was steered", n)
		}
	}
	if c := e.counters(t)[nettest.ApplianceClientIf]; c.ByReason[ReasonPassMalformed] == 0 {
		t.Errorf("no malformed frames counted: %+v", c.ByReason)
	}
}

func TestProgramFailOpen(t *testing.T) {
	e := newProgEnv(t)
	in := frame{dstMAC: nettest.ApplianceClientMAC, srcMAC: nettest.ClientMAC, src: cliV4, dst: srvV4, payload: invite(300)}.bytes()

	if ret, _ := e.run(t, e.ac, in); verdict(ret) != "PASS" {
		t.Fatalf("fresh heartbeat: verdict %s, want PASS (steered)", verdict(ret))
	}

	// Stale heartbeat: 1 ns after boot is far older than StaleAfter.
	if err := e.s.objs.Heartbeat.Put(uint32(0), uint64(1)); err != nil {
		t.Fatal(err)
	}
	ret, out := e.run(t, e.ac, in)
	if verdict(ret) != "REDIRECT" {
		t.Fatalf("stale heartbeat: verdict %s, want REDIRECT", verdict(ret))
	}
	if p, _ := parseFrame(out); p.dst != srvV4 {
		t.Errorf("stale heartbeat: dst rewritten to %v", p.dst)
	}
	c := e.counters(t)[nettest.ApplianceClientIf]
	if c.ByReason[ReasonInviteStale] != 1 || c.Steered() != 1 || c.Forwarded() != 1 {
		t.Errorf("counters after stale: stale=%d steered=%d forwarded=%d", c.ByReason[ReasonInviteStale], c.Steered(), c.Forwarded())
	}

	if err := e.s.Heartbeat(); err != nil {
		t.Fatal(err)
	}
	if ret, _ := e.run(t, e.ac, in); verdict(ret) != "PASS" {
		t.Fatalf("heartbeat again: verdict %s, want PASS", verdict(ret))
	}

	if err := e.s.SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	if ret, _ := e.run(t, e.ac, in); verdict(ret) != "REDIRECT" {
		t.Fatalf("disabled: verdict %s, want REDIRECT", verdict(ret))
	}
	c = e.counters(t)[nettest.ApplianceClientIf]
	if c.ByReason[ReasonInviteDisabled] != 1 || c.Steered() != 2 {
		t.Errorf("counters after disable: disabled=%d steered=%d", c.ByReason[ReasonInviteDisabled], c.Steered())
	}
}
