// Package passport builds, parses and verifies SHAKEN PASSporTs (RFC 8225,
// RFC 8588) carried in the SIP Identity header (RFC 8224, ATIS-1000074).
//
// # What it owns
//
// The byte layout of the protected header, the canonical claims JSON
// (lexicographically ordered keys, no whitespace, RFC 8225 section 9), the
// base64url encoding (RFC 7515 section 2, no padding) and the Identity header
// value "<jws>;info=<x5u>;alg=ES256;ppt=shaken", for three PASSporT types
// (a Builder per type, NewBuilderPPT):
//
//   - shaken (RFC 8588): AppendSigningInput; Claims.RCD adds the Rich Call
//     Data claims crn, rcd and rcdi in their lexicographic places
//     (RFC 9795, in the shaken PASSporT as ATIS-1000094 has it);
//   - div (RFC 8946 section 3): AppendDivSigningInput, claims dest, div,
//     iat and orig (orig copied from the diverted call's PASSporT);
//   - rcd (RFC 9795): AppendRCDSigningInput, claims crn, dest, iat, orig,
//     rcd and rcdi.
//
// It does not fetch certificates or linked content or decide policy: that
// is package verify, package rcd and package policy.
//
// # Hot path
//
// A Builder precomputes everything that depends only on the x5u URL. For every
// call, AppendSigningInput and AppendIdentity append into a caller-owned
// buffer and allocate nothing when the buffer has capacity (see
// SigningInputCap); the timing tests prove 0 allocations per call.
// AppendSigningInput needs temporary room for the raw claims JSON after the
// encoded bytes, so give it cap(dst) >= len(dst)+SigningInputCap(c).
//
// # Off the hot path
//
// VerifySignature, Sign, SignDiv, SignRCD and AppendSigningInputJSON
// allocate and use encoding/json. ParseIdentity (shaken only) and
// ParseIdentityAny (shaken, div, rcd; the verification service's per-call parse)
// reads the header and claims JSON with its own strict parser
// (claimsjson.go: one pass, claims as substrings of one decoded string,
// about 7 allocations per Identity header; duplicate claims and a top level
// that is not an object are refused; rare inputs such as names matching a
// claim only case-insensitively go to encoding/json after the syntax
// check; FuzzClaimsJSON compares it with encoding/json). Inputs are
// bounded: a header value longer than MaxIdentityLen is rejected with
// ErrMalformed.
//
// # Concurrency and buffer lifetime
//
// A Builder is immutable after NewBuilder and safe for concurrent use. The
// Append functions never retain dst, Claims or the signature after they
// return. Claims slices (Orig, Dest) may point into a packet buffer; they are
// only read during the call. An Identity returned by ParseIdentity owns its
// memory (it copies out of the input string).
package passport
