package interop

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shakenline/shakenline/internal/netns"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/labsti"
	"github.com/shakenline/shakenline/tnauth"
)

//go:embed kamailio.cfg
var kamailioCfg []byte

// Ports on every carrier host.
const (
	portOut  = 5060 // originating proxy (signer)
	portIn   = 5070 // terminating proxy (verifier)
	portUAS  = 5080 // the carrier's switch
	portUAC  = 5062 // SBC trunks
	portHTTP = 8080 // x5u certificate repository; CRLs on the core host
	portAPI  = 9090 // the terminating appliance's API (/metrics)
)

// Config of a run.
type Config struct {
	Appliance   string    // path of the appliance binary (required)
	WorkDir     string    // certificates, configs, logs; default a new temporary directory
	Carriers    []Carrier // default DefaultCarriers()
	Concurrency int       // calls in flight, default 8
	Log         io.Writer // progress; default io.Discard
}

// Outcome is what happened to a call.
type Outcome struct {
	Delivered bool
	Code      int    // final response code
	Reason    string // Reason header of a rejection (RFC 9410)
	Verstat   string
	Attest    string
	OrigTN    string
	Name      string // the display name of the caller's identity (verified Rich Call Data)
	Logo      bool   // a Call-Info purpose=icon marked verified
	Err       string
}

// CallResult is a planned call with its outcome.
type CallResult struct {
	Call
	Got     Outcome
	Pass    bool
	Latency time.Duration
	CallID  string
	Trace   CallTrace // where the setup time went (trace.go)
}

// CounterCheck compares a terminating verifier's own result counters
// (shakenline_verify_results_total on its /metrics) with the results the
// plan expects of it: at annotating carriers this checks the SIP code
// behind each TN-Validation-Failed, which the verstat alone does not show.
type CounterCheck struct {
	Carrier string
	Result  string // verstat/code
	Want    int
	Got     int
	Pass    bool
}

// Timings of the phases of a run.
type Timings struct {
	PKI, Network, Processes, Calls, Teardown, Total time.Duration
}

// Result of a run.
type Result struct {
	Started  time.Time
	Carriers []Carrier
	Calls    []CallResult
	Timings  Timings
	Logs     string // directory with the processes' logs
	// Governance records what the policy administrators and CAs issued.
	Governance []IssueRecord
	Counters   []CounterCheck
}

// IssueRecord is one certificate the lab governance issued.
type IssueRecord struct {
	Carrier, PA, CA, SPC, TNAuthList, Kind string
	NotAfter                               time.Time
}

// Failed counts the calls whose outcome differs from the expected one.
func (r *Result) Failed() int {
	n := 0
	for _, c := range r.Calls {
		if !c.Pass {
			n++
		}
	}
	return n
}

// CountersFailed counts verifier counter checks that do not match.
func (r *Result) CountersFailed() int {
	n := 0
	for _, c := range r.Counters {
		if !c.Pass {
			n++
		}
	}
	return n
}

// carrierHost is everything the run keeps per carrier.
type carrierHost struct {
	Carrier
	idx                   int
	ns                    *netns.NS
	dir                   string
	cred, expired, revoke *Credential // the runner's, for pre-signed calls
	spc                   string
	tn                    tnauth.List
	account               labsti.Account // at the carrier's STI-PA
	uas                   *uas
	uacs                  map[byte]*uac
	repo                  *fileSet // its http repository: certificates and brand logos
}

func (h *carrierHost) addr() netip.Addr { return hostAddr(h.idx) }
func (h *carrierHost) x5u(file string) string {
	return fmt.Sprintf("http://%s:%d/%s", h.addr(), portHTTP, file)
}

