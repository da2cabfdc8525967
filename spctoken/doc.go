// Package spctoken owns the SPC token of ATIS-1000080 (the "access token"
// an STI-PA gives a service provider, RFC 9448 section 5): an ES256 JWT
// whose atc claim names the TNAuthList the provider may obtain a
// certificate for, bound to the fingerprint of its ACME account key; and
// the two ways the appliance obtains one.
//
// # What it owns
//
//   - Claims, Sign (the lab STI-PA signs with it), Parse and Verify (a CA
//     checks a token with the STI-PA's key), TNAuthList (the atc tkvalue,
//     base64 DER, standard or URL alphabet), Fingerprint ("SHA256 " and the
//     colon-separated upper-case hex SHA-256 of the DER SubjectPublicKeyInfo
//     of the account key).
//   - Source, the client side: APISource asks an STI-PA's token API (the
//     layout of iconectiv's STI-PA API, STI-PA-US-API-001: POST
//     {base}/api/v1/auth/login with {"userId","password"} for a bearer
//     access token, then POST {base}/api/v1/account/{account}/token/ with
//     {"atc":{"tktype":"TNAuthList","tkvalue":...,"ca":false,
//     "fingerprint":...}}, answered {"status":"success","token":...,
//     "crl":...}); FileSource reads a token that another tool keeps fresh in
//     a file. Check validates what either returns before it is used: ES256
//     JWT, tktype TNAuthList, ca false, the TNAuthList the configured one,
//     the fingerprint the account key's, not expired.
//
// The API credentials are read from a file at each login and never logged;
// tokens are bearer credentials too and are never logged whole.
//
// # Concurrency
//
// Sources are safe for concurrent use; APISource keeps its access token
// under a mutex.
package spctoken
