package compare

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
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
