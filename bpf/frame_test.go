package bpf

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// frame describes a crafted Ethernet frame carrying UDP.
type frame struct {
	dstMAC, srcMAC string
	vlans          []uint16
	src, dst       netip.AddrPort
	payload        []byte
	ttl            uint8 // default 64
	mf             bool  // IPv4 more-fragments flag
	etherType      uint16
	// proto, when set, is the IP protocol and seg the whole L4 segment
	// (checksum included) instead of a UDP datagram built from the ports
	// and payload.
	proto uint8
	seg   []byte
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func csumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// udpChecksum computes the UDP checksum over the pseudo-header and seg.
func udpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	var sum uint32
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		sum = csumAdd(sum, s[:])
		sum = csumAdd(sum, d[:])
		sum += 17 + uint32(len(seg))
	} else {
		s, d := src.As16(), dst.As16()
		sum = csumAdd(sum, s[:])
		sum = csumAdd(sum, d[:])
		sum += uint32(len(seg)>>16) + uint32(len(seg)&0xffff) + 17
	}
	sum = csumAdd(sum, seg)
	c := csumFold(sum)
	if c == 0 {
		c = 0xffff
	}
	return c
}

func (f frame) bytes() []byte {
	b := append([]byte{}, mac(f.dstMAC)...)
	b = append(b, mac(f.srcMAC)...)
	for _, v := range f.vlans {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	if f.etherType != 0 {
		b = binary.BigEndian.AppendUint16(b, f.etherType)
		return append(b, make([]byte, 28)...)
	}
	ttl := f.ttl
	if ttl == 0 {
		ttl = 64
	}
	proto, udp := f.proto, f.seg
	if proto == 0 {
		proto = 17
		udp = make([]byte, 8, 8+len(f.payload))
		binary.BigEndian.PutUint16(udp[0:], f.src.Port())
		binary.BigEndian.PutUint16(udp[2:], f.dst.Port())
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(f.payload)))
		udp = append(udp, f.payload...)
		binary.BigEndian.PutUint16(udp[6:], udpChecksum(f.src.Addr(), f.dst.Addr(), udp))
	}

	if f.src.Addr().Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		if f.mf {
			binary.BigEndian.PutUint16(ip[6:], 0x2000)
		}
		ip[8] = ttl
		ip[9] = proto
		s, d := f.src.Addr().As4(), f.dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip)))
		b = append(b, ip...)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
		ip[6] = proto
		ip[7] = ttl
		s, d := f.src.Addr().As16(), f.dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		b = append(b, ip...)
	}
	return append(b, udp...)
}

// parsedFrame is what the tests read back from an output frame.
type parsedFrame struct {
	dstMAC, srcMAC net.HardwareAddr
	src, dst       netip.AddrPort
	ttl            uint8
	ipOK, udpOK    bool // header checksum / UDP checksum valid (or zero for IPv4)
	payload        []byte
}

func parseFrame(b []byte) (p parsedFrame, ok bool) {
	if len(b) < 14 {
		return p, false
	}
	p.dstMAC, p.srcMAC = net.HardwareAddr(b[0:6]), net.HardwareAddr(b[6:12])
	et := binary.BigEndian.Uint16(b[12:])
	off := 14
	for et == 0x8100 {
		et = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	var udp []byte
	switch et {
	case 0x0800:
		ip := b[off:]
		ihl := int(ip[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if tot > len(ip) {
			return p, false
		}
		p.ipOK = csumFold(csumAdd(0, ip[:ihl])) == 0
		p.ttl = ip[8]
		p.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), 0)
		p.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), 0)
		udp = ip[ihl:tot]
	case 0x86dd:
		ip := b[off:]
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		if 40+pl > len(ip) {
			return p, false
		}
		p.ipOK = true
		p.ttl = ip[7]
		p.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[8:24])), 0)
		p.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[24:40])), 0)
		udp = ip[40 : 40+pl]
	default:
		return p, false
	}
	if len(udp) < 8 || int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
		return p, false
	}
	p.src = netip.AddrPortFrom(p.src.Addr(), binary.BigEndian.Uint16(udp[0:]))
	p.dst = netip.AddrPortFrom(p.dst.Addr(), binary.BigEndian.Uint16(udp[2:]))
	if c := binary.BigEndian.Uint16(udp[6:]); c == 0 {
		p.udpOK = p.src.Addr().Is4()
	} else {
		seg := append([]byte{}, udp...)
		binary.BigEndian.PutUint16(seg[6:], 0)
		p.udpOK = udpChecksum(p.src.Addr(), p.dst.Addr(), seg) == c
	}
	p.payload = udp[8:]
	return p, true
}
