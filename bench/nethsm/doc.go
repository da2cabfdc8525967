// Package nethsm is the lab's emulated network HSM: a PKCS#11 module in C
// (module/nethsm.c, built from source by Build with the system's C compiler,
// OpenSSL's libcrypto and p11-kit's pkcs11.h; no binary is kept in git) that
// answers like a network HSM (Luna, nShield, Utimaco reached over the
// network) would, and this package's Go side: the build, the configuration
// file, and a client for the module's control socket.
//
// # What the module emulates
//
// One slot with one token holding one P-256 key pair (the key of a PEM file,
// so that it matches the provider's certificate) and a decoy private key.
// CKM_ECDSA signatures are real ES256 signatures (r||s, 64 bytes) that verify
// with the public key, but the device around them is emulated:
//
//   - Latency: a C_Sign answers Latency + U[0, Jitter) after it was made; the
//     calling thread sleeps (clock_nanosleep) meanwhile, as a thread waiting
//     on the network would. C_SignInit and the other calls answer at once
//     (a network HSM client keeps that state locally).
//   - Capacity: the device signs at most Capacity signatures per second,
//     one after the other, for every session together; above it the answers
//     queue and come later and later, as from a saturated device.
//   - A session limit: C_OpenSession answers CKR_SESSION_COUNT beyond
//     MaxSessions.
//   - Host CPU: the expensive part of an ECDSA signature, k·G, is
//     precomputed. From C_Initialize on, PoolThreads threads fill a pool of
//     Pool nonces (r = x(k·G) mod n and k⁻¹ in Montgomery form, from
//     OpenSSL); a C_Sign then takes the next one and computes
//     s = k⁻¹(z + r·d) mod n with two Montgomery multiplications. Each nonce
//     is used once; when the pool is empty a C_Sign computes its own and
//     Stats.PoolMisses counts it. Wait for Stats.PoolFilled == Pool
//     (Device.WaitPool) before a measured run.
//
// # Faults
//
// The module listens on a Unix socket (Config.Control) for one-line commands
// (Device.Cmd and its helpers), switched at run time:
//
//	fault device-error            every call that reaches the device answers
//	fault device-removed          that code until clear; device-removed and
//	fault session-handle-invalid  token-not-present also close every session
//	fault token-not-present       and hide the token (C_GetSlotList, C_GetTokenInfo);
//	                              session-handle-invalid closes each session it answers on
//	hang                          C_Sign blocks until clear
//	slow US                       C_Sign answers US microseconds later
//	stale                         once: every session is closed and the login lost;
//	                              new sessions get the freed handle numbers again,
//	                              and the private key's old object handle now names
//	                              the decoy key
//	set latency_us=N jitter_us=N capacity=N
//	clear                         every fault off; hung calls go on
//	stats                         counters as JSON (Stats)
//
// The stale fault is the case of a device that fails over or restarts under
// a client which keeps its handles: a client that closes or uses a handle
// from before the event may close or sign on another thread's new session,
// or sign with the decoy key. Package hsm must never touch a handle from
// before a loss (see hsm/doc.go, "Breakers and recovery").
//
// # Configuration
//
// The module reads the file named by the NETHSM_CONF environment variable
// at every C_Initialize (Config.Write writes it): `key = value` lines, '#'
// comments. Faults, the pool and the device clock belong to the device and
// survive C_Finalize/C_Initialize. Lab only: the PIN is in that file.
//
// # Limits
//
// One token per process and configuration; the control socket serves one
// client connection at a time. Nothing in the module is hardened against a
// hostile caller: it is a lab instrument, never a signer for real calls.
package nethsm
