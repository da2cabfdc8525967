package e164

import "testing"

func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name, region, in string
		global           bool
	}{
		{"global", "US", "442079460018", true},
		{"US-10", "US", "2155550123", false},
		{"US-11", "US", "12155550123", false},
		{"GB-national", "GB", "02079460018", false},
		{"DE-idd", "DE", "00442079460018", false},
		{"NZ-national", "NZ", "091234567", false},
		{"JP-slow", "JP", "0312345678", false},
	} {
		c, err := New(bc.region)
		if err != nil {
			b.Fatal(err)
		}
		in := []byte(bc.in)
		dst := make([]byte, 0, 32)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Append(dst[:0], in, bc.global); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	c, _ := New("US")
	in := []byte("2155550123")
	b.Run("US-10-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			dst := make([]byte, 0, 32)
			for pb.Next() {
				if _, err := c.Append(dst[:0], in, false); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
