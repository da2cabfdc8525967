// Package p256 is the P-256 modular arithmetic that the signer (package
// es256) and the verifier (package p256verify) share: the two moduli (the
// field prime p and the group order n) with their Montgomery constants,
// Montgomery multiplication, reduction and byte conversion on 4-limb
// integers, and the direct read of filippo.io/nistec's Jacobian
// coordinates that spares each of them a field inversion.
//
// # What it owns
//
// Elem, Modulus, FieldP and OrderN, the arithmetic in arith.go, JacobianXZ
// and its once-per-process self-test (JacobianOK). What each caller builds
// on top stays with it: es256 owns its constant-time modular addition,
// Fermat inversion and batched inversion; p256verify owns its variable-time
// inversion and the x-coordinate comparison.
//
// # Constant time
//
// es256 feeds secrets (nonces, their inverses, the private scalar) through
// this package, so every function in arith.go is constant time in its Elem
// arguments: fixed-length straight-line code of math/bits Mul64, Add64 and
// Sub64 and mask selects, with no branch and no memory index that depends
// on a value. es256's TestArithmeticBranchFree compiles this package with
// -gcflags=-S and fails on any conditional jump (other than the stack
// check) or scaled-index memory access in MontMul, ReduceOnce, LessThan,
// IsZero, ToMont, FromMont, SetBytes, PutBytes and JacobianXZ. p256verify,
// which works on public values only, uses the same code.
//
// # Jacobian coordinates
//
// On amd64 and arm64 (without the purego tag) nistec v0.0.4 backs
// P256Point with three [4]uint64 limb arrays X:Y:Z, Jacobian (x = X/Z²,
// y = Y/Z³), in the Montgomery domain with R = 2²⁵⁶: the representation
// FieldP uses. JacobianXZ reads X and Z there. This reads unexported fields
// of a pinned dependency, so it is guarded twice: a size assertion fails
// the build if the struct changes size, and JacobianOK runs a self-test
// once (X = x·Z² against nistec's BytesX on points with Z ≠ 1, and Z = 0
// for the point at infinity) and reports false if anything differs.
// Callers use JacobianXZ only when JacobianOK is true, and nistec's BytesX
// (one inversion per point) otherwise.
//
// # Buffers and concurrency
//
// Functions write only their destination arguments and keep nothing; they
// are safe for concurrent use on distinct destinations. JacobianOK is safe
// for concurrent use.
package p256
