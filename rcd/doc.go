// Package rcd owns Rich Call Data (RFC 9795; the SHAKEN profile is
// ATIS-1000094): the rcd, crn and rcdi claims a policy rule signs for a
// brand (Compile, Resolve), and the terminating side's check of the claims
// a call carries against the content they link to (Check).
//
// # Claims
//
// A rule's rcd (docs/CONFIG.md, "policy") gives nam (the display name,
// required), icn (an icon URL), jcl (a jCard URL) or jcd (an inline jCard,
// RFC 7095; not both jcl and jcd, RFC 9795) and crn (the call reason).
// Compile checks them and encodes them canonically (RFC 8225 section 9,
// passport.CanonicalJSON). Resolve fetches every linked resource (icn,
// jcl, and the URIs of jCard properties of value type uri, in jcd or in
// the fetched jcl) and writes rcdi: one digest per resource, keyed by the
// JSON pointer (RFC 6901) of its URL from the rcd claim ("/icn", "/jcl",
// "/jcd/1/3/3", "/jcl/1/3/3" for a URI inside the fetched jCard). A
// digest is "sha256-" and the standard base64 of the SHA-256 of the
// content, padded (the W3C Subresource Integrity form RFC 9795 refers
// to). Resolve runs when the policy loads; its fetch is the caller's (the
// appliance passes the hardened client of package verify), and a failure
// refuses the policy with the URL and the reason.
//
// # Check
//
// Check takes the rcd, rcdi and crn claims of a PASSporT whose signature
// verified and decides what may be shown: every rcdi entry is resolved,
// its URL fetched (through the caller's fetch, which caches) and its
// digest compared (sha256, sha384 or sha512; base64 with or without
// padding, standard or URL alphabet). One mismatch or failed fetch fails
// the whole rcd (ErrIntegrity, ErrFetch): nothing of it is shown. A
// linked resource without an rcdi digest is not shown (its content is
// not integrity protected); the name and call reason are (they are
// signed).
//
// The package does no I/O of its own and keeps no state; it is safe for
// concurrent use.
package rcd
