package hsmraw

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

var sessionCounts = []int{1, 2, 4, 8}

// rawSigner is miekg/pkcs11 with nothing around it: one logged-in token,
// one session per goroutine, C_SignInit+C_Sign(CKM_ECDSA).
type rawSigner struct {
	ctx  *pkcs11.Ctx
	key  pkcs11.ObjectHandle
	slot uint
	mech []*pkcs11.Mechanism
}

func openRaw(b *testing.B, tk *softhsmtest.Token) *rawSigner {
	return openRawModule(b, tk, softhsmtest.DefaultModule)
}

func openRawModule(b *testing.B, tk *softhsmtest.Token, module string) *rawSigner {
	ctx := pkcs11.New(module)
	if ctx == nil {
		b.Fatal("load module")
	}
	if err := ctx.Initialize(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ctx.Finalize(); ctx.Destroy() })
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		b.Fatal(err)
	}
	r := &rawSigner{ctx: ctx, mech: []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}}
	found := false
	for _, s := range slots {
		if ti, err := ctx.GetTokenInfo(s); err == nil && ti.Label == tk.Label {
			r.slot, found = s, true
		}
	}
	if !found {
		b.Fatal("token not found")
	}
	sh := r.session(b)
	if err := ctx.Login(sh, pkcs11.CKU_USER, tk.PIN); err != nil {
		b.Fatal(err)
	}
	if err := ctx.FindObjectsInit(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_ID, tk.KeyID),
	}); err != nil {
		b.Fatal(err)
	}
	objs, _, err := ctx.FindObjects(sh, 1)
	ctx.FindObjectsFinal(sh)
	if err != nil || len(objs) != 1 {
		b.Fatal("key not found", err)
	}
	r.key = objs[0]
	return r
}

func (r *rawSigner) session(b *testing.B) pkcs11.SessionHandle {
	sh, err := r.ctx.OpenSession(r.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		b.Fatal(err)
	}
	return sh
}

func (r *rawSigner) sign(sh pkcs11.SessionHandle, d []byte) error {
	if err := r.ctx.SignInit(sh, r.mech, r.key); err != nil {
		return err
	}
	sig, err := r.ctx.Sign(sh, d)
	if err == nil && len(sig) != 64 {
		err = fmt.Errorf("signature length %d", len(sig))
	}
	return err
}

// BenchmarkSign runs raw C_Sign and the Chain at each session count, in one
// run so the numbers are comparable. ns/op is per signature across all
// sessions; sig/s is reported too.
func BenchmarkSign(b *testing.B) {
	env := softhsmtest.New(b)
	tk := env.NewToken("bench", nil)
	benchSign(b, tk, softhsmtest.DefaultModule, tk.URI())
}

// BenchmarkRemote is BenchmarkSign through p11-kit: p11-kit-client.so in
// this process, `p11-kit server` (a separate process, the "HSM") loading
// SoftHSM. It runs only with HSMRAW_P11KIT=1; HSMRAW_SERVER_CPU=N pins the
// server to CPU N (bench/compare pins this process to another core). The
// server executes one connection's calls one at a time, so here sessions
// pipeline requests into one serial executor rather than add parallelism.
func BenchmarkRemote(b *testing.B) {
	if os.Getenv("HSMRAW_P11KIT") != "1" {
		b.Skip("HSMRAW_P11KIT=1 not set")
	}
	cpu := -1
	if v := os.Getenv("HSMRAW_SERVER_CPU"); v != "" {
		var err error
		if cpu, err = strconv.Atoi(v); err != nil {
			b.Fatalf("HSMRAW_SERVER_CPU=%q: %v", v, err)
		}
	}
	env := softhsmtest.New(b)
	tk := env.NewToken("remote", nil)
	srv := env.Serve(b, tk, cpu)
	benchSign(b, tk, srv.Module, tk.URIWith(srv.Module))
}