// Run builds the lab, places every planned call, tears the lab down and
// returns the results. An error means the lab could not be built or run;
// calls that end otherwise than expected are in the Result (Failed).
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.Appliance == "" {
		return nil, fmt.Errorf("%w: Config.Appliance", ErrPrereq)
	}
	if cfg.Carriers == nil {
		cfg.Carriers = DefaultCarriers()
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	needKam := slices.ContainsFunc(cfg.Carriers, func(c Carrier) bool { return c.Signer == SignerKamailio })
	if err := Prereqs(needKam); err != nil {
		return nil, err
	}
	if cfg.WorkDir == "" {
		if cfg.WorkDir, err = os.MkdirTemp("", "shakenline-interop-"); err != nil {
			return nil, fmt.Errorf("interop: %w", err)
		}
	}
	logf := func(f string, a ...any) { fmt.Fprintf(cfg.Log, "interop: "+f+"\n", a...) }
	res = &Result{Started: time.Now(), Carriers: cfg.Carriers, Logs: filepath.Join(cfg.WorkDir, "logs")}
	if err := os.MkdirAll(res.Logs, 0o755); err != nil {
		return nil, fmt.Errorf("interop: %w", err)
	}

	// 1. Governance and PKI.
	t0 := time.Now()
	hosts, auths, err := buildPKI(cfg, res)
	if err != nil {
		return nil, err
	}
	res.Timings.PKI = time.Since(t0)
	logf("PKI: %d CAs, %d carriers, in %v", len(auths), len(hosts), res.Timings.PKI.Round(time.Millisecond))

	// 2. Network.
	t1 := time.Now()
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	lb, err := newLab(names)
	if err != nil {
		return nil, err
	}
	var closers []func()
	defer func() {
		t := time.Now()
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		if cerr := lb.close(); cerr != nil && err == nil {
			err = cerr
		}
		res.Timings.Teardown = time.Since(t)
		res.Timings.Total = time.Since(res.Started)
		logf("teardown in %v", res.Timings.Teardown.Round(time.Millisecond))
	}()
	for _, h := range hosts {
		h.ns = lb.hosts[h.Name]
	}
	res.Timings.Network = time.Since(t1)
	logf("network: %d namespaces in %v", len(hosts)+1, res.Timings.Network.Round(time.Millisecond))

	// 3. Repositories, switches, trunks, proxies.
	t2 := time.Now()
	crls := map[string][]byte{}
	for _, a := range auths {
		root, issuing, err := a.CRLs()
		if err != nil {
			return res, err
		}
		crls["/crl/"+strings.ToLower(string(a.Jurisdiction))+"-root.crl"] = root
		crls["/crl/"+strings.ToLower(string(a.Jurisdiction))+".crl"] = issuing
	}
	stop, err := serveFiles(lb.core, netip.AddrPortFrom(coreAddr, portHTTP), crls, "application/pkix-crl", "")
	if err != nil {
		return res, err
	}
	closers = append(closers, stop)
	gov, stop, err := startGovernance(cfg, lb, hosts, auths, res)
	if err != nil {
		return res, err
	}
	closers = append(closers, stop)
	for _, h := range hosts {
		h.repo = &fileSet{files: map[string][]byte{
			"/sp.pem":      labpki.EncodeCerts(h.cred.Chain...),
			"/expired.pem": labpki.EncodeCerts(h.expired.Chain...),
			"/revoked.pem": labpki.EncodeCerts(h.revoke.Chain...),
			// Brand logos (Rich Call Data): the signer digests them when it
			// loads its policy; brand-changing.png changes afterwards.
			"/brand.png":          []byte("PNG " + h.Display),
			"/brand-changing.png": []byte("PNG " + h.Display + " as signed"),
		}}
		stop, err := serveFileSet(h.ns, netip.AddrPortFrom(h.addr(), portHTTP), h.repo, "application/pem-certificate-chain", filepath.Join(h.dir, "x5u"))
		if err != nil {
			return res, err
		}
		closers = append(closers, stop)
		if h.uas, err = newUAS(h.ns, netip.AddrPortFrom(h.addr(), portUAS)); err != nil {
			return res, err
		}
		closers = append(closers, h.uas.close)
		h.uacs = map[byte]*uac{}
		for _, t := range []byte("ABCN") {
			u, err := newUAC(h.ns, netip.AddrPortFrom(trunkAddr(h.idx, t), portUAC))
			if err != nil {
				return res, err
			}
			closers = append(closers, u.close)
			h.uacs[t] = u
		}
		if err := startProxies(ctx, cfg, lb, gov, h, res.Logs); err != nil {
			return res, err
		}
	}
	res.Timings.Processes = time.Since(t2)
	logf("hosts up in %v", res.Timings.Processes.Round(time.Millisecond))

	// 4. Calls, traced on the bridge. Every signer has digested its brand
	// logos by now (it listens only once its policy loaded): one of them
	// changes.
	for _, h := range hosts {
		h.repo.set("/brand-changing.png", []byte("PNG "+h.Display+" replaced after signing"))
	}
	tr, err := startTracer(lb.core)
	if err != nil {
		return res, err
	}
	closers = append(closers, tr.close)
	t3 := time.Now()
	plan := Plan(cfg.Carriers)
	byName := map[string]*carrierHost{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	res.Calls = make([]CallResult, len(plan))
	var seq []int // replay pairs run in order after the rest
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				res.Calls[i] = place(plan[i], byName)
			}
		}()
	}
	replayID := map[string]string{} // term -> Identity of its replay-first
	// Placed in a shuffled order (fixed seed: every run the same): in plan
	// order the appliance signers' calls reached each terminating verifier
	// first, so they alone paid its first x5u and CRL fetches and its first
	// datagram, and the setup times compared the signers' position in the
	// plan rather than the signers (trace.go showed it).
	order := mrand.New(mrand.NewPCG(21, 8224)).Perm(len(plan))
	for _, i := range order {
		c := plan[i]
		if c.Kind == KindReplayFirst || c.Kind == KindReplay {
			continue
		}
		work <- i
	}
	for i, c := range plan {
		if c.Kind == KindReplayFirst || c.Kind == KindReplay {
			seq = append(seq, i)
		}
	}
	close(work)
	wg.Wait()
	for _, i := range seq {
		c := plan[i]
		if c.Kind == KindReplayFirst {
			res.Calls[i] = place(c, byName)
			replayID[c.Term] = lastIdentity(c, byName)
			continue
		}
		res.Calls[i] = placeWith(c, byName, replayID[c.Term])
	}
	res.Timings.Calls = time.Since(t3)
	time.Sleep(50 * time.Millisecond) // the tracer reads the last frames
	for i := range res.Calls {
		c := &res.Calls[i]
		if t := byName[c.Term]; t != nil {
			tr.fill(&c.Trace, c.CallID, t.addr())
		}
	}
	for _, h := range hosts {
		checks, err := checkCounters(h, res.Calls)
		if err != nil {
			return res, err
		}
		res.Counters = append(res.Counters, checks...)
	}
	logf("%d calls in %v, %d differ from the expected outcome", len(plan), res.Timings.Calls.Round(time.Millisecond), res.Failed())
	return res, nil
}

