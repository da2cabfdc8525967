package loadgen

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func FuzzScan(f *testing.F) {
	f.Add(testInvite(1, 2))
	f.Add([]byte("SIP/2.0 200 OK\r\nv: SIP/2.0/UDP [::1]:5060;rport=1;received=::2\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: 0000000000000001-0000000000000002-00000003@shakebench\r\nCSeq: 1 INVITE\r\ny: a.b.c;info=<x>\r\nm: <sip:x@y>\r\n\r\n"))
	f.Add([]byte("BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n"))
	f.Add([]byte("SIP/2.0 1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m sipMsg
		if err := m.scan(b); err != nil {
			return
		}
		if m.nvia == 0 || m.callID == nil {
			t.Fatal("scan accepted a message without Via or Call-ID")
		}
		if v, err := parseVia(m.viaTop); err == nil {
			if len(v.host) == 0 || v.port <= 0 || v.port > 65535 {
				t.Fatalf("parseVia gave %q:%d", v.host, v.port)
			}
			var ac addrCache
			ac.resolve(v.host)
		}
		if seq, ts, run, ok := parseCallID(m.callID); ok {
			var buf [callIDLen]byte
			putHex(buf[:16], seq)
			putHex(buf[17:33], ts)
			putHex(buf[34:42], uint64(run))
			if seq2, ts2, run2, _ := parseCallID(append(append(append(append(append(buf[:0:0], buf[:16]...), '-'), buf[17:33]...), '-'), append(buf[34:42], callIDSuffix...)...)); seq2 != seq || ts2 != ts || run2 != run {
				t.Fatal("Call-ID does not round-trip")
			}
		}
	})
}

// FuzzControlMessages feeds arbitrary control data to the parsers of the
// kernel's receive (SCM_TIMESTAMPNS) and transmit (error queue) stamps:
// they must not read past the buffer, and a stamp they accept must come
// from a control message of the right level and type.
func FuzzControlMessages(f *testing.F) {
	rx := make([]byte, unix.CmsgSpace(16))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&rx[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
	h.SetLen(unix.CmsgLen(16))
	*(*unix.Timespec)(unsafe.Pointer(&rx[unix.SizeofCmsghdr])) = unix.NsecToTimespec(1700000000_000000001)
	f.Add(rx)
	tsz, esz := int(unsafe.Sizeof(unix.ScmTimestamping{})), int(unsafe.Sizeof(unix.SockExtendedErr{}))
	tx := make([]byte, unix.CmsgSpace(tsz)+unix.CmsgSpace(esz+16))
	h = (*unix.Cmsghdr)(unsafe.Pointer(&tx[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPING
	h.SetLen(unix.CmsgLen(tsz))
	(*unix.ScmTimestamping)(unsafe.Pointer(&tx[unix.SizeofCmsghdr])).Ts[0] = unix.NsecToTimespec(1700000000_000000002)
	e := tx[unix.CmsgSpace(tsz):]
	h = (*unix.Cmsghdr)(unsafe.Pointer(&e[0]))
	h.Level, h.Type = unix.SOL_IP, unix.IP_RECVERR
	h.SetLen(unix.CmsgLen(esz + 16))
	*(*unix.SockExtendedErr)(unsafe.Pointer(&e[unix.SizeofCmsghdr])) = unix.SockExtendedErr{Errno: uint32(unix.ENOMSG), Origin: unix.SO_EE_ORIGIN_TIMESTAMPING, Data: 7}
	f.Add(tx)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Control buffers from the kernel are 8-byte aligned: copy there.
		buf := make([]uint64, (len(b)+7)/8+1)
		oob := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(b))
		copy(oob, b)
		if at, ok := parseStamp(oob); ok && at <= 0 {
			t.Fatalf("receive stamp %d accepted", at)
		}
		if _, at, ok := parseTxStamp(oob); ok && at <= 0 {
			t.Fatalf("transmit stamp %d accepted", at)
		}
	})
}
