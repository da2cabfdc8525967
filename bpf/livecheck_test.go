package bpf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/shakenline/shakenline/bpf/nettest"
	"github.com/shakenline/shakenline/internal/prereq"
)

// liveFramesOp names what BenchmarkForwarding's traffic generator needs.
const liveFramesOp = "BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES"

// requireLiveFrames skips (fails under CI) unless this process can load an
// XDP program and run it in live-frame mode in the client namespace (what
// the forwarding rig's generator does), naming what is missing: Linux >=
// 5.18, a capability, or whatever else denies it. The probe's program
// drops its one frame: nothing is sent.
func requireLiveFrames(tb testing.TB, topo *nettest.Topology) {
	tb.Helper()
	prereq.Kernel(tb, 5, 18, liveFramesOp)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1 /* XDP_DROP */), asm.Return()}})
	if err != nil {
		prereq.Need(tb, prereq.Permission("loading an XDP program", err, prereq.CapBPF, prereq.CapNetAdmin))
		tb.Fatalf("loading an XDP program: %v", err)
	}
	defer prog.Close()
	var runErr error
	if err := topo.Client.Do(func() error {
		ifc, err := net.InterfaceByName(nettest.ClientIf)
		if err != nil {
			return err
		}
		data := make([]byte, 64)
		_, runErr = prog.Run(&ebpf.RunOptions{Data: data, Repeat: 1, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			Context: xdpMD{DataEnd: uint32(len(data)), IngressIfindex: uint32(ifc.Index)}})
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	if runErr == nil {
		return
	}
	prereq.Need(tb, prereq.Permission(liveFramesOp, runErr, prereq.CapBPF, prereq.CapNetAdmin, prereq.CapSysAdmin))
	if errors.Is(runErr, unix.EINVAL) || errors.Is(runErr, ebpf.ErrNotSupported) {
		prereq.Need(tb, fmt.Errorf("%s: %v: this kernel does not support it (needs Linux >= 5.18 built with CONFIG_BPF_SYSCALL and XDP; check: uname -r)", liveFramesOp, runErr))
	}
	tb.Fatalf("%s: %v", liveFramesOp, runErr)
}

// denyTestRunEnv, set in a re-executed test binary, installs a seccomp
// filter before any test runs that fails bpf(BPF_PROG_TEST_RUN) with
// EPERM: a machine where the live-frame run is denied although the
// process is root with every capability (TestLiveFramesNamesDenial).
const denyTestRunEnv = "SHAKENLINE_BPF_DENY_PROG_TEST_RUN"

func init() {
	if os.Getenv(denyTestRunEnv) == "1" {
		if err := denyProgTestRun(); err != nil {
			fmt.Fprintln(os.Stderr, "seccomp:", err)
			os.Exit(2)
		}
	}
}

func denyProgTestRun() error {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return fmt.Errorf("no seccomp architecture for %s", runtime.GOARCH)
	}
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	filter := []unix.SockFilter{ // struct seccomp_data: nr at 0, arch at 4, args[0] at 16
		{Code: ld, K: 4},
		{Code: jeq, Jf: 5, K: arch},
		{Code: ld, K: 0},
		{Code: jeq, Jf: 3, K: unix.SYS_BPF},
		{Code: ld, K: 16}, // low half of args[0] (little-endian)
		{Code: jeq, Jf: 1, K: unix.BPF_PROG_TEST_RUN},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return e
	}
	return nil
}

// TestLiveFramesNamesDenial runs TestTrafficGenForwarding in a child whose
// bpf(BPF_PROG_TEST_RUN) calls are denied (EPERM) by a seccomp filter,
// although it is root with every capability: the test must skip (fail
// under CI=true) and say what denies the run and how to check, not fail
// with a bare "operation not permitted".
func TestLiveFramesNamesDenial(t *testing.T) {
	nettest.Require(t)
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTrafficGenForwarding$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), denyTestRunEnv+"=1", "CI="+ci)
		out, _ := cmd.CombinedOutput()
		want := "--- SKIP: TestTrafficGenForwarding"
		if ci == "true" {
			want = "--- FAIL: TestTrafficGenForwarding"
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("CI=%q: want %q:\n%s", ci, want, out)
		}
		for _, s := range []string{liveFramesOp + ": run program: ", "operation not permitted, although CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN are effective",
			"Seccomp: 2, this process is filtered", "grep Seccomp /proc/self/status"} {
			if !strings.Contains(string(out), s) {
				t.Errorf("CI=%q: the message does not say %q:\n%s", ci, s, out)
			}
		}
	}
}
