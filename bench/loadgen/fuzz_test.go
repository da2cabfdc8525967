package loadgen

import (
	"testing"
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
