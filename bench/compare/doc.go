// Package compare runs the side-by-side benchmark behind `make bench`
// (bench/run.sh) and turns its raw data into the reports in bench/results/:
// a full run's raw data and its own report stay in its run directory,
// which git ignores; only bench/results/latest.md (the newest run's report,
// detached from the raw data) and bench/results/history.md (one row per
// run, UpdateHistory) are committed. Its command is cmd/shakecompare
// (bin/shakecompare):
//
//	shakecompare run    --appliance bin/appliance --out DIR [--quick] [--latest FILE] [--history FILE]
//	shakecompare report --out DIR [--latest FILE] [--history FILE]
//	shakecompare stalls [--seconds N]
//
// # What it owns
//
// Orchestration: a lab PKI and a softhsm2 token in a temporary directory;
// then, one setup at a time, the system under test (the appliance with a
// software key, the appliance through softhsm2, Kamailio + secsipid signing,
// and both forwarding only) pinned to its own core with taskset, the
// in-process generator and sink of package bench/loadgen pinned to
// another, a rate ramp until loss passes 0.1 %, and a fixed-rate run at 80 %
// of the highest clean rate during which the system's CPU time is read from
// /proc and (for the appliance) perf samples it. Beside them, on the same
// core and in the same run: `openssl speed ecdsap256` and the raw softhsm2
// C_Sign benchmark of package bench/hsmraw.
//
// The remote HSM setup (RemoteSetup) reverses the cores: a `p11-kit server`
// process loading softhsm2 (the "HSM", hsmserver.go) gets the SUT core and
// the appliance, with p11-kit-client.so, shares the generator's core; its
// raw baseline is bench/hsmraw's BenchmarkRemote in the same layout.
//
// The emulated network HSM rows (nethsm.go, HSMModel) sign through the
// PKCS#11 module of package bench/nethsm at 0.3, 1 and 2 ms and 10,000 and
// 20,000 signatures/s: the module is built once per run, each row gets its
// device configuration and an appliance signer chain whose workers follow
// Little's law, waits for the module's nonce pool before its warm-up, and
// records the device's counters at the end. They run the appliance on both
// cores, shared with the generator and the sink, and start their ramp at
// 40 % of the device's capacity.
//
// Every setup also gets the highest rate at its latency objective (slo.go:
// p99 within 1 ms, an HSM row's within the device's latency plus 1 ms, loss
// within 0.1 %), bracketed by the ramp's steps and bisected like the clean
// rate.
//
// Forward-only setups: the appliance has no switch to turn signing off, so
// those setups send the same generator's INVITEs through an in-process
// relay (Anonymize) that rewrites From to sip:anonymous@anonymous.invalid
// and drops P-Asserted-Identity. The appliance forwards such INVITEs
// unsigned through the same parse/stamp/send path; Kamailio's forward-only
// setup gets the same relay so both baselines pay the same extra hop, and a
// relay floor (generator, relay, sink, no proxy) measures that hop.
//
// Analysis: every step result is written as a JSON line in the format of
// `shakebench step --json`; ParseSteps, ParseOpenSSLSpeed, ParseGoBench and
// ParsePerfReport read the raw outputs back, and report writes the Markdown
// table, the goals, the profile summary and gnuplot PNGs from files alone,
// so `shakecompare report` can redo a report without rerunning anything.
//
// # Concurrency
//
// Setups run one after another, never together. Inside a setup the
// generator, sink and relay goroutines share the generator core.
//
// # Limits
//
// Linux only (taskset, /proc, perf), loopback only, root for softhsm2 token
// files in /tmp only by convention. CPU time comes from /proc/PID/stat at
// clock-tick resolution (10 ms), so fixed runs last seconds. Nothing here
// asserts a speed: the goals are reported, not enforced.
package compare
