package compare

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/shakenline/shakenline/bench/loadgen"
)

// Sentinel errors of the parsers.
var (
	ErrNoSteps  = errors.New("compare: no step results")
	ErrNoSpeed  = errors.New("compare: no ecdsap256 line in openssl speed output")
	ErrNoBench  = errors.New("compare: no benchmark lines")
	ErrNoSample = errors.New("compare: no perf samples")
)

// stepLine and summaryLine are the JSON lines of `shakebench step --json`,
// which the run writes for every setup as well.
type stepLine struct {
	Step *loadgen.Result `json:"step,omitempty"`
}

type summaryLine struct {
	Summary *loadgen.StepSummary `json:"summary,omitempty"`
}

// ParseSteps reads step JSON lines (and an optional summary line) and
// returns the ramp. Without a summary line the summary is derived from the
// steps with loss threshold lossPct: the highest target rate whose step was
// clean and achieved at least 97 % of its target. Lines that are not JSON
// (the human lines shakebench prints on stderr) are skipped.
func ParseSteps(r io.Reader, lossPct float64) (loadgen.StepSummary, error) {
	var (
		sum   loadgen.StepSummary
		given *loadgen.StepSummary
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var s stepLine
		if err := json.Unmarshal(line, &s); err != nil {
			return sum, fmt.Errorf("compare: step line: %w", err)
		}
		if s.Step != nil {
			sum.Steps = append(sum.Steps, *s.Step)
			continue
		}
		var m summaryLine
		if err := json.Unmarshal(line, &m); err != nil {
			return sum, fmt.Errorf("compare: summary line: %w", err)
		}
		if m.Summary != nil {
			given = m.Summary
		}
	}
	if err := sc.Err(); err != nil {
		return sum, fmt.Errorf("compare: %w", err)
	}
	if given != nil {
		if len(given.Steps) == 0 {
			given.Steps = sum.Steps
		}
		if len(given.Steps) == 0 {
			return *given, ErrNoSteps
		}
		return *given, nil
	}
	if len(sum.Steps) == 0 {
		return sum, ErrNoSteps
	}
	for i, st := range sum.Steps {
		if st.LossPct > lossPct || st.AchievedRate < 0.97*st.TargetRate {
			continue
		}
		if st.TargetRate > sum.MaxCleanRate {
			sum.MaxCleanRate = st.TargetRate
			sum.Best = &sum.Steps[i]
		}
	}
	sum.Stop = "unknown"
	return sum, nil
}

// OpenSSLSpeed is one `openssl speed ecdsap256` result.
type OpenSSLSpeed struct {
	SignPerSec   float64 `json:"sign_per_s"`
	VerifyPerSec float64 `json:"verify_per_s"`
}

// SignMicros is the cost of one signature in microseconds of one core.
func (o OpenSSLSpeed) SignMicros() float64 {
	if o.SignPerSec == 0 {
		return 0
	}
	return 1e6 / o.SignPerSec
}

// ParseOpenSSLSpeed reads `openssl speed -mr ecdsap256` output (the
// "+F4:n:256:sign/s:verify/s" line) or, failing that, the human table row
// "256 bits ecdsa (nistp256) sign verify sign/s verify/s".
func ParseOpenSSLSpeed(out []byte) (OpenSSLSpeed, error) {
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if f := strings.Split(line, ":"); len(f) == 5 && f[0] == "+F4" && f[2] == "256" {
			s, err1 := strconv.ParseFloat(f[3], 64)
			v, err2 := strconv.ParseFloat(f[4], 64)
			if err1 == nil && err2 == nil && s > 0 {
				return OpenSSLSpeed{SignPerSec: s, VerifyPerSec: v}, nil
			}
		}
		if strings.HasPrefix(line, "256 bits ecdsa (nistp256)") {
			f := strings.Fields(line)
			if len(f) >= 8 {
				s, err1 := strconv.ParseFloat(f[len(f)-2], 64)
				v, err2 := strconv.ParseFloat(f[len(f)-1], 64)
				if err1 == nil && err2 == nil && s > 0 {
					return OpenSSLSpeed{SignPerSec: s, VerifyPerSec: v}, nil
				}
			}
		}
	}
	return OpenSSLSpeed{}, ErrNoSpeed
}

// BenchLine is one `go test -bench` result line.
type BenchLine struct {
	Name    string             `json:"name"` // without the Benchmark prefix and -GOMAXPROCS suffix
	N       int64              `json:"n"`
	Metrics map[string]float64 `json:"metrics"` // unit -> value, e.g. "ns/op", "sig/s"
}

