package bpf

import (
	"bytes"
	"testing"
	"unsafe"
)

func TestMetaLayout(t *testing.T) {
	var m steerMeta
	if unsafe.Sizeof(m) != MetaLen {
		t.Fatalf("struct meta is %d bytes, MetaLen %d", unsafe.Sizeof(m), MetaLen)
	}
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"magic", unsafe.Offsetof(m.Magic), mMagic},
		{"version", unsafe.Offsetof(m.Version), mVersion},
		{"family", unsafe.Offsetof(m.Family), mFamily},
		{"vlan", unsafe.Offsetof(m.Vlan), mVLAN},
		{"src", unsafe.Offsetof(m.Src), mSrc},
		{"dst", unsafe.Offsetof(m.Dst), mDst},
		{"sport", unsafe.Offsetof(m.Sport), mSport},
		{"dport", unsafe.Offsetof(m.Dport), mDport},
		{"ifindex", unsafe.Offsetof(m.Ifindex), mIfindex},
		{"cookie", unsafe.Offsetof(m.Cookie), mCookie},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, Go decoder expects %d", c.name, c.got, c.want)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, f := range []Flow{
		{Src: cliV4, Dst: srvV4, Ifindex: 7},
		{Src: cliV6, Dst: srvV6, Ifindex: 1 << 20, VLAN: 4094},
	} {
		pkt := AppendMeta(nil, f, 0x1122334455667788, []byte("INVITE x"))
		payload, got, ok := DecodeMeta(pkt)
		if !ok || got != f || string(payload) != "INVITE x" {
			t.Errorf("round trip %+v: ok=%v got %+v payload %q", f, ok, got, payload)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, MetaLen-1), make([]byte, MetaLen)} {
		if _, _, ok := DecodeMeta(bad); ok {
			t.Errorf("decoded %d garbage bytes", len(bad))
		}
	}
	pkt := AppendMeta(nil, Flow{Src: cliV4, Dst: srvV4}, 1, nil)
	pkt[mFamily] = 5
	if _, _, ok := DecodeMeta(pkt); ok {
		t.Error("decoded unknown family")
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(AppendMeta(nil, Flow{Src: cliV4, Dst: srvV4, Ifindex: 3}, 9, invite(200)))
	f.Add(AppendMeta(nil, Flow{Src: cliV6, Dst: srvV6, VLAN: 42}, 9, nil))
	f.Add([]byte("SKNL"))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		payload, fl, ok := DecodeMeta(pkt)
		if !ok {
			if !bytes.Equal(payload, pkt) {
				t.Fatal("payload changed on failure")
			}
			return
		}
		if len(payload) != len(pkt)-MetaLen || !fl.Src.IsValid() || !fl.Dst.IsValid() {
			t.Fatalf("bad decode %+v", fl)
		}
		// Re-encoding the decoded flow decodes to the same flow.
		_, fl2, ok := DecodeMeta(AppendMeta(nil, fl, 0, payload))
		if !ok || fl2 != fl {
			t.Fatalf("re-encode: %+v != %+v", fl2, fl)
		}
	})
}
