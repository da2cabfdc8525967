// Package p256verify verifies ECDSA P-256 signatures (ES256, raw r||s) for
// public keys that are seen many times: the handful of carrier
// certificates a verification service meets millions of times.
//
// # What it owns
//
// Key (a decoded public key), the per-key fixed-base table and Cache, which
// decides which keys get a table and bounds their number. Hashing, DER and
// certificate handling belong to the callers (package verify).
//
// # Algorithm
//
// Verification computes R = u1·G + u2·Q with u1 = e/s, u2 = r/s mod n and
// accepts when R is not the point at infinity and x(R) mod n = r (FIPS
// 186-5 section 6.4.2). u1·G is filippo.io/nistec's table-based
// ScalarBaseMult. For u2·Q a tabled key uses its own fixed-base table
// T[i][j-1] = j·2^(7i)·Q (i < 37, j in 1..64): u2 is recoded into 37
// signed base-128 digits and u2·Q is at most 37 point additions and no
// doublings, where nistec's generic ScalarMult needs about 255 doublings
// and 52 additions. A key without a table uses ScalarMult. s⁻¹ mod n is a
// binary extended Euclidean inversion (variable time, no allocation). On
// amd64 and arm64 x(R) is compared without a field inversion: X = r·Z² (or
// (r+n)·Z² when r+n < p) on nistec's Jacobian coordinates, read by
// internal/p256 (shared with package es256: JacobianXZ, guarded by a size
// assertion and a self-test against BytesX; BytesX otherwise). The moduli
// and Montgomery multiplication come from internal/p256 too; the
// variable-time inversion and the comparison are this package's.
//
// Windows of 4 to 8 bits were measured (process CPU time per tabled
// verification on this project's 2-core EPYC: 46, 44, 43, 36 and 34 µs
// against crypto/ecdsa's 85 µs, before the Jacobian comparison); 7 bits
// is the knee (8 bits needs 1.8 times the memory for 6 %). With it a
// tabled verification including SHA-256 takes about 35 µs of CPU against
// 88 µs for crypto/ecdsa.Verify (BenchmarkVerifySigTable and
// BenchmarkECDSAVerifyP256 in package verify, cpu-µs/op).
//
// Every answer equals crypto/ecdsa.Verify's; the tests and FuzzVerify
// compare the two on random keys, genuine and mutated signatures, r or s
// of 0, n and above, high s, wrong keys, sums at infinity and sums that
// are doublings.
//
// # Timing
//
// Verification works on public data only (key, digest, signature), so this
// package is deliberately variable time: table entries are selected by
// digit value, zero digits are skipped and the inversion branches on s. Do
// not use any of it with secret scalars.
//
// # Memory and concurrency
//
// A table is TableBytes (about 222 KiB: 37·64 nistec points of 96 bytes)
// and is built with about 2,400 point additions (about 1.2 ms). A Cache
// keeps at most its maxKeys tables (DefaultMaxKeys = 32, about 7 MiB).
// A key asks for a table on its second use within an epoch (1024
// verifications of untabled keys); the table is built synchronously in
// that verification, while concurrent verifications of the key carry on
// without it. A full Cache replaces its least used key (uses in the
// current epoch) only with a key used at least twice as often. Tables are
// immutable; Cache.Verify takes no lock once a key has its table (one
// atomic add for the use count). Key, Cache and their methods are safe for
// concurrent use. A Key used with several Caches is tabled by the first
// that admits it only; the others use that table when it is there.
package p256verify