var benchProcs = regexp.MustCompile(`-\d+$`)

// ParseGoBench reads the result lines of `go test -bench` output.
func ParseGoBench(out []byte) ([]BenchLine, error) {
	var res []BenchLine
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		b := BenchLine{Name: benchProcs.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), ""), N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			b.Metrics[f[i+1]] = v
		}
		res = append(res, b)
	}
	if len(res) == 0 {
		return nil, ErrNoBench
	}
	return res, nil
}

// PerfEntry is one row of `perf report --sort dso,symbol`.
type PerfEntry struct {
	Percent float64 `json:"pct"`
	DSO     string  `json:"dso"`
	Symbol  string  `json:"symbol"`
	Kernel  bool    `json:"kernel"`
}

// ParsePerfReport reads `perf report --stdio --no-children --sort
// dso,symbol` rows: "  12.34%  appliance  [.] crypto/...".
func ParsePerfReport(out []byte) ([]PerfEntry, error) {
	var res []PerfEntry
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasSuffix(f[0], "%") {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
		if err != nil {
			continue
		}
		sym := f[3:]
		for len(sym) > 1 && sym[len(sym)-1] == "-" { // empty srcline columns
			sym = sym[:len(sym)-1]
		}
		e := PerfEntry{Percent: pct, DSO: f[1], Kernel: f[2] == "[k]", Symbol: strings.Join(sym, " ")}
		res = append(res, e)
	}
	if len(res) == 0 {
		return nil, ErrNoSample
	}
	return res, nil
}

// Category is a share of CPU samples.
type Category struct {
	Name    string  `json:"name"`
	Percent float64 `json:"pct"`
}

// categories maps perf rows to coarse groups, first match wins.
var categories = []struct {
	name  string
	match func(e PerfEntry) bool
}{
	{"kernel (UDP send/receive, softirq, scheduling)", func(e PerfEntry) bool { return e.Kernel || strings.Contains(e.DSO, "kernel") }},
	{"softhsm2 and its OpenSSL (PKCS#11 C_Sign)", func(e PerfEntry) bool {
		return strings.Contains(e.DSO, "softhsm") || strings.Contains(e.DSO, "libcrypto") || strings.Contains(e.DSO, "libstdc++") || strings.Contains(e.Symbol, "C_Sign")
	}},
	{"ECDSA P-256 signing (Go crypto: nistec, bigmod, ecdsa, SHA-512/HMAC nonce)", func(e PerfEntry) bool {
		s := e.Symbol
		return strings.Contains(s, "sha512") || strings.Contains(s, "nistec") || strings.Contains(s, "bigmod") || strings.Contains(s, "ecdsa") || strings.Contains(s, "p256") || strings.Contains(s, "P256") || strings.Contains(s, "fiat") || strings.Contains(s, "drbg") || strings.Contains(s, "hmac")
	}},
	{"SHA-256", func(e PerfEntry) bool { return strings.Contains(e.Symbol, "sha256") }},
	{"SIP parse, stamp, PASSporT build (sip, fastpath, passport, e164, policy)", func(e PerfEntry) bool {
		s := e.Symbol
		return strings.Contains(s, "shakenline/sip") || strings.Contains(s, "shakenline/fastpath") || strings.Contains(s, "shakenline/passport") ||
			strings.Contains(s, "shakenline/e164") || strings.Contains(s, "shakenline/policy") || strings.Contains(s, "base64")
	}},
	{"signer dispatch (hsm)", func(e PerfEntry) bool { return strings.Contains(e.Symbol, "shakenline/hsm") }},
	{"gnet event loop and syscall wrappers", func(e PerfEntry) bool {
		return strings.Contains(e.Symbol, "gnet") || strings.Contains(e.Symbol, "syscall") || strings.Contains(e.Symbol, "x/sys/unix")
	}},
	{"Go runtime (scheduler, GC, allocation, memmove)", func(e PerfEntry) bool {
		return strings.HasPrefix(e.Symbol, "runtime.") || strings.HasPrefix(e.Symbol, "internal/runtime") || strings.HasPrefix(e.Symbol, "sync")
	}},
}

// Categorize groups perf rows; the rest is "other", and the result is
// sorted by share.
func Categorize(es []PerfEntry) []Category {
	sums := map[string]float64{}
	for _, e := range es {
		name := "other"
		for _, c := range categories {
			if c.match(e) {
				name = c.name
				break
			}
		}
		sums[name] += e.Percent
	}
	out := make([]Category, 0, len(sums))
	for n, p := range sums {
		out = append(out, Category{Name: n, Percent: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Percent > out[j].Percent })
	return out
}
