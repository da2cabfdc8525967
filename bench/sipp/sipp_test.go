package sipp

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
)

// lo is this package's own loopback address: other test packages running
// at the same time reserve ports on 127.0.0.1 by binding and closing them
// and then send there; here they cannot reach this package's UAS.
const lo = "127.0.82.1"

func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(lo)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestScenariosDirect runs the UAS and each UAC scenario against it
// directly: 100 calls at 50 calls/s must all succeed, and the UAS logs one
// line per INVITE.
func TestScenariosDirect(t *testing.T) {
	bin, err := exec.LookPath("sipp")
	prereq.Need(t, err)
	wd, _ := os.Getwd()
	for _, uac := range []string{"uac.xml", "uac_invite_only.xml"} {
		t.Run(uac, func(t *testing.T) {
			dir := t.TempDir()
			uasPort, uacPort := freePort(t), freePort(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			uas := exec.CommandContext(ctx, bin, "-sf", filepath.Join(wd, "uas.xml"), "-i", lo,
				"-p", strconv.Itoa(uasPort), "-m", "100", "-trace_logs", "-nostdin", "-timeout", "50s")
			uas.Dir = dir
			if err := uas.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = uas.Process.Kill(); _ = uas.Wait() })
			time.Sleep(300 * time.Millisecond)
			out, err := exec.CommandContext(ctx, bin, lo+":"+strconv.Itoa(uasPort),
				"-sf", filepath.Join(wd, uac), "-inf", filepath.Join(wd, "numbers.csv"),
				"-i", lo, "-p", strconv.Itoa(uacPort), "-m", "100", "-r", "50",
				"-nostdin", "-timeout", "40s", "-trace_err").CombinedOutput()
			if err != nil {
				t.Fatalf("UAC failed: %v\n%s", err, tail(out))
			}
			if !strings.Contains(string(out), "Successful call") {
				t.Fatalf("no statistics:\n%s", tail(out))
			}
			if err := uas.Wait(); err != nil { // -m 100: exits 0 when all 100 calls succeeded
				t.Fatalf("UAS: %v", err)
			}
			logs, _ := filepath.Glob(filepath.Join(dir, "uas_*_logs.log"))
			if len(logs) != 1 {
				t.Fatalf("UAS logs: %v", logs)
			}
			b, _ := os.ReadFile(logs[0])
			if n := strings.Count(string(b), "INVITE "); n != 100 {
				t.Fatalf("UAS logged %d INVITEs, want 100", n)
			}
			if strings.Contains(string(b), "Identity:") {
				t.Fatal("UAS saw an Identity header without a signer in the path")
			}
		})
	}
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
