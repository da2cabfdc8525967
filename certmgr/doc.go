// Package certmgr owns the life of the provider's STI certificate when the
// appliance manages it (the acme: block, docs/KEYS.md "Certificates through
// ACME"): it obtains the certificate from the STI-CA through ACME with an
// SPC token, renews it before it expires, publishes it at its x5u and
// switches the signing credential to it without an unsigned call.
//
// # A renewal, stage by stage (the stage label of a failure)
//
//  1. order: newAccount with the account key (finds the existing account).
//  2. token: an SPC token from the Source (STI-PA API or a file), checked
//     before use: tktype TNAuthList, the configured SPC, the account key's
//     fingerprint, unexpired.
//  3. order: newOrder with one TNAuthList identifier whose value is the
//     token's tkvalue (RFC 9448 section 3).
//  4. challenge: the tkauth-01 challenge answered with {"atc": token}
//     (acmez's Challenge.Payload, RFC 9447 section 3), the authorization
//     polled until valid.
//  5. key: a new P-256 key where the chain signs: C_GenerateKeyPair in the
//     token of the first PKCS#11 link (every other PKCS#11 link must see
//     it; a chain mixing PKCS#11 and software links is refused at New,
//     naming the link that would keep the old key), else a software key
//     written 0600 to StateDir/keys; the CSR (subject CN "SHAKEN <SPC>",
//     the TNAuthList extension) is signed where the key is.
//  6. finalize: finalize, then the chain downloaded.
//  7. validate: the leaf holds the new key, is valid now, chains to
//     Config.Trust, and its TNAuthList is exactly {SPC}. A refused
//     certificate's key is removed.
//  8. publish: the chain (PEM, leaf first) put at PublishURL + name + ".pem"
//     (a directory another web server serves, or the built-in Repository),
//     then fetched back with verify.FetchX5U (the verifiers' hardened
//     client) until it is there byte for byte (PublishTimeout). A
//     certificate that could not be published is kept and published at
//     the next attempt, without a new order.
//  9. switch: a new hsm.Chain opened on the new key (same links, names,
//     timeouts), the credential (key + chain + x5u) swapped atomically in
//     the credential.Holder the signing paths read once per call, the
//     state persisted. The previous credential stays open and published
//     for RetireAfter (freshness + signing budget + a margin: every
//     PASSporT signed with it is past freshness by then); then its
//     signers are closed, it is unpublished and its key removed.
//
// Renewal is due when a third of the lifetime is left (RenewBefore). A
// failed attempt changes nothing in use: it is counted
// (shakenline_acme_renewals_total{result="error",stage}), logged at error
// level with the certificate in use and retried after RetryMin, doubling
// up to RetryMax and never more than a tenth of the lifetime.
// shakenline_acme_last_success_timestamp_seconds and
// shakenline_acme_next_attempt_timestamp_seconds follow.
//
// # State (StateDir, 0700)
//
// state.json (the current certificate's name, x5u and key, and the
// retiring ones with their time), certs/<name>.pem, keys/<name>.key
// (software keys, 0600). Load reopens the current credential after a
// restart and publishes it and the retiring ones again.
//
// # Concurrency
//
// Run is one goroutine; Status, Kick and the Holder are safe from any
// other. Keys, PINs and tokens are never logged.
package certmgr
