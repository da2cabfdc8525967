package api

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/loadgen"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/fastpath"
)

// BenchmarkHTTPSigning is an HTTP load generator: 32 keep-alive clients
// send b.N signing requests to a real listener; the signer is the software
// key behind an hsm.Pool, as in the SIP path. Reports requests/s and p99.
// Run it with BenchmarkSIPSigning (-bench Signing) for the same-run
// comparison.
func BenchmarkHTTPSigning(b *testing.B) {
	e := newEnv(b, nil)
	const clients = 32
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := signBody("A", "12155550100", []string{"12155550199"}, time.Now().Unix(), "")
	lat := make([]time.Duration, b.N)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				req, _ := http.NewRequest("POST", e.base+"/stir/v1/signing", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testToken)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				res, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				lat[i] = time.Since(t0)
				if res.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d requests failed", f, b.N)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// usNumbers is the SIP path's canonicaliser (national numbers: US).
func usNumbers(tb testing.TB) *e164.Canonicalizer {
	n, err := e164.New("US")
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkSIPSigning drives the SIP path (fastpath proxy mode) with the
// same software signer behind an hsm.Pool: b.N INVITEs from bench/loadgen
// at sipRate calls/s into a sink. Reports signed calls/s, the share of
// calls that left signed (the rest got P-Identity-Bypass or were lost) and
// p99 through the proxy. Open loop overloads 2 shared cores (UDP loss), so
// the rate is fixed; raise it with care.
const sipRate = 4000

func BenchmarkSIPSigning(b *testing.B) {
	e := newEnv(b, nil)
	sink, err := loadgen.NewSink(loadgen.SinkConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	listen := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	fp, err := fastpath.New(fastpath.Config{Mode: fastpath.Proxy, Listen: listen, NextHop: sink.Addr(), Loops: 1,
		Builder: e.cfg.Builder, Signer: e.cfg.Signer, Policy: e.cfg.Policy, Numbers: usNumbers(b), Logger: e.cfg.Logger})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fp.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-fp.Booted():
	case err := <-done:
		b.Fatal(err)
	}
	g, err := loadgen.NewGenerator(loadgen.Config{Target: listen, Sink: sink, Sockets: 16, Drain: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	b.ResetTimer()
	res, err := g.Run(context.Background(), loadgen.Load{Rate: sipRate, Count: b.N, Duration: 30 * time.Second})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(res.WithIdentity)/res.SendSeconds, "signed/s")
	b.ReportMetric(res.Latency.P99/1000, "p99-ms")
	b.ReportMetric(100*float64(res.WithIdentity)/float64(max(res.Sent, 1)), "signed-%")
	b.Log(res)
}
