package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
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
	Err       string
}

// CallResult is a planned call with its outcome.
type CallResult struct {
	Call
	Got     Outcome
	Pass    bool
	Latency time.Duration
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
	ns                    netns
	dir                   string
	cred, expired, revoke *Credential
	uas                   *uas
	uacs                  map[byte]*uac
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
	stop, err := serveFiles(lb.core, netip.AddrPortFrom(coreAddr, portHTTP), crls, "application/pkix-crl")
	if err != nil {
		return res, err
	}
	closers = append(closers, stop)
	for _, h := range hosts {
		files := map[string][]byte{
			"/sp.pem":      labpki.EncodeCerts(h.cred.Chain...),
			"/expired.pem": labpki.EncodeCerts(h.expired.Chain...),
			"/revoked.pem": labpki.EncodeCerts(h.revoke.Chain...),
		}
		stop, err := serveFiles(h.ns, netip.AddrPortFrom(h.addr(), portHTTP), files, "application/pem-certificate-chain")
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
		if err := startProxies(ctx, cfg, lb, h, res.Logs); err != nil {
			return res, err
		}
	}
	res.Timings.Processes = time.Since(t2)
	logf("hosts up in %v", res.Timings.Processes.Round(time.Millisecond))

	// 4. Calls.
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
	for i, c := range plan {
		if c.Kind == KindReplayFirst || c.Kind == KindReplay {
			seq = append(seq, i)
			continue
		}
		work <- i
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

// buildPKI makes the policy administrators, the CAs and every carrier's
// credentials, and writes certificates, keys and trust stores.
func buildPKI(cfg Config, res *Result) ([]*carrierHost, map[Jurisdiction]*Authority, error) {
	now := time.Now()
	auths := map[Jurisdiction]*Authority{}
	pas := map[Jurisdiction]*PolicyAdministrator{}
	need := map[Jurisdiction]bool{}
	for _, c := range cfg.Carriers {
		need[c.CA] = true
		for _, t := range c.Trusts {
			need[t] = true
		}
	}
	for j := range need {
		name, prefix, caName := string(j)+" STI-PA", string(j), string(j)+" STI-CA"
		if j == Global {
			name, prefix, caName = "Global Policy Administrator (G-PA)", "G", "Global CA (G-CA)"
		}
		pa, err := NewPolicyAdministrator(name, j, prefix)
		if err != nil {
			return nil, nil, err
		}
		a, err := NewAuthority(caName, pa, fmt.Sprintf("http://%s:%d/crl/%s", coreAddr, portHTTP, strings.ToLower(string(j))))
		if err != nil {
			return nil, nil, err
		}
		pas[j], auths[j] = pa, a
	}
	trustDir := filepath.Join(cfg.WorkDir, "trust")
	if err := os.MkdirAll(trustDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("interop: %w", err)
	}
	for j, a := range auths {
		if err := labpki.WriteCerts(filepath.Join(trustDir, string(j)+".pem"), a.Root.Cert); err != nil {
			return nil, nil, err
		}
	}
	var hosts []*carrierHost
	for i, c := range cfg.Carriers {
		h := &carrierHost{Carrier: c, idx: i + 1, dir: filepath.Join(cfg.WorkDir, c.Name)}
		if err := os.MkdirAll(h.dir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("interop: %w", err)
		}
		a, pa := auths[c.CA], pas[c.CA]
		account, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("interop: %w", err)
		}
		spc := pa.AssignSPC()
		tl := tnauth.List{SPCs: []string{spc}}
		if c.TNRange {
			tl = tnauth.List{}
			for _, s := range TNRanges(c) {
				tl.Ranges = append(tl.Ranges, tnauth.Range{Start: s, Count: 100})
			}
		}
		tok, err := pa.Token(tl, &account.PublicKey, now, time.Hour)
		if err != nil {
			return nil, nil, err
		}
		issue := func(kind string, nb, na time.Time) (*Credential, error) {
			cr, err := a.Issue(tok, &account.PublicKey, now, nb, na)
			if err != nil {
				return nil, fmt.Errorf("interop: %s certificate for %s: %w", kind, c.Name, err)
			}
			res.Governance = append(res.Governance, IssueRecord{Carrier: c.Name, PA: pa.Name, CA: a.Name, SPC: spc,
				TNAuthList: describeTN(cr.TN), Kind: kind, NotAfter: na})
			return cr, nil
		}
		if h.cred, err = issue("current", now.Add(-time.Hour), now.Add(90*24*time.Hour)); err != nil {
			return nil, nil, err
		}
		if h.expired, err = issue("expired", now.Add(-60*24*time.Hour), now.Add(-24*time.Hour)); err != nil {
			return nil, nil, err
		}
		if h.revoke, err = issue("revoked", now.Add(-time.Hour), now.Add(90*24*time.Hour)); err != nil {
			return nil, nil, err
		}
		a.Revoke(h.revoke.Chain[0])
		if err := labpki.WriteCerts(filepath.Join(h.dir, "sp.pem"), h.cred.Chain...); err != nil {
			return nil, nil, err
		}
		if err := labpki.WriteKey(filepath.Join(h.dir, "sp.key"), h.cred.Key); err != nil {
			return nil, nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, auths, nil
}

func describeTN(l tnauth.List) string {
	var parts []string
	for _, s := range l.SPCs {
		parts = append(parts, "SPC "+s)
	}
	for _, r := range l.Ranges {
		parts = append(parts, fmt.Sprintf("+%s..+%d", r.Start, mustUint(r.Start)+uint64(r.Count)-1))
	}
	for _, t := range l.TNs {
		parts = append(parts, "+"+t)
	}
	return strings.Join(parts, ", ")
}

func mustUint(s string) uint64 {
	n, _ := new(big.Int).SetString(s, 10)
	if n == nil {
		return 0
	}
	return n.Uint64()
}

// serveFiles serves files over http on addr inside ns until stop.
func serveFiles(ns netns, addr netip.AddrPort, files map[string][]byte, ctype string) (stop func(), err error) {
	var ln net.Listener
	if err := ns.do(func() error {
		var err error
		ln, err = net.Listen("tcp4", addr.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("interop: http %s: %w", addr, err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, ok := files[r.URL.Path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Cache-Control", "max-age=3600")
			_, _ = w.Write(b)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// startProxies starts the carrier's originating signer (appliance or
// Kamailio+secsipid) and its terminating verifier (appliance).
func startProxies(ctx context.Context, cfg Config, lb *lab, h *carrierHost, logs string) error {
	key, cert := filepath.Join(h.dir, "sp.key"), filepath.Join(h.dir, "sp.pem")
	trunk := func(t byte) string { return trunkAddr(h.idx, t).String() + "/32" }
	var trust []string
	for _, j := range h.Trusts {
		trust = append(trust, fmt.Sprintf("%s=%s", j, filepath.Join(cfg.WorkDir, "trust", string(j)+".pem")))
	}
	action := "verify"
	if h.Reject {
		action = "verify-reject"
	}
	inCfg := fmt.Sprintf("policy:\n  default: C\n  rules:\n    - name: interconnect\n      action: %s\n", action)
	inPath := filepath.Join(h.dir, "inbound.yaml")
	if err := os.WriteFile(inPath, []byte(inCfg), 0o644); err != nil {
		return fmt.Errorf("interop: %w", err)
	}
	in := netip.AddrPortFrom(h.addr(), portIn)
	if _, err := lb.start(ctx, h.Name+"-verifier", h.ns, filepath.Join(logs, h.Name+"-verifier.log"), portIn,
		cfg.Appliance, "serve", "--config", inPath, "--sip", in.String(),
		"--next-hop", netip.AddrPortFrom(h.addr(), portUAS).String(),
		"--key", key, "--cert", cert, "--x5u", h.x5u("sp.pem"), "--trust", strings.Join(trust, ","),
		"--api", netip.AddrPortFrom(h.addr(), portAPI).String(),
		"--lab", "--default-country", h.Home, "--loops", "1"); err != nil {
		return err
	}
	out := netip.AddrPortFrom(h.addr(), portOut)
	if h.Signer == SignerKamailio {
		run := filepath.Join(h.dir, "kamailio")
		if err := os.MkdirAll(run, 0o755); err != nil {
			return fmt.Errorf("interop: %w", err)
		}
		kcfg := filepath.Join(run, "kamailio.cfg")
		if err := os.WriteFile(kcfg, kamailioCfg, 0o644); err != nil {
			return fmt.Errorf("interop: %w", err)
		}
		kam := "/usr/sbin/kamailio"
		_, err := lb.start(ctx, h.Name+"-kamailio", h.ns, filepath.Join(logs, h.Name+"-kamailio.log"), portOut,
			kam, "-DD", "-E", "-f", kcfg, "-l", "udp:"+out.String(), "-n", "2", "-Y", run, "-w", run, "-m", "64", "-M", "8",
			"-A", `KEYPATH="`+key+`"`, "-A", `X5U="`+h.x5u("sp.pem")+`"`,
			"-A", `SRC_A="`+trunkAddr(h.idx, 'A').String()+`"`, "-A", `SRC_B="`+trunkAddr(h.idx, 'B').String()+`"`,
			"-A", `SRC_N="`+trunkAddr(h.idx, 'N').String()+`"`)
		if err == nil {
			time.Sleep(200 * time.Millisecond) // workers fork after the main process binds
		}
		return err
	}
	outCfg := fmt.Sprintf(`policy:
  default: C
  rules:
    - {name: retail-trunk, action: sign, attest: A, sources: [%s]}
    - {name: wholesale-trunk, action: sign, attest: B, sources: [%s]}
    - {name: gateway-trunk, action: sign, attest: C, sources: [%s]}
    - {name: legacy-tdm, action: forward, sources: [%s]}
`, trunk('A'), trunk('B'), trunk('C'), trunk('N'))
	outPath := filepath.Join(h.dir, "outbound.yaml")
	if err := os.WriteFile(outPath, []byte(outCfg), 0o644); err != nil {
		return fmt.Errorf("interop: %w", err)
	}
	_, err := lb.start(ctx, h.Name+"-signer", h.ns, filepath.Join(logs, h.Name+"-signer.log"), portOut,
		cfg.Appliance, "serve", "--config", outPath, "--sip", out.String(),
		"--key", key, "--cert", cert, "--x5u", h.x5u("sp.pem"),
		"--lab", "--default-country", h.Home, "--loops", "1")
	return err
}

// ecSigner signs PASSporT digests with a software key (for the pre-signed
// cases: what another carrier's STI-AS put on the wire).
type ecSigner struct{ key *ecdsa.PrivateKey }

func (s ecSigner) SignDigest(_ context.Context, d *[32]byte, sig *[64]byte) error {
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, d[:])
	if err != nil {
		return err
	}
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return nil
}

var (
	identityMu sync.Mutex
	identities = map[int]string{} // call ID -> pre-signed Identity used
)

// presign returns the Identity header value and the (possibly tampered)
// caller and callee the INVITE carries.
func presign(c Call, o *carrierHost) (id, caller, callee string, err error) {
	cred, file := o.cred, "sp.pem"
	switch c.Kind {
	case KindExpired:
		cred, file = o.expired, "expired.pem"
	case KindRevoked:
		cred, file = o.revoke, "revoked.pem"
	}
	b, err := passport.NewBuilder(o.x5u(file))
	if err != nil {
		return "", "", "", err
	}
	cl := &passport.Claims{Attest: c.Trunk, Orig: []byte(c.Caller.TN), Dest: [][]byte{[]byte(c.Callee.TN)}, IAT: time.Now().Unix()}
	if _, err := rand.Read(cl.OrigID[:]); err != nil {
		return "", "", "", err
	}
	id, err = passport.Sign(context.Background(), ecSigner{cred.Key}, b, cl)
	if err != nil {
		return "", "", "", err
	}
	caller, callee = c.Caller.TN, c.Callee.TN
	switch c.Kind {
	case KindTamperOrig:
		caller = bumpLast(caller)
	case KindTamperDest:
		callee = bumpLast(callee)
	case KindTamperSig:
		id = flipSignature(id)
	}
	return id, caller, callee, nil
}

func bumpLast(tn string) string {
	b := []byte(tn)
	b[len(b)-1] = '0' + (b[len(b)-1]-'0'+1)%10
	return string(b)
}

// flipSignature changes one bit of the PASSporT signature.
func flipSignature(id string) string {
	tok, params, _ := strings.Cut(id, ";")
	parts := strings.Split(tok, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) == 0 {
		return id
	}
	sig[10] ^= 0x01
	parts[2] = base64.RawURLEncoding.EncodeToString(sig)
	return strings.Join(parts, ".") + ";" + params
}

func place(c Call, hosts map[string]*carrierHost) CallResult {
	return placeWith(c, hosts, "")
}

func lastIdentity(c Call, _ map[string]*carrierHost) string {
	identityMu.Lock()
	defer identityMu.Unlock()
	return identities[c.ID]
}

// placeWith places one call; identity, when set, is sent as it is (the
// replay case).
func placeWith(c Call, hosts map[string]*carrierHost, identity string) CallResult {
	o, t := hosts[c.Orig], hosts[c.Term]
	r := CallResult{Call: c}
	iv := invite{CallID: fmt.Sprintf("call-%04d-%s-%s@interop.lab", c.ID, c.Orig, c.Term),
		Caller: c.Caller.TN, Callee: c.Callee.TN, Term: netip.AddrPortFrom(t.addr(), portIn)}
	switch {
	case identity != "":
		iv.Identity = identity
	case c.Signer == "pre-signed":
		id, caller, callee, err := presign(c, o)
		if err != nil {
			r.Got.Err = err.Error()
			return r
		}
		iv.Identity, iv.Caller, iv.Callee = id, caller, callee
		identityMu.Lock()
		identities[c.ID] = id
		identityMu.Unlock()
	}
	f, lat, err := o.uacs[c.Trunk].call(iv, netip.AddrPortFrom(o.addr(), portOut), 5*time.Second)
	r.Latency, r.Got.Code, r.Got.Reason = lat, f.code, f.reason
	if err != nil {
		r.Got.Err = err.Error()
	}
	if d, ok := t.uas.delivery(iv.CallID); ok {
		r.Got.Delivered = true
		r.Got.Verstat, r.Got.Attest, r.Got.OrigTN = d.Verstat, d.Attest, d.OrigTN
	}
	r.Pass = matches(c, r.Got)
	return r
}

// matches compares an outcome with the expectation: delivery, verstat,
// the attest and orig carried end to end, or the reject code.
func matches(c Call, g Outcome) bool {
	e := c.Expect
	if g.Err != "" {
		return false
	}
	if e.Delivered != g.Delivered {
		return false
	}
	if !e.Delivered {
		return g.Code == e.Code
	}
	if g.Code != 200 || g.Verstat != e.Verstat {
		return false
	}
	if e.Attest != "" && (g.Attest != e.Attest || g.OrigTN != c.Caller.TN) {
		return false
	}
	return true
}

var resultLine = regexp.MustCompile(`^shakenline_verify_results_total\{verstat="([^"]+)",code="([^"]+)"\} (\d+)`)

// checkCounters reads h's verifier counters and compares them with the
// results expected of the calls it terminated.
func checkCounters(h *carrierHost, calls []CallResult) ([]CounterCheck, error) {
	want := map[string]int{}
	for _, c := range calls {
		if c.Term == h.Name {
			want[fmt.Sprintf("%s/%d", c.Expect.Result, c.Expect.Code)]++
		}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := h.ns.do(func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(h.addr(), portAPI)))
	if err != nil {
		return nil, fmt.Errorf("interop: %s metrics: %w", h.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("interop: %s metrics: %w", h.Name, err)
	}
	got := map[string]int{}
	// CRLs were fetched and none was missing (fail-open would let a
	// revoked certificate pass): crl_fail_open must stay 0.
	want["crl_fail_open"] = 0
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "shakenline_verify_crl_fail_open_total "); ok {
			got["crl_fail_open"], _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if m := resultLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[3])
			if n > 0 {
				got[m[1]+"/"+m[2]] = n
			}
		}
	}
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	var out []CounterCheck
	for k := range keys {
		out = append(out, CounterCheck{Carrier: h.Name, Result: k, Want: want[k], Got: got[k], Pass: want[k] == got[k]})
	}
	slices.SortFunc(out, func(a, b CounterCheck) int { return strings.Compare(a.Result, b.Result) })
	return out, nil
}
