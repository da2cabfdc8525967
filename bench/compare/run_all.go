package compare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shakenline/shakenline/bench/loadgen"
)

// ErrUsage marks a command-line error (exit code 2).
var ErrUsage = errors.New("compare: usage")

// RunAll runs every setup (or only the one named only) with the appliance
// binary bin and writes run.json, the step files and the raw tool outputs
// to out; Report then turns them into the report. quick selects the short
// steps of QUICK=1. Progress goes to log.
func RunAll(ctx context.Context, bin, out string, quick bool, only string, log io.Writer) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	// Two Ps on the generator's one core: the generator paces each INVITE
	// with nanosleep instead of 1 ms timer bursts.
	procs := loadgen.EnableFinePacing()
	p := DefaultParams(quick)
	r := Run{Started: time.Now().UTC(), Params: p}
	r.Env = envInfo(bin, p, procs)
	tmp, err := os.MkdirTemp("", "shakebench-compare-")
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	defer os.RemoveAll(tmp)
	l, err := makeLab(bin, tmp)
	if err != nil {
		return err
	}
	// perf works here? (containers often forbid it)
	if err := exec.Command("perf", "record", "-q", "-o", filepath.Join(tmp, "probe.data"), "--", "true").Run(); err == nil {
		r.Env.PerfWorked = true
	} else {
		r.ProfileErr = "perf record failed: " + err.Error()
	}

	fmt.Fprintf(log, "compare: openssl speed ecdsap256 on CPU %d\n", p.SUTCPU)
	if o, err := exec.Command("taskset", "-c", strconv.Itoa(p.SUTCPU), "openssl", "speed", "-mr", "-seconds",
		strconv.Itoa(p.OpenSSLSeconds), "ecdsap256").CombinedOutput(); err == nil {
		_ = os.WriteFile(filepath.Join(out, "openssl-speed.txt"), o, 0o644)
		if s, err := ParseOpenSSLSpeed(o); err == nil {
			r.OpenSSL = &s
		}
	}

	fmt.Fprintf(log, "compare: stalls of CPU %d (%.0f s of clock readings)\n", p.SUTCPU, p.StallSeconds)
	if r.Stalls, err = sutStalls(p.SUTCPU, p.StallSeconds); err != nil {
		r.StallsErr = err.Error()
		fmt.Fprintln(log, err)
	}

	fmt.Fprintf(log, "compare: softhsm2 C_Sign (bench/hsmraw) on CPU %d\n", p.SUTCPU)
	r.HSMRaw, err = hsmRaw(ctx, p, tmp, out)
	if err != nil {
		r.HSMRawErr = err.Error()
		fmt.Fprintln(log, err)
	}

	if only == "" || only == RemoteSetup {
		fmt.Fprintf(log, "compare: C_Sign through p11-kit-client.so (bench/hsmraw BenchmarkRemote) on CPU %d, p11-kit server on CPU %d\n", p.GenCPU, p.SUTCPU)
		r.HSMRemote, err = hsmRawRemote(ctx, p, tmp, out)
		if err != nil {
			r.RemoteErr = err.Error()
			fmt.Fprintln(log, err)
		}
	}

	for _, s := range Setups {
		if only != "" && s.Name != only {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(log, "compare: %s (%s)\n", s.Name, s.Title)
		res := runSetup(ctx, bin, p, l, s, out, r.Env.PerfWorked)
		if res.Error != "" {
			fmt.Fprintf(log, "compare: %s: %s\n", s.Name, res.Error)
		}
		r.Setups = append(r.Setups, res)
	}
	r.Finished = time.Now().UTC()
	r.Env.LoadEnd = LoadAvg()
	r.Env.TopEnd = topProcs()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "run.json"), b, 0o644); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	return nil
}

// hsmRaw runs the bench/hsmraw benchmarks pinned to the SUT core.
func hsmRaw(ctx context.Context, p Params, tmp, out string) ([]BenchLine, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	test := filepath.Join(tmp, "hsmraw.test")
	c := exec.CommandContext(ctx, "go", "test", "-c", "-o", test, "./bench/hsmraw/")
	c.Dir = root
	if o, err := c.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compare: go test -c ./bench/hsmraw/: %w: %s", err, tail(o, 500))
	}
	c = exec.CommandContext(ctx, "taskset", "-c", strconv.Itoa(p.SUTCPU), test, "-test.run", "^$",
		"-test.bench", p.HSMBench, "-test.benchtime", p.HSMBenchtime)
	c.Dir = filepath.Join(root, "bench", "hsmraw")
	o, err := c.CombinedOutput()
	_ = os.WriteFile(filepath.Join(out, "hsmraw.txt"), o, 0o644)
	if err != nil {
		return nil, fmt.Errorf("compare: hsmraw benchmark: %w: %s", err, tail(o, 500))
	}
	return ParseGoBench(o)
}

// hsmRawRemote runs bench/hsmraw's BenchmarkRemote on the generator's
// core with the p11-kit server it starts pinned to the SUT core: raw C_Sign
// and the chain through p11-kit-client.so, beside the remote setup.
func hsmRawRemote(ctx context.Context, p Params, tmp, out string) ([]BenchLine, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	test := filepath.Join(tmp, "hsmraw.test")
	if _, err := os.Stat(test); err != nil {
		c := exec.CommandContext(ctx, "go", "test", "-c", "-o", test, "./bench/hsmraw/")
		c.Dir = root
		if o, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("compare: go test -c ./bench/hsmraw/: %w: %s", err, tail(o, 500))
		}
	}
	c := exec.CommandContext(ctx, "taskset", "-c", strconv.Itoa(p.GenCPU), test, "-test.run", "^$",
		"-test.bench", "Remote", "-test.benchtime", p.HSMBenchtime)
	c.Dir = filepath.Join(root, "bench", "hsmraw")
	c.Env = append(os.Environ(), "HSMRAW_P11KIT=1", "HSMRAW_SERVER_CPU="+strconv.Itoa(p.SUTCPU))
	o, err := c.CombinedOutput()
	_ = os.WriteFile(filepath.Join(out, "hsmraw-remote.txt"), o, 0o644)
	if err != nil {
		return nil, fmt.Errorf("compare: hsmraw remote benchmark: %w: %s", err, tail(o, 500))
	}
	return ParseGoBench(o)
}

// moduleRoot finds the directory holding go.mod from the working directory.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("compare: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("compare: go.mod not found above the working directory")
		}
		d = parent
	}
}
