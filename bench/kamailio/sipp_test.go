package kamailio

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
)

// TestSIPpThroughKamailio runs the bench/sipp scenarios with the signing
// Kamailio between them: UAC -> proxy -> UAS, responses back by Via, ACK and
// BYE to the proxy. The UAS log must show an Identity header on every INVITE.
func TestSIPpThroughKamailio(t *testing.T) {
	prereq.Need(t, Available())
	bin, err := exec.LookPath("sipp")
	prereq.Need(t, err)
	priv, _ := keyPair(t)
	scen, _ := filepath.Abs("../sipp")
	uasAddr := freeUDP(t)
	// One worker process: uac_invite_only sends its ACK and BYE back to
	// back, and two Kamailio workers reading the one socket can forward
	// them swapped. The UAS then aborts the call on the early BYE, takes
	// the late ACK for a new call, and, its -m count reached, exits before
	// the last INVITE (the one call lost in two CI runs).
	p := start(t, Options{NextHop: uasAddr, Sign: true, KeyPath: priv, Workers: 1})
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const calls = 20
	var uasOut strings.Builder
	uas := exec.CommandContext(ctx, bin, "-sf", filepath.Join(scen, "uas.xml"), "-i", labLoopback.String(),
		"-p", strconv.Itoa(int(uasAddr.Port())), "-m", strconv.Itoa(calls), "-trace_logs", "-trace_err", "-nostdin", "-timeout", "50s")
	uas.Dir = dir
	uas.Stdout, uas.Stderr = &uasOut, &uasOut
	// On failure, show what the UAS saw: its one line per INVITE (a call it
	// never logged never reached it) and its error log.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, pat := range []string{"uas_*_logs.log", "uas_*_errors.log"} {
			files, _ := filepath.Glob(filepath.Join(dir, pat))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", filepath.Base(f), b[max(0, len(b)-4000):])
			}
		}
	})
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = uas.Process.Kill()
		_ = uas.Wait()
		if t.Failed() {
			t.Logf("UAS output tail:\n%s", uasOut.String()[max(0, uasOut.Len()-2000):])
		}
	})
	time.Sleep(300 * time.Millisecond)
	uac := exec.CommandContext(ctx, bin, p.Addr().String(),
		"-sf", filepath.Join(scen, "uac_invite_only.xml"), "-inf", filepath.Join(scen, "numbers.csv"),
		"-i", labLoopback.String(), "-p", strconv.Itoa(int(freeUDP(t).Port())), "-m", strconv.Itoa(calls), "-r", "20",
		"-nostdin", "-timeout", "40s")
	uac.Dir = dir
	if out, err := uac.CombinedOutput(); err != nil {
		t.Fatalf("UAC through kamailio: %v\n%s", err, out[max(0, len(out)-3000):])
	}
	if err := uas.Wait(); err != nil {
		t.Fatalf("UAS: %v", err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "uas_*_logs.log"))
	if len(logs) != 1 {
		t.Fatalf("UAS logs: %v", logs)
	}
	b, _ := os.ReadFile(logs[0])
	if n := strings.Count(string(b), "Identity: ey"); n != calls {
		t.Fatalf("UAS saw %d signed INVITEs, want %d:\n%s", n, calls, b)
	}
}
