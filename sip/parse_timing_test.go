package sip

import "testing"

func BenchmarkParseInvite(b *testing.B) {
	for _, c := range []struct {
		name string
		msg  []byte
	}{{"carrier", inviteCarrier}, {"sipp", inviteSIPp}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.msg)))
			var m Message
			for b.Loop() {
				if err := m.Parse(c.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("carrier-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(inviteCarrier)))
		b.RunParallel(func(pb *testing.PB) {
			var m Message
			for pb.Next() {
				if err := m.Parse(inviteCarrier); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkTelephoneNumber(b *testing.B) {
	uri := []byte("sip:+1-215-555-0100@carrier.example;user=phone")
	dst := make([]byte, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := TelephoneNumber(uri, dst[:0]); !ok {
			b.Fatal("not a number")
		}
	}
}

func BenchmarkParseDate(b *testing.B) {
	d := []byte("Mon, 23 Nov 2026 16:33:39 GMT")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseDate(d); !ok {
			b.Fatal("bad date")
		}
	}
}
