package hsm

import "github.com/VictoriaMetrics/metrics"

// Requests a Chain gave up on (Submit error or Done with Err), by
// BypassReason. Per-signer metrics live in each Chain's own metrics.Set,
// created once in New.
var (
	unsignedTimeout    = metrics.NewCounter(`shakenline_hsm_unsigned_total{reason="timeout"}`)
	unsignedQueueFull  = metrics.NewCounter(`shakenline_hsm_unsigned_total{reason="queue-full"}`)
	unsignedSignerDown = metrics.NewCounter(`shakenline_hsm_unsigned_total{reason="signer-down"}`)
	unsignedError      = metrics.NewCounter(`shakenline_hsm_unsigned_total{reason="error"}`)
)

func countUnsigned(err error) {
	switch BypassReason(err) {
	case "timeout":
		unsignedTimeout.Inc()
	case "queue-full":
		unsignedQueueFull.Inc()
	case "signer-down":
		unsignedSignerDown.Inc()
	default:
		unsignedError.Inc()
	}
}
