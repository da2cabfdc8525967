package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/shakenline/shakenline/api"
)

// certInUse is the signing certificate the appliance uses now. Everything
// that shows it (the shakenline_cert_* gauges, GET /status) reads it here,
// so a renewal that swaps the certificate at run time (ACME) stores the new
// leaf with Store and every view follows.
type certInUse struct {
	p atomic.Pointer[x509.Certificate]
}

func (c *certInUse) Load() *x509.Certificate   { return c.p.Load() }
func (c *certInUse) Store(x *x509.Certificate) { c.p.Store(x) }

// serving is the appliance whose state the process-wide gauges report
// (one serves per process; in-process tests run several in turn).
var (
	serving        atomic.Pointer[appliance]
	registerGauges sync.Once
)

// readyEvery is how often the readiness checks run for the shakenline_ready
// gauges and GET /status (each run of the signer check is a real probe
// signature). /readyz runs them itself on every request.
const readyEvery = 2 * time.Second

// observe makes a the appliance the gauges report, registers the gauges'
// writer once per process and evaluates the readiness checks now and every
// readyEvery, so that neither a scrape nor a status render waits for a
// probe. The returned func stops that and withdraws a.
func (a *appliance) observe() func() {
	registerGauges.Do(func() { metrics.RegisterMetricsWriter(writeApplianceMetrics) })
	a.evalReady()
	serving.Store(a)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(readyEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				a.evalReady()
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		serving.CompareAndSwap(a, nil)
	}
}

func (a *appliance) evalReady() {
	checks := a.readyChecks()
	res := make([]api.CheckResult, len(checks))
	for i, c := range checks {
		res[i] = api.CheckResult{Name: c.Name, Err: c.Fn()}
	}
	a.lastReady.Store(&res)
}

// readyResults are the latest readiness results (nil before the first).
func (a *appliance) readyResults() []api.CheckResult {
	if r := a.lastReady.Load(); r != nil {
		return *r
	}
	return nil
}

// writeApplianceMetrics writes the gauges docs/METRICS.md lists under
// "appliance state": build info, certificate validity, readiness per check,
// the signer chain's order and kinds, and XDP attachment per interface.
func writeApplianceMetrics(w io.Writer) {
	a := serving.Load()
	if a == nil {
		return
	}
	metrics.WriteGaugeUint64(w, fmt.Sprintf(`shakenline_build_info{version=%q,mode=%q}`, version, a.cfg.Mode), 1)
	if c := a.cert.Load(); c != nil {
		metrics.WriteGaugeUint64(w, "shakenline_cert_not_after_seconds", uint64(c.NotAfter.Unix()))
		metrics.WriteGaugeUint64(w, "shakenline_cert_not_before_seconds", uint64(max(c.NotBefore.Unix(), 0)))
	}
	for _, c := range a.readyResults() {
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`shakenline_ready{check=%q}`, c.Name), b2u(c.Err == nil))
	}
	if ch := a.chain(); ch != nil {
		for i, h := range ch.Health() {
			metrics.WriteGaugeUint64(w, fmt.Sprintf(`shakenline_signer_info{signer=%q,kind=%q,position="%d"}`,
				h.Name, a.signerKind(i), i+1), 1)
		}
	}
	for _, x := range a.xdpStatus() {
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`shakenline_xdp_attached{iface=%q,mode=%q}`, x.Name, x.Mode), b2u(x.Attached && x.Err == ""))
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`shakenline_xdp_fail_open{iface=%q}`, x.Name), b2u(x.FailOpen || x.Err != ""))
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// readyChecks are the /readyz conditions: the policy is loaded, plus
// signerReady's. api.New adds the same policy check to the API's own list.
func (a *appliance) readyChecks() []api.Check {
	pol := api.Check{Name: "policy", Fn: func() error {
		if a.policy == nil || a.policy.Load() == nil {
			return fmt.Errorf("no policy loaded")
		}
		return nil
	}}
	return append([]api.Check{pol}, a.ready...)
}

// signerKind is "pkcs11" or "software" for link i of the chain.
func (a *appliance) signerKind(i int) string {
	links := a.cfg.Signers
	switch {
	case len(links) > 0:
		if i < len(links) && links[i].PKCS11 != "" {
			return "pkcs11"
		}
		return "software"
	case a.cfg.PKCS11 != "":
		return "pkcs11"
	}
	return "software"
}

// xdpStatus is the inline mode's per-interface state (nil in other modes).
func (a *appliance) xdpStatus() []api.XDPStatus {
	st := a.steering
	if st == nil {
		return nil
	}
	attached := st.Attached()
	if attached == nil { // closed: the appliance is stopping
		return nil
	}
	modes := st.Modes()
	counters, cerr := st.Counters()
	age, stale, enabled, herr := st.HeartbeatAge()
	names := make([]string, 0, len(attached))
	for n := range attached {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]api.XDPStatus, 0, len(names))
	for _, n := range names {
		x := api.XDPStatus{Name: n, Mode: modes[n], Attached: attached[n]}
		x.FailOpen = !x.Attached || !enabled || age > stale
		if c, ok := counters[n]; ok {
			x.Steered = c.Steered()
		}
		switch {
		case cerr != nil:
			x.Err = "counters unreadable: " + cerr.Error()
		case herr != nil:
			x.Err = "heartbeat unreadable: " + herr.Error()
		}
		out = append(out, x)
	}
	return out
}

// newStatus is the GET /status view of a.
func newStatus(a *appliance, started time.Time) *api.Status {
	node, _ := os.Hostname()
	st := &api.Status{Node: node, Mode: a.cfg.Mode, Version: version, Started: started, Cert: a.cert.Load,
		Ready: a.readyResults}
	if m := a.acme; m != nil {
		st.Renewal = func() *api.RenewalStatus {
			s := m.Status()
			return &api.RenewalStatus{NextAttempt: s.NextAttempt, LastSuccess: s.LastSuccess, Failures: s.Failures,
				ErrorStage: s.ErrorStage, LastError: s.LastError}
		}
	}
	st.Signers = func() []api.SignerStatus {
		ch := a.chain() // the chain of the credential in use: it follows a renewal
		if ch == nil {
			return nil
		}
		hs := ch.Health()
		out := make([]api.SignerStatus, len(hs))
		for i, h := range hs {
			out[i] = api.SignerStatus{Name: h.Name, Kind: a.signerKind(i), State: h.State, Ready: h.Ready,
				Sessions: h.Sessions, Queue: h.Queue, LastError: h.LastError}
		}
		return out
	}
	if a.steering != nil {
		st.XDP = a.xdpStatus
	}
	return st
}
