package bpf

import (
	"encoding/binary"
	"net/netip"
)

// MetaLen is the size of the metadata the XDP program inserts in front of a
// steered INVITE's UDP payload.
const MetaLen = 56

// MetaMagic starts every metadata block ("SKNL").
const MetaMagic = 0x534b4e4c

const metaVersion = 1

// Metadata layout (struct meta in steer.c; TestMetaLayout checks it against
// the bpf2go-generated type).
const (
	mMagic   = 0
	mVersion = 4
	mFamily  = 5
	mVLAN    = 6
	mSrc     = 8
	mDst     = 24
	mSport   = 40
	mDport   = 42
	mIfindex = 44
	mCookie  = 48
)

// Flow is the original addressing of a steered INVITE.
type Flow struct {
	Src, Dst netip.AddrPort
	Ifindex  int    // ingress interface
	VLAN     uint16 // outermost 802.1Q VLAN ID, 0 when untagged
}

// DecodeMeta splits a datagram received on the steering socket into its
// original flow and the original UDP payload (the SIP message). ok is false
// when pkt does not start with valid metadata. payload aliases pkt. It
// allocates nothing. It does not check the cookie: use
// (*Steering).DecodeMeta for datagrams from the socket.
func DecodeMeta(pkt []byte) (payload []byte, orig Flow, ok bool) {
	if len(pkt) < MetaLen {
		return pkt, Flow{}, false
	}
	m := pkt[:MetaLen]
	if binary.BigEndian.Uint32(m[mMagic:]) != MetaMagic || m[mVersion] != metaVersion {
		return pkt, Flow{}, false
	}
	var src, dst netip.Addr
	switch m[mFamily] {
	case 4:
		src = netip.AddrFrom4([4]byte(m[mSrc : mSrc+4]))
		dst = netip.AddrFrom4([4]byte(m[mDst : mDst+4]))
	case 6:
		src = netip.AddrFrom16([16]byte(m[mSrc : mSrc+16]))
		dst = netip.AddrFrom16([16]byte(m[mDst : mDst+16]))
	default:
		return pkt, Flow{}, false
	}
	orig = Flow{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(m[mSport:])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(m[mDport:])),
		Ifindex: int(binary.BigEndian.Uint32(m[mIfindex:])),
		VLAN:    binary.BigEndian.Uint16(m[mVLAN:]),
	}
	return pkt[MetaLen:], orig, true
}

// AppendMeta appends the metadata the XDP program would insert for f,
// followed by payload. It is for tests of code that consumes steered
// datagrams without a kernel.
func AppendMeta(dst []byte, f Flow, cookie uint64, payload []byte) []byte {
	var m [MetaLen]byte
	binary.BigEndian.PutUint32(m[mMagic:], MetaMagic)
	m[mVersion] = metaVersion
	src, d := f.Src.Addr(), f.Dst.Addr()
	if src.Is4() {
		a, b := src.As4(), d.As4()
		copy(m[mSrc:], a[:])
		copy(m[mDst:], b[:])
		m[mFamily] = 4
	} else {
		a, b := src.As16(), d.As16()
		copy(m[mSrc:], a[:])
		copy(m[mDst:], b[:])
		m[mFamily] = 6
	}
	binary.BigEndian.PutUint16(m[mVLAN:], f.VLAN)
	binary.BigEndian.PutUint16(m[mSport:], f.Src.Port())
	binary.BigEndian.PutUint16(m[mDport:], f.Dst.Port())
	binary.BigEndian.PutUint32(m[mIfindex:], uint32(f.Ifindex))
	binary.NativeEndian.PutUint64(m[mCookie:], cookie)
	dst = append(dst, m[:]...)
	return append(dst, payload...)
}