func benchSign(b *testing.B, tk *softhsmtest.Token, module, uri string) {
	for _, n := range sessionCounts {
		b.Run(fmt.Sprintf("raw/sessions=%d", n), func(b *testing.B) {
			r := openRawModule(b, tk, module)
			shs := make([]pkcs11.SessionHandle, n)
			for i := range shs {
				shs[i] = r.session(b)
			}
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for _, sh := range shs {
				wg.Go(func() {
					var d [32]byte
					_, _ = rand.Read(d[:])
					for left.Add(-1) >= 0 {
						if err := r.sign(sh, d[:]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sig/s")
		})
		b.Run(fmt.Sprintf("chain/sessions=%d", n), func(b *testing.B) {
			c := openChainURI(b, uri, tk, n)
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			// Two requests per session stay in flight: each Done
			// resubmits its request from the signer goroutine, as an event
			// loop would submit the next INVITE, without extra goroutines.
			var failed atomic.Int64
			inflight := min(2*n, b.N)
			reqs := make([]hsm.Request, inflight)
			left.Add(-int64(inflight))
			wg.Add(inflight)
			for i := range reqs {
				_, _ = rand.Read(reqs[i].Digest[:])
				reqs[i].Done = func(r *hsm.Request) {
					if r.Err != nil {
						failed.Add(1)
					}
					if left.Add(-1) < 0 {
						wg.Done()
						return
					}
					r.Deadline = time.Time{}
					if c.Submit(r) != nil {
						failed.Add(1)
						wg.Done()
					}
				}
			}
			for i := range reqs {
				if err := c.Submit(&reqs[i]); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			if failed.Load() != 0 {
				b.Errorf("%d requests failed", failed.Load())
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sig/s")
		})
	}
}

func openChain(b *testing.B, tk *softhsmtest.Token, sessions int, more ...hsm.SignerConfig) *hsm.Chain {
	return openChainURI(b, tk.URI(), tk, sessions, more...)
}

func openChainURI(b *testing.B, uri string, tk *softhsmtest.Token, sessions int, more ...hsm.SignerConfig) *hsm.Chain {
	cfg := hsm.Config{
		Budget:  5 * time.Second,
		Signers: append([]hsm.SignerConfig{{PKCS11: uri, Workers: sessions, Timeout: 5 * time.Second}}, more...),
	}
	c, err := hsm.New(context.Background(), cfg, tk.Cert)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkLatency measures the chain's (4 sessions) closed-loop throughput,
// then offers open-loop load at 50 % and 90 % of it for one second each and
// reports Submit-to-Done latency percentiles, beside the unloaded raw C_Sign
// latency of one session: added = chain p50 - raw p50.
func BenchmarkLatency(b *testing.B) {
	env := softhsmtest.New(b)
	tk := env.NewToken("lat", nil)
	const sessions = 4
	// Raw unloaded C_Sign latency.
	var rawLat []time.Duration
	func() {
		r := openRaw(b, tk)
		sh := r.session(b)
		d := make([]byte, 32)
		for range 2000 {
			t0 := time.Now()
			if err := r.sign(sh, d); err != nil {
				b.Fatal(err)
			}
			rawLat = append(rawLat, time.Since(t0))
		}
	}()
	rawP50, rawP99 := pct(rawLat, 50), pct(rawLat, 99)
	c := openChain(b, tk, sessions)
	// Throughput, closed loop.
	var n atomic.Int64
	end := time.Now().Add(500 * time.Millisecond)
	var wg sync.WaitGroup
	for range 2 * sessions {
		wg.Go(func() {
			done := make(chan *hsm.Request, 1)
			req := &hsm.Request{Done: func(r *hsm.Request) { done <- r }}
			for time.Now().Before(end) {
				req.Deadline = time.Time{}
				if c.Submit(req) == nil {
					<-done
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	tput := float64(n.Load()) / 0.5
	report := map[string]float64{
		"chain-sig/s": tput,
		"raw-p50-µs":  float64(rawP50.Microseconds()),
		"raw-p99-µs":  float64(rawP99.Microseconds()),
	}
	for _, load := range []int{50, 90} {
		lat, lost := openLoop(c, tput*float64(load)/100, time.Second)
		p50, p99 := pct(lat, 50), pct(lat, 99)
		report[fmt.Sprintf("p50-µs@%d%%", load)] = float64(p50.Microseconds())
		report[fmt.Sprintf("p99-µs@%d%%", load)] = float64(p99.Microseconds())
		report[fmt.Sprintf("added-p50-µs@%d%%", load)] = float64((p50 - rawP50).Microseconds())
		report[fmt.Sprintf("added-p99-µs@%d%%", load)] = float64((p99 - rawP99).Microseconds())
		report[fmt.Sprintf("unsigned@%d%%", load)] = float64(lost)
	}
	for b.Loop() {
	}
	for k, v := range report {
		b.ReportMetric(v, k)
	}
}

// openLoop offers rate requests per second for dur, paced every
// millisecond, and returns the latencies and the number not signed.
func openLoop(c *hsm.Chain, rate float64, dur time.Duration) ([]time.Duration, int) {
	total := int(rate * dur.Seconds())
	reqs := make([]hsm.Request, total)
	sent := make([]time.Time, total)
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	var lost atomic.Int64
	for i := range reqs {
		reqs[i].Done = func(r *hsm.Request) {
			lat[i] = time.Since(sent[i])
			if r.Err != nil {
				lost.Add(1)
			}
			wg.Done()
		}
		_, _ = rand.Read(reqs[i].Digest[:])
	}
	start := time.Now()
	next := 0
	for next < total {
		owed := min(total, int(time.Since(start).Seconds()*rate)+1)
		for ; next < owed; next++ {
			sent[next] = time.Now()
			reqs[next].Deadline = sent[next].Add(5 * time.Second)
			wg.Add(1)
			if err := c.Submit(&reqs[next]); err != nil {
				lost.Add(1)
				wg.Done()
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	wg.Wait()
	return lat, int(lost.Load())
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// BenchmarkFailover deletes the primary token under closed-loop load and
// reports the time from the start of the deletion (softhsm2-util
// --delete-token, whose own run time is reported as delete-cmd-ms) to the
// first call signed by the secondary token.
func BenchmarkFailover(b *testing.B) {
	env := softhsmtest.New(b)
	key, err := ecdsaKey()
	if err != nil {
		b.Fatal(err)
	}
	a := env.NewToken("fo-primary", key)
	sec := env.NewToken("fo-secondary", key)
	c := openChain(b, a, 2, hsm.SignerConfig{PKCS11: sec.URI(), Workers: 2, Timeout: 5 * time.Second})
	var firstNext atomic.Int64 // unix nanos of the first secondary-signed Done after deletion
	var deletedAt atomic.Int64
	var unsigned atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			done := make(chan *hsm.Request, 1)
			req := &hsm.Request{Done: func(r *hsm.Request) {
				if r.Err == nil && r.SignedBy == "pkcs11:fo-secondary" && deletedAt.Load() != 0 {
					firstNext.CompareAndSwap(0, time.Now().UnixNano())
				}
				done <- r
			}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req.Deadline = time.Time{}
				if c.Submit(req) != nil {
					unsigned.Add(1)
					continue
				}
				if r := <-done; r.Err != nil {
					unsigned.Add(1)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	deletedAt.Store(t0.UnixNano())
	a.Delete()
	delCmd := time.Since(t0)
	for i := 0; i < 500 && firstNext.Load() == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if firstNext.Load() == 0 {
		b.Fatal("no call signed by the secondary")
	}
	for b.Loop() {
	}
	b.ReportMetric(float64(delCmd.Microseconds())/1000, "delete-cmd-ms")
	b.ReportMetric(float64(firstNext.Load()-deletedAt.Load())/1e6, "failover-ms")
	b.ReportMetric(float64(unsigned.Load()), "unsigned")
}

func ecdsaKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}
