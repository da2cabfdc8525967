package api

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// Routes, as used in the route label.
type route uint8

const (
	rSigning route = iota
	rVerification
	rAttestation
	rReload
	rHealthz
	rReadyz
	rMetrics
	rStatus
	rOther
	nRoutes
)

var routeNames = [nRoutes]string{"signing", "verification", "attestation", "reload", "healthz", "readyz", "metrics", "status", "other"}

// statusCodes are the HTTP statuses the API answers with; anything else is
// counted as code="other".
var statusCodes = [...]int{200, 400, 401, 404, 405, 406, 411, 413, 415, 500, 503}

const nCodes = len(statusCodes) + 1

// Metrics are declared once, here (names formatted at init, never per request).
var (
	mRequests [nRoutes][nCodes]*metrics.Counter
	mDuration [nRoutes]*metrics.Histogram

	mSignedA = metrics.NewCounter(`shakenline_api_signed_total{attest="A"}`)
	mSignedB = metrics.NewCounter(`shakenline_api_signed_total{attest="B"}`)
	mSignedC = metrics.NewCounter(`shakenline_api_signed_total{attest="C"}`)

	mSignFailTimeout   = metrics.NewCounter(`shakenline_api_sign_failures_total{reason="timeout"}`)
	mSignFailQueueFull = metrics.NewCounter(`shakenline_api_sign_failures_total{reason="queue-full"}`)
	mSignFailDown      = metrics.NewCounter(`shakenline_api_sign_failures_total{reason="signer-down"}`)
	mSignFailError     = metrics.NewCounter(`shakenline_api_sign_failures_total{reason="error"}`)

	mAuditDropped = metrics.NewCounter(`shakenline_api_audit_dropped_total`)
	mReloadOK     = metrics.NewCounter(`shakenline_api_reloads_total{result="ok"}`)
	mReloadFailed = metrics.NewCounter(`shakenline_api_reloads_total{result="refused"}`)
)

func init() {
	for r := range nRoutes {
		for i, c := range statusCodes {
			mRequests[r][i] = metrics.NewCounter(`shakenline_api_requests_total{route="` + routeNames[r] + `",code="` + strconv.Itoa(c) + `"}`)
		}
		mRequests[r][nCodes-1] = metrics.NewCounter(`shakenline_api_requests_total{route="` + routeNames[r] + `",code="other"}`)
		mDuration[r] = metrics.NewHistogram(`shakenline_api_request_duration_seconds{route="` + routeNames[r] + `"}`)
	}
}

func countRequest(r route, code int) {
	for i, c := range statusCodes {
		if c == code {
			mRequests[r][i].Inc()
			return
		}
	}
	mRequests[r][nCodes-1].Inc()
}

func countSignFailure(reason string) {
	switch reason {
	case "timeout":
		mSignFailTimeout.Inc()
	case "queue-full":
		mSignFailQueueFull.Inc()
	case "signer-down":
		mSignFailDown.Inc()
	default:
		mSignFailError.Inc()
	}
}
