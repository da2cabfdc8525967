package compare

import (
	"fmt"
	"strings"
)

// hsmRatioText is the section comparing the appliance's signed calls/s
// with raw C_Sign/s of the same run, for the in-process token (one core for
// both) and for the token behind a p11-kit server on its own core.
func hsmRatioText(r *Run) string {
	var b strings.Builder
	if h := r.setup("appliance-sign-hsm"); h != nil && h.Summary.MaxCleanRate > 0 {
		if best := bestRaw(r.HSMRaw, "Sign/"); best > 0 {
			fmt.Fprintf(&b, "\nIn process, one core for the appliance and SoftHSM: %.0f signed calls/s = **%.0f %%** of the best raw C_Sign/s (%.0f). The appliance's core also carries its SIP work, which raw C_Sign does not.\n",
				h.Summary.MaxCleanRate, 100*h.Summary.MaxCleanRate/best, best)
		}
	}
	b.WriteString("\n## softhsm2 behind p11-kit server (HSM on its own core)\n\n")
	if len(r.HSMRemote) == 0 {
		if r.RemoteErr != "" {
			fmt.Fprintf(&b, "Not measured: %s\n", r.RemoteErr)
		} else {
			b.WriteString("Not measured in this run.\n")
		}
		return b.String()
	}
	fmt.Fprintf(&b, "The layout of a network HSM: `p11-kit server` loads SoftHSM in its own process, pinned to CPU %d; the caller loads p11-kit-client.so and runs on CPU %d (bench/hsmraw BenchmarkRemote; the appliance shares CPU %d with the generator). p11-kit forks one p11-kit-remote per connection and it runs that connection's calls one at a time: one process's sessions share one serial executor, more sessions only pipeline requests into the socket.\n\n",
		r.Params.SUTCPU, r.Params.GenCPU, r.Params.GenCPU)
	b.WriteString("| sessions | raw C_Sign/s | hsm.Chain sig/s |\n|---:|---:|---:|\n")
	writeSessionTable(&b, r.HSMRemote, "Remote/")
	if h := r.setup(RemoteSetup); h != nil {
		fmt.Fprintf(&b, "\nAppliance signed calls/s through p11-kit (highest clean rate): %s", cleanRate(h))
		if best := bestRaw(r.HSMRemote, "Remote/"); best > 0 && h.Summary.MaxCleanRate > 0 {
			fmt.Fprintf(&b, " = **%.0f %%** of the best raw C_Sign/s through the same module (%.0f)", 100*h.Summary.MaxCleanRate/best, best)
		}
		b.WriteString(".\n")
	}
	return b.String()
}

// bestRaw is the highest raw sig/s among lines named prefix+"raw/...".
func bestRaw(lines []BenchLine, prefix string) float64 {
	best := 0.0
	for _, l := range lines {
		if strings.HasPrefix(l.Name, prefix+"raw/") {
			best = max(best, l.Metrics["sig/s"])
		}
	}
	return best
}
