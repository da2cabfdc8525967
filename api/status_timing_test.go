package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The cost of the monitoring routes, in process, with the registry this
// test binary has (the API's own series plus the test series): one
// /metrics exposition with its le-bucket conversion, one sampler tick, one
// /status render. docs/METRICS.md quotes the numbers of a run with the
// whole appliance; these keep the proof in the repository:
//
//	go test -run '^$' -bench 'Exposition|StatusSample|StatusRender' -benchmem ./api/
func BenchmarkExposition(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		writeExposition(io.Discard)
	}
}

func BenchmarkStatusSample(b *testing.B) {
	st := &Status{}
	b.ReportAllocs()
	for b.Loop() {
		st.Sample()
	}
}

func BenchmarkStatusRender(b *testing.B) {
	clk := &fakeClock{t: time.Now()}
	st := &Status{Mode: "proxy", Version: "bench", Started: clk.t, Now: clk.now,
		Signers: func() []SignerStatus {
			return []SignerStatus{{Name: "hsm-a", Kind: "pkcs11", State: "closed", Ready: true, Sessions: 4}}
		}}
	// A full history: an hour of samples with traffic.
	for range hourSamples * hourEvery {
		clk.t = clk.t.Add(time.Second)
		tSigned.Add(200)
		tHSMSigned.Add(20)
		tHSMLat.Update(0.003)
		st.Sample()
	}
	s, err := New(Config{MonitorOnly: true, Status: st})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/status", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
