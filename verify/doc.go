// Package verify is the STIR/SHAKEN verification service (STI-VS) core: it
// takes the Identity header values of an INVITE and answers with a verstat
// (ATIS-1000074 section 5.3) and, on failure, the SIP response code and
// RFC 9410 reason text.
//
// # Checks, in order, per Identity header
//
//  1. parse (passport.ParseIdentity): malformed, compact form -> 438;
//     a PASSporT whose ppt is not "shaken" is skipped; alg other than
//     ES256 -> 437.
//  2. the info parameter equals the x5u claim -> else 436.
//  3. iat within Config.Freshness of the verification time, in both
//     directions -> else 403 Stale Date (RFC 8224 section 6.2.2).
//  4. orig/dest match the call's From/To numbers when the caller gives them
//     -> else 438.
//  5. x5u fetched (or taken from Config.Static or the cache) -> else 436.
//  6. the chain ends in one of the named trust stores and every certificate
//     was valid at iat -> else 437. Result.TrustStore names the store.
//     No certificate below the anchor is revoked (see CRLs) -> else 437
//     with ErrRevoked, or ErrCRLUnavailable when failing closed.
//  7. TNAuthList (RFC 8226): SPC form passes and the SPC is recorded; a TN
//     or TN range form must cover orig -> else 438; missing -> 437.
//  8. ES256 signature (p256verify; same verdicts as crypto/ecdsa) -> else
//     438.
//  9. replay: the same signing input seen within the replay window ->
//     TN-Validation-Failed, 438, Detail "replayed PASSporT". A SIP stack
//     must therefore verify once per transaction, not per retransmission.
//
// With several Identity headers the call passes when any SHAKEN PASSporT
// passes; otherwise the first SHAKEN failure is reported. No Identity header
// gives No-TN-Validation with 428, only non-SHAKEN ones No-TN-Validation
// with 438. Every other failure is TN-Validation-Failed.
//
// # x5u fetching
//
// https only unless Config.AllowHTTP. The dialer checks the address it is
// about to connect to (after DNS resolution, in net.Dialer.Control, so DNS
// rebinding cannot bypass it) and refuses loopback, private, link-local,
// CGNAT, benchmarking, unspecified, multicast and reserved targets unless
// Config.AllowPrivate. Environment proxies are not used. At most
// Config.MaxRedirects redirects, never to another scheme. Responses over
// Config.MaxCertBytes are refused. Concurrent fetches of one URL collapse
// into one (singleflight); a fetch runs under its own timeout and is not
// cancelled when one waiting caller goes away. Results are cached in a
// bounded LRU for the Cache-Control max-age (no-store/no-cache: not cached;
// no header: Config.DefaultCacheTTL; at most Config.MaxCacheTTL). A failed
// fetch is remembered for Config.FailureTTL (default 5s): calls naming that
// URL meanwhile get its error (436) at once instead of each waiting up to
// FetchTimeout on a repository that is down; a successful fetch of the URL
// forgets it; at most CacheSize failures are remembered. Stats and the metrics below count hits, misses, fetch
// failures and calls answered from remembered failures.
//
// FetchX5U exposes the same client to a publisher: certmgr fetches a
// renewed certificate from its own x5u before it signs with it.
//
// With Config.CacheDir every cached chain is also written to
// CacheDir/<hash of URL>.pem (a PEM header block with the URL and expiry,
// then the chain), through a temporary file, fsync and rename, by one
// background writer (queue of 256; when full the chain is not written,
// counted). New loads the unexpired files, newest expiry first up to
// CacheSize, and deletes expired ones; malformed files are skipped and
// counted. A loaded chain is verified like a fetched one, so the directory
// cannot add trust. With Config.PreloadFile (one http(s) URL per line,
// blank lines and '#' comments skipped, see ParsePreload) New starts
// fetching the listed URLs with 4 workers; PreloadDone is closed when they
// are done. Close stops the background work and flushes the writer.
//
// # Trust stores and reload
//
// The named stores form an immutable snapshot behind an atomic pointer.
// SetTrust (with LoadTrust to read PEM files) swaps in a new one while
// Verify runs: a verification uses one snapshot throughout. Each cached
// chain keeps its last verdict (anchoring store, validity window,
// revocation outcome) tagged with the snapshot and CRL generations; a warm
// Verify checks the tags with two atomic loads and recomputes only after a
// change. Config.Trust is read only by New.
//
// # CRLs
//
// After the chain verifies, the leaf and each intermediate that carry CRL
// distribution points are checked (the anchor is not). The CRL is fetched
// with the same hardened client as x5u (address checks, redirects, size
// limit Config.MaxCRLBytes) except that http is allowed without
// AllowHTTP: CRLs are signed, and RFC 5280 distribution points are
// normally http; non-http(s) points (ldap) are ignored. It is accepted only
// when issued by the certificate's issuer (name, key identifier and
// signature) and current (thisUpdate not in the future, nextUpdate not
// passed); any one usable distribution point decides. A serial listed on a
// CRL is revoked even when that CRL is stale. CRLs are cached by URL
// (Config.CRLCacheSize), failures too, so the verification path never
// fetches a CRL twice; a background goroutine refetches each CRL at its
// nextUpdate or after Config.CRLRefresh (default 1h), whichever is first,
// and retries failures every Config.CRLRetry (default 1m). A failed
// refresh keeps the previous CRL. RefreshCRLs refetches all at once (for
// an operator's reload). Only the first verification of a chain with a CDP
// it has never seen waits for that CRL (at most FetchTimeout).
//
// A certificate with no usable CRL (unreachable, HTTP error, bad
// signature, stale) fails open by default: the verification passes and is
// counted (Stats.CRLFailOpen, shakenline_verify_crl_fail_open_total), so a
// CRL server outage does not fail every call. Config.CRLFailClosed makes it
// a 437 with ErrCRLUnavailable instead. A certificate without any
// distribution point is not checked. OCSP is not supported.
//
// # Metrics
//
// Declared once in metrics.go (VictoriaMetrics default set, process-wide):
// shakenline_verify_x5u_cache_{hits,misses}_total,
// shakenline_verify_x5u_fetch_failures_total,
// shakenline_verify_x5u_failure_cache_hits_total,
// shakenline_verify_x5u_cache_{loaded,persisted,persist_failures}_total,
// shakenline_verify_crl_{fetches,fetch_failures,fail_open}_total and
// shakenline_verify_results_total{verstat,code}.
//
// # Concurrency and memory
//
// A Verifier is safe for concurrent use, including SetTrust and
// RefreshCRLs during Verify. Verify copies what it keeps. Memory is bounded
// by CacheSize entries of at most MaxCertBytes each, CRLCacheSize CRLs of at
// most MaxCRLBytes each, and the replay filter, two generations of at most
// ReplayCapacity 32-byte hashes. Background goroutines: the CRL refresher
// (unless DisableCRL), the cache writer (with CacheDir) and the preload
// workers (with PreloadFile), all ended by Close.
//
// # Speed
//
// A warm verification is one Identity parse (passport's own JSON parser,
// no encoding/json), map and atomic lookups, SHA-256 and one signature
// check by package p256verify. Each Verifier has a p256verify.Cache: a
// certificate key gets a precomputed table (about 222 KiB) on its second
// use, after which its verifications take about half of crypto/ecdsa's
// time; at most Config.FastKeys keys (default 32, about 7 MiB) have one.
// Keys without a table are verified by the same code with a generic
// scalar multiplication. See verify_timing_test.go: BenchmarkVerifyWarm,
// BenchmarkVerifyWarmNoTables, BenchmarkVerifySigTable (the signature
// step alone) and BenchmarkECDSAVerifyP256 (crypto/ecdsa, the reference).
package verify