// startProxies starts the carrier's terminating verifier (appliance) and
// its originating signer (appliance or Kamailio+secsipid). The appliances
// obtain the carrier's certificates from its CA through ACME at start
// (acme:, the carrier's STI-PA account); Kamailio, which has no ACME
// client, signs with the key and certificate the verifier obtained.
func startProxies(ctx context.Context, cfg Config, lb *lab, gov *governance, h *carrierHost, logs string) error {
	key := filepath.Join(h.dir, "sp.key") // names the chain's (software) link; the key itself comes through ACME
	trunk := func(t byte) string { return trunkAddr(h.idx, t).String() + "/32" }
	var trust []string
	for _, j := range h.Trusts {
		trust = append(trust, fmt.Sprintf("%s=%s", j, filepath.Join(cfg.WorkDir, "trust", string(j)+".pem")))
	}
	action := "verify"
	if h.Reject {
		action = "verify-reject"
	}
	inCfg := fmt.Sprintf("policy:\n  default: C\n  rules:\n    - name: interconnect\n      action: %s\n", action) +
		gov.acmeConfig(cfg, h, "in", false)
	inPath := filepath.Join(h.dir, "inbound.yaml")
	if err := os.WriteFile(inPath, []byte(inCfg), 0o644); err != nil {
		return fmt.Errorf("interop: %w", err)
	}
	in := netip.AddrPortFrom(h.addr(), portIn)
	if _, err := lb.start(ctx, h.Name+"-verifier", h.ns, filepath.Join(logs, h.Name+"-verifier.log"), portIn,
		cfg.Appliance, "serve", "--config", inPath, "--sip", in.String(),
		"--next-hop", netip.AddrPortFrom(h.addr(), portUAS).String(),
		"--key", key, "--trust", strings.Join(trust, ","),
		"--api", netip.AddrPortFrom(h.addr(), portAPI).String(),
		"--lab", "--default-country", h.Home, "--loops", "1"); err != nil {
		return err
	}
	out := netip.AddrPortFrom(h.addr(), portOut)
	if h.Signer == SignerKamailio {
		x5u, kkey, err := acmeCurrent(h, "in")
		if err != nil {
			return err
		}
		run := filepath.Join(h.dir, "kamailio")
		if err := os.MkdirAll(run, 0o755); err != nil {
			return fmt.Errorf("interop: %w", err)
		}
		kcfg := filepath.Join(run, "kamailio.cfg")
		if err := os.WriteFile(kcfg, kamailioCfg, 0o644); err != nil {
			return fmt.Errorf("interop: %w", err)
		}
		kam := "/usr/sbin/kamailio"
		_, err = lb.start(ctx, h.Name+"-kamailio", h.ns, filepath.Join(logs, h.Name+"-kamailio.log"), portOut,
			kam, "-DD", "-E", "-f", kcfg, "-l", "udp:"+out.String(), "-n", "2", "-Y", run, "-w", run, "-m", "64", "-M", "8",
			"-A", `KEYPATH="`+kkey+`"`, "-A", `X5U="`+x5u+`"`,
			"-A", `SRC_A="`+trunkAddr(h.idx, 'A').String()+`"`, "-A", `SRC_B="`+trunkAddr(h.idx, 'B').String()+`"`,
			"-A", `SRC_N="`+trunkAddr(h.idx, 'N').String()+`"`)
		if err == nil {
			time.Sleep(200 * time.Millisecond) // workers fork after the main process binds
		}
		return err
	}
	// The retail trunk also forwards calls (div PASSporTs for the
	// diversions it performs, docs/STANDARDS.md "div"); the brand numbers
	// carry Rich Call Data ("rcd"), names quoted for YAML.
	brands := ""
	for _, b := range []struct{ name, file string }{{"brand", "brand.png"}, {"brand-changing", "brand-changing.png"}} {
		n := BrandNumber(h.Carrier)
		if b.name == "brand-changing" {
			n = BrandChangingNumber(h.Carrier)
		}
		brands += fmt.Sprintf("    - {name: %s, action: sign, attest: A, sources: [%s], numbers: [\"+%s\"], div: true, rcd: {nam: %q, icn: %q}}\n",
			b.name, trunk('A'), n.TN, h.Display, h.x5u(b.file))
	}
	outCfg := fmt.Sprintf(`policy:
  default: C
  rules:
%s    - {name: retail-trunk, action: sign, attest: A, sources: [%s], div: true}
    - {name: wholesale-trunk, action: sign, attest: B, sources: [%s]}
    - {name: gateway-trunk, action: sign, attest: C, sources: [%s]}
    - {name: legacy-tdm, action: forward, sources: [%s]}
`, brands, trunk('A'), trunk('B'), trunk('C'), trunk('N')) + gov.acmeConfig(cfg, h, "out", true)
	outPath := filepath.Join(h.dir, "outbound.yaml")
	if err := os.WriteFile(outPath, []byte(outCfg), 0o644); err != nil {
		return fmt.Errorf("interop: %w", err)
	}
	_, err := lb.start(ctx, h.Name+"-signer", h.ns, filepath.Join(logs, h.Name+"-signer.log"), portOut,
		cfg.Appliance, "serve", "--config", outPath, "--sip", out.String(),
		"--key", key,
		"--lab", "--default-country", h.Home, "--loops", "1")
	return err
}
