// Package hsm owns ES256 signing for the appliance: the Signer interface,
// the PKCS#11 signer (miekg/pkcs11, sessions pooled per worker), the software
// signer, the failover Chain with per-signer timeouts and circuit breakers,
// and RFC 7512 pkcs11: URI parsing.
//
// # Flow
//
// An event loop fills a Request (digest, deadline, Done callback) and calls
// Chain.Submit, which never blocks: it picks the first signer whose breaker
// admits the request and whose sessions are usable, and pushes the request
// onto that signer's queue (spilling to the next signer when the queue is
// full). Each signer has Workers goroutines (PKCS#11: one session each,
// GOMAXPROCS of them, 4 to 8, by default). A free worker takes the first
// waiting request and up to its fair share of the others already queued; a
// PKCS#11 worker signs that batch on its session in one cgo call, straight
// through the module's CK_FUNCTION_LIST (the one miekg/pkcs11 loaded):
// C_SignInit(CKM_ECDSA) and a single C_Sign into a 64-byte buffer per
// 32-byte digest, no allocation, the token's r||s copied into Request.Sig
// unchanged. Batches are kept to about 2ms of signing (and an eighth of the
// timeout) by the measured time per signature, so a slow device spreads its
// queue over its sessions. One call per batch saves, per signature, a
// cgo crossing and the Go scheduler hand-offs around it, plus the length
// query miekg/pkcs11 makes before every C_Sign (a full round trip when the
// device is behind a wire, as with p11-kit-client). A failed call
// moves the request to the next signer; a call still running after the
// signer's Timeout is taken away by the signer's monitor goroutine and moved
// on the same way. When no signer is left, or the request's Deadline passes,
// Request.Err is set and Done is called: the fast path then forwards the
// INVITE without Identity and with P-Identity-Bypass: BypassReason(err)
// ("timeout", "queue-full", "signer-down", "error").
//
// # Remote links
//
// A link may also be a remote STI-AS (SignerConfig.Remote, a RemoteSigner:
// package stias). It signs whole PASSporTs, not digests: it takes the
// call's signing input (Request.Input, which the submitter sets beside
// Digest; a request without one skips remote links) and answers with a
// whole Identity header value (Request.Identity, set instead of Sig), which
// the submitter stamps as it is. Its workers run one request each (no
// batching); queue, timeout, breaker, metrics and bypass rules are every
// link's. Its key is not checked against the certificate: it signs with the
// remote's certificate, and the FCC own-certificate rule for it is checked
// by the RemoteSigner at its answers.
//
// # Breakers and recovery
//
// Each signer's breaker opens after Breaker.Failures consecutive failures or
// timeouts, sends nothing for OpenFor, then admits HalfOpenProbes requests;
// a probe's success closes it, a failure opens it again. Lost PKCS#11
// sessions (token removed, device reset, C_Sign session errors) are reopened
// in the background with exponential backoff without restarting the process:
// the token is found again by its URI attributes, logged in, the key found and
// checked against the certificate. A module that no longer sees the token is
// re-initialised (C_Finalize/C_Initialize; at most every 500ms); a module
// shared by two signers is loaded once and re-initialised under a lock no
// call runs across, and signers drop every handle from before it. A login
// refused for its PIN (changed while the token was away) stops recovery
// before repeated attempts lock the token; a token present without a user
// PIN yet (re-provisioned in two steps) is retried until it has one.
//
// A device that resets or fails over may hand the numbers of the sessions
// (and objects) it dropped out again, so a handle from before a loss is
// never closed or used one at a time: it could name another worker's new
// session, or another key. Recovery first waits (at most a second) for the
// calls that may still hold old handles, then closes every session of the
// slot at once (C_CloseAllSessions; skipped when another signer of the
// process works on the same slot) before it opens new ones; a batch under
// way checks, before each signature, that the token it started with is
// still current, and stops otherwise. The lab's emulated network HSM
// (bench/nethsm, fault "stale") tests exactly this.
//
// Sessions are opened when the signer opens. A token that allows fewer
// than asked for (CKR_SESSION_COUNT; the session that holds the login
// counts too) leaves the signer with the ones it gave, and a Chain runs one
// worker per session; a token that refuses a session later retires that
// one and the signer works on with the rest.
// Health and the metrics shakenline_hsm_{signed_total, failures_total,
// breaker_state, sessions, ready, queue_depth, sign_duration_seconds} (label
// signer) and shakenline_hsm_unsigned_total (label reason) expose the state.
//
// # Keys (FCC own-certificate rule)
//
// Every signer in a chain must sign with the key of the provider's own
// certificate; New refuses a signer whose public key differs. The software
// fallback therefore holds a copy of the same private key the HSM holds. It
// is provisioned by generating the key pair inside a controlled environment
// (or exporting it once, wrapped, from the HSM when the HSM allows export of
// that key), importing one copy into each token (softhsm2-util --import /
// the vendor's key-import tool) and writing the fallback copy as a PKCS#8 PEM
// file readable only by the appliance user (mode 0400), given with --key.
// An operator who does not want the key outside the HSM leaves the software
// signer out of the chain and accepts P-Identity-Bypass when every HSM is
// down.
//
// # Key generation (certificate renewal)
//
// GenerateKey makes a new P-256 key pair inside a token (C_GenerateKeyPair;
// the private key sensitive and not extractable), labelled and identified
// by the caller, so that a renewed certificate's key is born where it signs;
// CryptoSigner turns any Signer into the crypto.Signer crypto/x509 needs to
// sign the CSR for it through PKCS#11. HasKey checks that another token (a
// replicated cluster member) sees the key; DestroyKey removes a retired key.
// A renewal builds a second Chain on the new key while the old one finishes
// its calls: the links of one name in both share their metric series (the
// counters count both, the gauges show the newest), so /metrics never shows
// a series twice.
//
// # Concurrency and buffers
//
// Submit is safe from any number of goroutines and allocates nothing. A
// Request belongs to the chain from a successful Submit until Done, which is
// called exactly once from a chain goroutine; workers copy the digest in and
// the signature out, so a request taken away on timeout is never written by
// the stuck worker (for a batch, the timeout applies to the whole call and
// takes the whole batch away). Signers are safe for concurrent use.
//
// # Limits
//
// PINs come only from a file (pin-source=file:...); pin-value is refused and
// the PIN is never logged. Only ECDSA P-256 keys are accepted. A C_Sign that
// never returns keeps its worker and session; the other workers and signers
// carry on.
package hsm
