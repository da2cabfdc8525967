package interop

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
)

// buildAppliance compiles cmd/appliance into a temporary directory.
func buildAppliance(t *testing.T) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	out := filepath.Join(t.TempDir(), "appliance")
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/appliance")
	cmd.Dir = "../.." // the module root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build appliance: %v\n%s", err, b)
	}
	return out
}

// TestReducedMatrix runs the whole machinery on a small matrix: two
// carriers in their own namespaces, one with a Global CA certificate
// trusting only the G-CA, one with a US STI-CA certificate trusting both,
// numbers from three countries. Every call must end as expected (so
// US-signed calls fail at the G-CA-only carrier while G-CA-signed calls
// pass at both), the verifiers' counters must agree, the report is
// written and no namespace is left behind.
func TestReducedMatrix(t *testing.T) {
	prereq.Need(t, Prereqs(false))
	app := buildAppliance(t)
	carriers := []Carrier{
		{Name: "atlantic", Display: "Atlantic Telecom", Home: "US", CA: "US",
			Trusts: []Jurisdiction{"US", Global}, Countries: []string{"US"}, Signer: SignerAppliance},
		{Name: "meridian", Display: "Meridian Global Voice", Home: "GB", CA: Global,
			Trusts: []Jurisdiction{Global}, Countries: []string{"GB", "IE"}, Signer: SignerAppliance, Reject: true},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	var log strings.Builder
	res, err := Run(ctx, Config{Appliance: app, WorkDir: t.TempDir(), Carriers: carriers, Log: &log})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	t.Log(Headline(res))
	for _, c := range res.Calls {
		if !c.Pass {
			t.Errorf("%s", Describe(c))
		}
	}
	for _, c := range res.Counters {
		if !c.Pass {
			t.Errorf("verifier counter %s %s: want %d, got %d", c.Carrier, c.Result, c.Want, c.Got)
		}
	}
	if t.Failed() {
		t.Logf("logs in %s", res.Logs)
	}
	var passedAtMeridian, rejectedAtMeridian, passedAtAtlantic int
	for _, c := range res.Calls {
		switch {
		case c.Kind == KindSigned && c.Term == "meridian" && !c.Got.Delivered && c.Got.Code == 437:
			rejectedAtMeridian++
		case c.Kind == KindSigned && c.Term == "meridian" && c.Got.Verstat == Passed:
			passedAtMeridian++
		case c.Kind == KindSigned && c.Term == "atlantic" && c.Got.Verstat == Passed:
			passedAtAtlantic++
		}
	}
	if rejectedAtMeridian != 1 || passedAtMeridian != 0 || passedAtAtlantic != 3 {
		t.Errorf("meridian rejected %d / passed %d US-signed calls, atlantic passed %d G-CA-signed calls; want 1, 0, 3",
			rejectedAtMeridian, passedAtMeridian, passedAtAtlantic)
	}
	if len(res.Calls) < 15 {
		t.Errorf("%d calls", len(res.Calls))
	}
	// Each carrier's two appliances obtained the carrier's certificate from
	// its CA through ACME (governance records of kind ACME, by its CA).
	acme := map[string]int{}
	for _, g := range res.Governance {
		if g.Kind == "ACME" {
			acme[g.Carrier+" "+g.CA]++
		}
	}
	if acme["atlantic US STI-CA"] != 2 || acme["meridian Global CA (G-CA)"] != 2 || len(acme) != 2 {
		t.Errorf("certificates obtained through ACME: %v; want 2 per carrier from its CA", acme)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "sli"+itoa(os.Getpid())+"-") {
		t.Errorf("namespaces left behind:\n%s", out)
	}
	files, err := WriteReport(t.TempDir(), res)
	if err != nil || len(files) < 4 {
		t.Fatalf("report %v: %v", files, err)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestRunNeedsAppliance: a missing binary is a prerequisite error, before
// anything is created.
func TestRunNeedsAppliance(t *testing.T) {
	_, err := Run(context.Background(), Config{})
	if !errors.Is(err, ErrPrereq) {
		t.Fatalf("err %v", err)
	}
}
