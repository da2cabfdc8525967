package compare

import (
	"strings"
	"testing"

	"github.com/shakenline/shakenline/bench/loadgen"
)

// The remote HSM section gives each HSM setup's highest clean rate as a share
// of the best raw C_Sign/s of the same module, read from BenchmarkRemote's
// (and BenchmarkSign's) lines.
func TestHSMRatioText(t *testing.T) {
	out := []byte(`BenchmarkSign/raw/sessions=1         	     933	    109895 ns/op	      8000 sig/s
BenchmarkSign/raw/sessions=4         	    1356	     89273 ns/op	     10000 sig/s
BenchmarkSign/chain/sessions=4       	    1426	     85776 ns/op	     11659 sig/s
BenchmarkRemote/raw/sessions=1         	     283	    388890 ns/op	      2571 sig/s
BenchmarkRemote/chain/sessions=1       	     406	    288736 ns/op	      3463 sig/s
BenchmarkRemote/raw/sessions=8         	     872	    156248 ns/op	      6400 sig/s
BenchmarkRemote/chain/sessions=8       	    1095	    107128 ns/op	      9335 sig/s
`)
	lines, err := ParseGoBench(out)
	if err != nil {
		t.Fatal(err)
	}
	r := &Run{HSMRaw: lines[:3], HSMRemote: lines[3:]}
	r.Setups = []SetupResult{
		{Setup: Setup{Name: "appliance-sign-hsm"}, Summary: loadgen.StepSummary{MaxCleanRate: 7500}},
		{Setup: Setup{Name: RemoteSetup}, Summary: loadgen.StepSummary{MaxCleanRate: 5760}},
	}
	txt := hsmRatioText(r)
	for _, want := range []string{
		"7500 signed calls/s = **75 %** of the best raw C_Sign/s (10000)",
		"| 1 | 2571 | 3463 |",
		"| 8 | 6400 | 9335 |",
		"= **90 %** of the best raw C_Sign/s through the same module (6400)",
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("missing %q in:\n%s", want, txt)
		}
	}
	if txt := hsmRatioText(&Run{RemoteErr: "p11-kit missing"}); !strings.Contains(txt, "Not measured: p11-kit missing") {
		t.Errorf("no error text:\n%s", txt)
	}
}
