package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shakenline/shakenline/bench/loadgen"
	"github.com/shakenline/shakenline/bench/nethsm"
)

// Each fault of a network HSM (the lab's emulated one, bench/nethsm), with
// calls flowing through the appliance: the calls move to the next signer
// (the software key) and none leaves unsigned; clearing the fault brings
// them back to the HSM without a restart. The stale case (every session
// closed, the numbers handed out again, the key's old handle naming another
// key) must cost one recovery and no signature from another key.
func TestNetHSMFaultsThroughAppliance(t *testing.T) {
	mod := nethsm.Module(t)
	pki := labPKI(t)
	dir := t.TempDir()
	dev := netHSM(t, mod, dir, pki, nethsm.Config{Latency: 500 * time.Microsecond, Jitter: 100 * time.Microsecond,
		Capacity: 10000, Pool: 30000})
	sink := verifyingSink(t, pki)
	sip, api := freeUDP(t), freeTCP(t)
	cfg := filepath.Join(dir, "appliance.yaml")
	yaml := fmt.Sprintf(`sip: %s
next_hop: %s
api: %s
cert: %s
x5u: https://cert.example.net/sp.pem
attest: A
sign_budget: 500ms  # generous: the machine running the tests may be busy
signers:
  - name: hsm
    pkcs11: %q
    workers: 8
    timeout: 60ms
  - name: soft
    key: %s
`, sip, sink.Addr(), api, filepath.Join(pki, "sp.pem"), dev.URI(), filepath.Join(pki, "sp.key"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	startServe(t, "--config", cfg)
	g, err := loadgen.NewGenerator(loadgen.Config{Target: netip.MustParseAddrPort(sip), Sink: sink, Drain: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := &callFlow{t: t, g: g, api: api}
	f.until(ctx, "healthy", "hsm", 100)
	for _, fault := range []struct {
		name   string
		inject func() error
	}{
		{nethsm.DeviceError, func() error { return dev.Fault(ctx, nethsm.DeviceError) }},
		{nethsm.DeviceRemoved, func() error { return dev.Fault(ctx, nethsm.DeviceRemoved) }},
		{nethsm.SessionHandleInvalid, func() error { return dev.Fault(ctx, nethsm.SessionHandleInvalid) }},
		{nethsm.TokenNotPresent, func() error { return dev.Fault(ctx, nethsm.TokenNotPresent) }},
		{"hang", func() error { return dev.Hang(ctx) }},
		{"slow", func() error { return dev.Slow(ctx, 100*time.Millisecond) }},
	} {
		if err := fault.inject(); err != nil {
			t.Fatal(err)
		}
		f.until(ctx, fault.name, "soft", 100)
		if err := dev.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		f.until(ctx, fault.name+" cleared", "hsm", 100)
	}
	before, err := dev.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Stale(ctx); err != nil {
		t.Fatal(err)
	}
	f.until(ctx, "stale", "hsm", 200)
	after, err := dev.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := after.Logins - before.Logins; n != 1 || after.Closes != before.Closes {
		t.Errorf("stale: %d logins and %d closes of old handles, want one recovery", n, after.Closes-before.Closes)
	}
	f.check()
}

// netHSM makes an emulated network HSM (bench/nethsm) holding the lab
// provider key of pki, configured by cfg, for the appliance this test
// starts (NETHSM_CONF).
func netHSM(t *testing.T, mod, dir, pki string, cfg nethsm.Config) *nethsm.Device {
	t.Helper()
	cfg.KeyFile = filepath.Join(pki, "sp.key")
	dev, err := nethsm.NewDevice(dir, mod, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NETHSM_CONF", dev.Conf)
	t.Cleanup(func() { os.Remove(dev.Control) })
	return dev
}

// verifyingSink is a next hop on loopback that verifies every Identity
// header with the lab provider certificate of pki.
func verifyingSink(t *testing.T, pki string) *loadgen.Sink {
	t.Helper()
	sink, err := loadgen.NewSink(loadgen.SinkConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), VerifyKey: leafKey(t, pki), VerifyEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	return sink
}
