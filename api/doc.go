// Package api owns the appliance's HTTP side: the ATIS-1000082 STI-AS/STI-VS
// interface (signing, verification and attestation requests), /healthz,
// /readyz and the Prometheus /metrics exposition. It is never on the SIP
// fast path: the fast path must not import it.
package api
