// Package es256 is the software ES256 (ECDSA P-256 with SHA-256) signer:
// the fallback when HSMs fail and the whole signing capacity of a node
// without one. It owns the private scalar it is given, a pool of
// precomputed nonces and the goroutines that refill it. It signs digests;
// hashing, JWS encoding and DER conversion belong to the callers (package
// hsm wraps it).
//
// # Offline and online
//
// ECDSA is split in two. Offline, refill workers draw nonces k uniformly
// from the system CSPRNG (rejection sampling), compute k·G with
// filippo.io/nistec's constant-time fixed-base multiplication, and turn a
// batch of them into tokens (k⁻¹, k⁻¹·r·d, r) sharing one inversion mod n
// for all k⁻¹ and one inversion mod p for all the affine x coordinates
// (Montgomery's trick). Online, Sign pops a token and computes
// s = k⁻¹·e + k⁻¹·r·d mod n: one Montgomery multiplication and one modular
// addition; Sign with a warm pool takes about 0.1 µs and allocates nothing.
//
// Each token is used exactly once: Sign removes it from the pool and wipes
// its slot before releasing the pool lock. Tokens live only in memory and are
// never persisted; Close wipes the pool and the private scalar. Go gives no
// guarantee about copies the runtime or compiler make (registers, spilled
// stack temporaries), so wiping is best effort below the level of this
// package's own buffers. Nor does this package lock pages in memory: on a
// host with unencrypted swap or core dumps enabled, tokens and the key can
// reach disk that way, as any in-memory key can.
//
// When the pool is empty Sign computes a small batch inline (at most 32
// tokens), signs with one and pools the rest, so sustained overload degrades
// to the raw signing rate and never to an error.
//
// # Constant time
//
// Nothing that depends on k, k⁻¹, d or the tokens selects a branch or a
// memory index. Scalar and field arithmetic is our own 4-limb Montgomery
// code built from math/bits Mul64/Add64/Sub64 and mask selects, fuzzed
// against math/big: the moduli, Montgomery multiplication, reduction and
// byte conversion in internal/p256 (shared with package p256verify), modular
// addition, inversion and batched inversion here (arith.go).
// filippo.io/bigmod does the same job in constant time but is tuned for RSA
// sizes and costs about 0.45 µs per 256-bit modular multiplication here,
// about eight times ours (it remains the cross-check in internal/p256's
// tests). Inversion is Fermat exponentiation by the public exponent m-2.
// The only branches on secret-derived values are the rejection of
// k ∉ [1, n-1] and of r = 0 or s = 0, each of which discards the value it
// tested.
//
// How that was checked: (1) review of every function that touches k, k⁻¹,
// d or a token (drawK, finish, online, New, everything in arith.go and in
// internal/p256's arith.go); (2) TestArithmeticBranchFree compiles this
// package and internal/p256 with -gcflags=-S and fails if the leaf
// arithmetic (modAdd and online here; MontMul, ReduceOnce, LessThan,
// IsZero, ToMont, FromMont, SetBytes, PutBytes and JacobianXZ there)
// contains any conditional jump other than the stack-growth check, or any
// scaled-index memory access; (3) dudect-style benchmarks in
// es256_timing_test.go (BenchmarkDudectOnline, BenchmarkDudectOffline, with
// BenchmarkDudectControl as the positive control) report Welch's |t| for
// fixed versus random secrets. They are benchmarks to read, not timed
// pass/fail tests.
//
// On amd64 and arm64 the batch reads nistec's Jacobian coordinates directly
// (p256.JacobianXZ) to avoid one field inversion per point; a size
// assertion and a self-test against nistec's BytesX (p256.JacobianOK, run
// once before the first Signer is built) guard that, and the portable path
// (BytesX per point) is used if either fails.
//
// # Concurrency
//
// A caller with idle gaps of its own, an event loop between datagrams, can
// refill the pool itself with a Refiller, one scalar multiplication per
// Step: it keeps its CPU instead of sleeping, and no thread switch or wakeup
// is paid for that refill work.
//
// A Signer is safe for concurrent use. Sign holds the pool mutex only to pop
// a token and run the online step (well under a microsecond). Refill workers
// wake when the pool falls below half full and refill it to the top in
// batches of Options.BatchSize, taking the mutex only to push a finished
// batch. Each worker holds an OS thread of its own in the SCHED_IDLE class
// (nice 19 where that is refused), so the kernel runs an event loop the
// moment it has work and refill only in the time the loops leave. Work
// outside the process can starve an idle thread, so when Sign takes the pool
// down to a quarter it puts the workers back to normal priority (where the
// kernel allows it: root or CAP_SYS_NICE), and each lowers itself again once
// the pool is back above that. A worker that cannot lower its priority at
// all yields after every scalar multiplication instead. The thread ends
// with the worker (Close), never running other goroutines at idle priority.
//
// # Buffers and limits
//
// Sign reads *digest and writes *sig before returning and keeps neither.
// The pool holds at most MaxPoolSize tokens of 96 bytes; batches at most
// MaxBatchSize. Only P-256 keys are accepted.
package es256
