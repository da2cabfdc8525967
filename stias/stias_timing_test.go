package stias

import (
	"context"
	"testing"
)

// BenchmarkSignInput: one call through the remote link to another
// appliance's signing API on loopback (package api, in this process),
// keep-alive connections, the answer checked and the x5u verdict cached:
// the round trip a remote link adds besides the network, and what it
// allocates. Run in parallel (-cpu) for the pool's throughput.
func BenchmarkSignInput(b *testing.B) {
	p := newProvider(b, "1234")
	url, token := stiAS(b, p)
	c, err := New(Config{Name: "bench", URL: url, Token: token, Lab: true, OwnSPCs: []string{"1234"}, OwnCert: OwnCertEnforce, MaxInFlight: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	in := input(b, "https://cert.example.net/ours.pem")
	if _, err := c.SignInput(context.Background(), in, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, 0, 1024)
		for pb.Next() {
			var err error
			if dst, err = c.SignInput(context.Background(), in, dst[:0]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
