package compare

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTick = 100

// statFields returns the fields of /proc/PID/stat after the command name:
// index 0 is field 3 (state) of proc(5).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("compare: /proc/%d/stat: no command", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// cpuOf parses utime+stime (fields 14 and 15) in seconds.
func cpuOf(f []string) float64 {
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clockTick
}

// GroupCPU is the CPU time in seconds (user + system) of every live
// process in process group pgid (Kamailio's main process and workers; for
// the appliance, its one process with all its threads).
func GroupCPU(pgid int) (float64, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, fmt.Errorf("compare: %w", err)
	}
	var total float64
	found := false
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		found = true
		total += cpuOf(f)
	}
	if !found {
		return 0, fmt.Errorf("compare: no process in group %d", pgid)
	}
	return total, nil
}

// LoadAvg is /proc/loadavg's first three fields.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// StealMillis is the time, in milliseconds, the hypervisor kept this
// machine's vCPUs from running (the steal column of /proc/stat's cpu line,
// all CPUs), or -1 when it cannot be read. On a virtual machine a stolen
// slice stalls whatever ran on that vCPU, the proxy included: the report
// gives it beside the latency of the run it fell in.
func StealMillis() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	v, err := strconv.ParseFloat(f[8], 64)
	if err != nil {
		return -1
	}
	return v * 1000 / clockTick
}

// envInfo fills what is known before the run.
func envInfo(bin string, p Params, procs int) Env {
	e := Env{Go: runtime.Version(), LoadStart: LoadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			// Count processors here: runtime.NumCPU sees only our taskset.
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "processor" {
				e.Cores++
			} else if ok && strings.TrimSpace(k) == "model name" && e.CPUModel == "" {
				e.CPUModel = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	first := func(s string, _ error) string { return strings.TrimSpace(strings.SplitN(s, "\n", 2)[0]) }
	e.Appliance = first(sh(bin, "version"))
	e.Kamailio = first(sh("kamailio", "-v"))
	e.OpenSSL = first(sh("openssl", "version"))
	e.TopStart = topProcs()
	e.Layout = fmt.Sprintf("generator, sink and relay (this process, GOMAXPROCS %d, INVITEs paced with nanosleep) on CPU %d; system under test, openssl speed and the hsmraw benchmark on CPU %d (taskset); Kamailio %d UDP workers; appliance one event loop (GOMAXPROCS 1 under taskset)",
		procs, p.GenCPU, p.SUTCPU, p.KamailioWorkers)
	return e
}

func topProcs() string {
	out, _ := sh("ps", "-eo", "pcpu,pid,comm", "--sort=-pcpu")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 8 {
		lines = lines[:8]
	}
	return strings.Join(lines, "\n")
}
