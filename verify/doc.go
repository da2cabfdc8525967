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
//  7. TNAuthList (RFC 8226): SPC form passes and the SPC is recorded; a TN
//     or TN range form must cover orig -> else 438; missing -> 437.
//  8. ES256 signature -> else 438.
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
// no header: Config.DefaultCacheTTL; at most Config.MaxCacheTTL). Failures
// are not cached.
//
// Not done yet: CRL / OCSP checking (labpki can make CRLs; the distribution
// points are not fetched), cache persistence and preloading.
//
// # Concurrency and memory
//
// A Verifier is safe for concurrent use. Verify copies what it keeps. Memory
// is bounded by CacheSize entries of at most MaxCertBytes each and by the
// replay filter, two generations of at most ReplayCapacity 32-byte hashes.
package verify
