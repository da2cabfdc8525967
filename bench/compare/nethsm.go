package compare

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shakenline/shakenline/bench/nethsm"
)

// HSMModel is the device of an emulated network HSM row (bench/nethsm):
// every C_Sign answers Latency + U[0, Jitter) after it is made, and the
// device signs at most Capacity signatures a second for all sessions.
type HSMModel struct {
	Latency  time.Duration `json:"latency_ns"`
	Jitter   time.Duration `json:"jitter_ns"`
	Capacity int           `json:"capacity"` // signatures/s
}

// Workers is the signers[].workers the row gives the appliance: one PKCS#11
// session per request in flight at full capacity (Little's law: capacity ×
// the device's worst latency), half as many again for the hand-offs around
// each call, and a floor of 8.
func (m HSMModel) Workers() int {
	inFlight := float64(m.Capacity) * (m.Latency + m.Jitter).Seconds()
	return min(max(int(math.Ceil(1.5*inFlight))+4, 8), 256)
}

// SLOMicros is the row's latency objective: the device's worst latency
// plus the 1 ms every other setup gets.
func (m HSMModel) SLOMicros() float64 {
	return float64((m.Latency + m.Jitter).Microseconds()) + sloMicros
}

// hsmRows are the emulated network HSM rows: 0.3, 1 and 2 ms at 10,000 and
// 20,000 signatures/s, jitter a tenth of the latency.
func hsmRows() []Setup {
	var out []Setup
	for _, lat := range []time.Duration{300 * time.Microsecond, time.Millisecond, 2 * time.Millisecond} {
		for _, capacity := range []int{10000, 20000} {
			m := HSMModel{Latency: lat, Jitter: lat / 10, Capacity: capacity}
			out = append(out, Setup{
				Name:  fmt.Sprintf("appliance-sign-nethsm-%dus-%dk", lat.Microseconds(), capacity/1000),
				Title: fmt.Sprintf("appliance, signing, emulated network HSM %.1f ms, %d sig/s", float64(lat.Microseconds())/1000, capacity),
				SUT:   "appliance", Key: "nethsm", Signs: true, HSM: &m, AllCPUs: true,
				// The ramp starts near the device's capacity: below it
				// there is nothing to learn, and every signature there
				// spends a precomputed nonce.
				Start: 0.4 * float64(capacity),
			})
		}
	}
	return out
}

// device is a row's emulated HSM, ready for the appliance.
type device struct {
	dev  *nethsm.Device
	conf string // the appliance's YAML configuration (the signer chain)
}

// poolSeconds is how many seconds of signing at full capacity a row's
// nonce pool holds: the ramp from 40 % of capacity, its bisection, the run
// at 80 %, and the SLO bisection. Past the pool, C_Sign computes its nonce
// on the spot (counted: pool_misses in the report).
func poolSeconds(p Params) float64 {
	return 10*p.StepDuration.Seconds() + p.Fixed.Seconds() + 2*p.Warmup.Seconds() + 5*p.StepDuration.Seconds()
}

// makeDevice builds the module (once), writes the row's device
// configuration and the appliance's signer chain into l.dir.
func makeDevice(l *lab, s Setup, p Params) (*device, error) {
	mod, err := nethsm.Cached()
	if err != nil {
		return nil, fmt.Errorf("compare: %w (make deps installs gcc, libssl-dev, libp11-kit-dev)", err)
	}
	dir := filepath.Join(l.dir, s.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	m := s.HSM
	w := m.Workers()
	dev, err := nethsm.NewDevice(dir, mod, nethsm.Config{
		KeyFile: l.key, Latency: m.Latency, Jitter: m.Jitter, Capacity: m.Capacity,
		MaxSessions: w + 8, Pool: int(float64(m.Capacity) * poolSeconds(p)), PoolThreads: 2,
	})
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	conf := filepath.Join(dir, "appliance.yaml")
	body := "signers:\n  - name: nethsm\n    pkcs11: " + strconv.Quote(dev.URI()) + "\n    workers: " + strconv.Itoa(w) + "\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	return &device{dev: dev, conf: conf}, nil
}

// waitPool waits for the device's nonce pool, which the module fills in
// two threads from C_Initialize on: the measured run spends none of the
// host's CPU on k·G.
func (d *device) waitPool(ctx context.Context) error {
	c, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return d.dev.WaitPool(c)
}
