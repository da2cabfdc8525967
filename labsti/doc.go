// Package labsti is the lab's STIR/SHAKEN governance, reachable over the
// network: an STI-PA that issues SPC tokens through a token API and an
// STI-CA that issues provider certificates through ACME (RFC 8555) for
// TNAuthList identifiers (RFC 9448) against the tkauth-01 challenge
// (RFC 9447), with CRLs and short lifetimes so that renewals can be
// watched. `appliance lab-sti` runs it; docs/KEYS.md ("Lab STI-PA and
// STI-CA") lists its API. It is a lab tool, like package labpki: no
// rate limits, state in memory, /lab without authentication.
//
// # What it owns
//
//   - The STI-PA (pa.go): accounts, one per SPC, whose passwords New writes
//     to Dir/stipa-<SPC>.json; POST /sti-pa/api/v1/auth/login and POST
//     /sti-pa/api/v1/account/{SPC}/token/ (package spctoken has the shapes);
//     a token is issued only for the account's own SPC, bound to the
//     fingerprint the request names; GET /sti-pa/cert.pem is the x5u of its
//     tokens.
//   - The STI-CA (acme.go): GET /acme/directory, new-nonce, new-account,
//     new-order (exactly one TNAuthList identifier, value base64 of the DER
//     in either alphabet), authz (one tkauth-01 challenge, tkauth-type
//     "atc", token-authority the STI-PA), chall (the answer {"atc": token}
//     is judged at once: signed by the STI-PA, unexpired, TNAuthList the
//     order's, fingerprint the account key's), finalize (CSR signed by a
//     P-256 key, TNAuthList extension equal to the identifier; issued at
//     once, Lifetime long, by the intermediate), cert
//     (application/pem-certificate-chain: leaf, intermediate), revoke-cert,
//     key-change. JWS: ES256, ES384, RS256; nonces single use, 10 minutes.
//   - Faults (POST /lab/fault {"pa": ..., "ca": ...}): down, refuse,
//     challenge-fail, wrong-tnauth, untrusted (see the Fault constants); GET
//     /lab/stats counts issued certificates and tokens.
//   - Files in Dir (created 0700, keys 0600, kept across runs): root.pem
//     and intermediate.pem (the trust anchor and issuing CA), sti-pa.pem
//     (the STI-PA's token signing certificate), tls-root.pem (the anchor of
//     the https listener's certificate tls-<host>.pem), stipa-<SPC>.json.
//   - Plain http on CRLListen: /ca/root.crl (signed by the root) and
//     /ca/intermediate.crl (revoked provider certificates), the
//     distribution points of the issued chain, and /ca/*.pem.
//
// # Concurrency
//
// One mutex guards the ACME state and one the STI-PA's access tokens;
// handlers run on net/http's goroutines.
package labsti
