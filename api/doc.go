// Package api owns the appliance's HTTP side: the ATIS-1000082 STI-AS/STI-VS
// interface (signing and verification requests), the attestation-only
// request, POST /admin/reload, /healthz, /readyz, the Prometheus /metrics
// exposition and the /status page. It is never on the SIP fast path: package fastpath must not
// import it. docs/API.md is the operator's manual with examples.
//
// # Routes
//
//	POST /stir/v1/signing       {"signingRequest":{"attest","dest":{"tn":[..]},"iat","orig":{"tn"},"origid"}}
//	                            -> 200 {"signingResponse":{"identity":"<Identity header value>"}}
//	POST /stir/v1/verification  {"verificationRequest":{"from":{"tn"},"to":{"tn":[..]},"time","identity"}}
//	                            -> 200 {"verificationResponse":{"verstat","reasoncode","reasontext","reasondesc"}}
//	POST /stir/v1/attestation   {"attestationRequest":{"orig":{"tn"},"dest":{"tn":[..]},"source":"198.18.1.7"}}
//	                            -> 200 {"attestationResponse":{"attest":"A","rule":"retail"}}
//	POST /admin/reload          -> 200 {"reload":"ok"}, or a refusal with the reason
//	GET  /healthz  liveness, with the signer chain state (Config.Health)
//	GET  /readyz   200 when every Check passes (a probe signature, policy loaded, ...), else 503
//	GET  /metrics  Prometheus text format (VictoriaMetrics/metrics), histograms also with le buckets
//	GET  /status   HTML status page for people (Config.Status; 404 without it)
//
// Signing: attest, dest, iat and orig are mandatory; origid is optional (a
// random version 4 UUID is made when absent; a given one must be a version 4
// UUID, since it is signed as given). iat must be within Config.Freshness
// (60s) of now (RFC 8224 section 4.1): a stale iat is SVC4005, never
// replaced (the client's INVITE carries the Date). TNs (signing orig and
// dest, verification from and to, attestation orig and dest) are E.164 as
// given: e164.AppendGiven, an optional leading '+' and the separators
// " -.()" removed, never a default country added; anything else is SVC4005
// with the TN and the reason (docs/API.md, "Telephone numbers"). The
// extension claims div, rcd,
// rcdi and crn are signed when given; any other member is refused. The
// attestation is the client's (the audit rule is "request"). The request goes
// through the same hsm.Dispatcher, budget (Config.Budget) and failure mapping
// as the SIP path: where SIP would forward with P-Identity-Bypass, HTTP answers
// 503 POL5000 with the bypass reason ("timeout", "queue-full", "signer-down",
// "error") as the variable.
//
// Verification: identity, from and to are mandatory, time is optional (now).
// A PASSporT that fails is a 200 answer with verstat TN-Validation-Failed and
// the SIP code and RFC 9410 text of the failure; reasoncode/reasontext are
// omitted on TN-Validation-Passed.
//
// Attestation-only: orig is mandatory, source (the call's source address as
// the SBC saw it) and dest are optional; without source only number rules
// can match. The answer is the policy's decision, exactly what the SIP path
// would sign with for that call.
//
// # Errors (ATIS-1000082)
//
// Every refusal is {"requestError":{"serviceException"|"policyException":
// {"messageId","text","variables"}}} with the standard text (%1, %2 filled by
// variables):
//
//	SVC4000 400 missing request body (Content-Length 0)
//	SVC4001 400 missing mandatory parameter %1; 401 when %1 is Authorization
//	SVC4002 406 Accept does not admit application/json
//	SVC4003 404 unknown path
//	SVC4004 415 Content-Type is not application/json (absent is accepted)
//	SVC4005 400 invalid parameter value (wrong type, unknown attest, stale
//	            iat, unknown member, a TN that is not E.164, bad
//	            configuration on reload);
//	            401 for an unknown bearer token
//	SVC4006 400 body is not one JSON object; 413 over Config.MaxBody
//	SVC4007 411 no Content-Length (chunked body)
//	POL4050 405 method not allowed (Allow header set)
//	POL5000 503 signer unavailable (variable: the bypass reason), request
//	            timeout, no trust store; 500 on internal errors
//
// The X-RequestID request header (up to 256 printable ASCII bytes) is echoed
// on every answer.
//
// # Authentication
//
// The STIR routes and /admin/reload need "Authorization: Bearer <token>"
// with a token from Config.Tokens (LoadTokens: one per line, '#' comments,
// at least MinTokenLen bytes). Only SHA-256 hashes of tokens are kept and
// they are compared in constant time. /healthz, /readyz, /metrics and
// /status are open and read-only (bind --api to a management address). New
// refuses a Config without tokens (ErrNoTokens) unless Lab is set (then the
// API is open) or MonitorOnly is set (then only the open routes exist).
//
// # Status page
//
// GET /status (status.go, statuspage.go, statuspage.html) is one HTML page
// with no script and no external resource (Content-Security-Policy
// default-src 'none'); it reloads itself every 5 s (meta refresh). It shows
// the mode, version, uptime, the certificate in use (Status.Cert, read on
// every request so a renewal shows at once; with ACME, Status.Renewal: the
// next attempt, the last success and failing renewals), the signer chain (breaker,
// readiness, sessions, queue, signed/s and p50/p99 latency over the last
// minute), XDP attachment per interface, the /readyz checks, calls/s by
// outcome over the last minute and hour as inline SVG drawn by the server,
// and the last errors by reason. Rates, latencies and error counts come from
// the metrics registry: Status.Run samples the series of sampledPrefixes
// once a second (61 samples kept) and every 10 s (361 kept) and the page
// differences them, so the page and Prometheus agree. A red banner lists
// what needs action (not ready, bypass ratio over 1 % in the last minute,
// XDP detached or failing open, certificate expiring within 3 days or
// expired), an amber one what is degraded (any bypass, a breaker not
// closed, an error in the last minute other than a call failing
// verification, certificate within 14 days).
//
// # Exposition
//
// The registry's histograms have vmrange buckets (VictoriaMetrics); /metrics
// repeats each as <name>_le_bucket{...,le} with cumulative counts at
// 10^(k/3) s from 10 us to 10 s and +Inf (exposition.go), exact because
// every bound is a vmrange edge, so Prometheus' histogram_quantile works.
// docs/METRICS.md lists every series.
//
// # Reload
//
// Server.Reload (POST /admin/reload; call it on SIGHUP too) re-reads and
// validates the token file, then runs Config.Reload (the appliance's policy,
// trust stores, signer settings); only when both succeed are the new tokens
// installed. A refusal leaves everything running as it was and returns the
// reason. SetVerifier swaps the verification service atomically.
//
// # Concurrency, buffers and limits
//
// A Server is safe for concurrent use. Request bodies are read into pooled
// buffers of Config.MaxBody (default 64 KiB) and never retained. Signing jobs
// (hsm.Request, signing input, response) are pooled; a job given up on
// while the signer still holds it is not returned to the pool, since the
// signer may still write it. Each STIR request runs under Config.Timeout
// (default 2s). Per-request logs are at debug level only. Metrics:
// shakenline_api_requests_total{route,code} and
// shakenline_api_request_duration_seconds{route} for a fixed set of routes
// and codes declared at init, shakenline_api_signed_total{attest},
// shakenline_api_sign_failures_total{reason},
// shakenline_api_reloads_total{result} (POST /admin/reload and SIGHUP, which
// the appliance routes through Server.Reload), shakenline_api_audit_dropped_total.
//
// With Config.Audit set every HTTP-signed call is recorded (package audit):
// the call hash is of X-RequestID when given, else of the origid.
package api
