package kamailio

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/loadgen"
	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/tnauth"
)

// TestVerifyX5U: the verifying variant that fetches the certificate from
// the x5u (libsecsipid) and chains it to a CA file passes calls signed
// with the key of a lab certificate chaining to that root, and refuses
// them (438) against another root.
func TestVerifyX5U(t *testing.T) {
	prereq.Need(t, Available())
	dir := t.TempDir()
	h, err := labpki.NewHierarchy("", labpki.Options{SPC: "1234", ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Write(dir); err != nil {
		t.Fatal(err)
	}
	other, _ := labpki.NewHierarchy("other", labpki.Options{TNRanges: []tnauth.Range{{Start: "12155550000", Count: 100}}})
	_ = other.Write(filepath.Join(dir, "other"))
	chain := labpki.EncodeCerts(h.SP, h.Intermediate.Cert)
	repo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		_, _ = w.Write(chain)
	}))
	defer repo.Close()
	for _, tc := range []struct {
		name, ca string
		passed   bool
	}{{"lab root", filepath.Join(dir, "root.pem"), true}, {"other root", filepath.Join(dir, "other", "root.pem"), false}} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newSink(t, loadgen.SinkConfig{})
			verifier := start(t, Options{NextHop: sink.Addr(), VerifyCAFile: tc.ca, Workers: 1})
			signer := start(t, Options{NextHop: verifier.Addr(), Sign: true, KeyPath: filepath.Join(dir, "sp.key"), X5U: repo.URL + "/sp.pem"})
			const calls = 10
			g, err := loadgen.NewGenerator(loadgen.Config{Target: signer.Addr(), Local: labLoopback, Sink: sink, Sockets: 2, Drain: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = g.Close() })
			res, err := g.Run(context.Background(), loadgen.Load{Rate: 100, Count: calls, Duration: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if tc.passed && (res.Received != calls || res.Answered != calls) {
				t.Fatalf("chain to the lab root: %v\n%s", res, verifier.Log())
			}
			if !tc.passed && (res.Received != 0 || res.Failed != calls) {
				t.Fatalf("another root: want %d calls refused (438), got %v", calls, res)
			}
		})
	}
}
