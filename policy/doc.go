// Package policy decides, per call, the SHAKEN attestation level (A full,
// B partial, C gateway; ATIS-1000074 section 5.2.3) from operator rules.
//
// A rule matches on the source address of the INVITE (the trunk: a host or a
// prefix) and/or on the calling number against an inventory of numbers the
// provider itself assigned (exact numbers, prefixes, and ranges). The
// inventory is written in E.164 as given (docs/API.md, "Telephone
// numbers": e164.AppendGiven and AppendGivenPrefix); Build refuses a
// national number, which could never match the E.164 calling numbers
// Decide is given. Rules are
// tried in order and the first match wins; when none matches the configured
// default applies. This keeps the attestation decision with the provider (the
// FCC own-certificate rule) while the signing itself may happen anywhere.
//
// A sign rule may also add PASSporTs: div (RFC 8946) to retargeted calls
// that carry a SHAKEN Identity, matched by DecideDiv on the number the
// call was diverted from, and Rich Call Data (RFC 9795, package rcd) to
// the calls it signs, in the shaken PASSporT or an rcd one
// (docs/CONFIG.md, "policy"; docs/STANDARDS.md, "div" and "rcd").
// ResolveRCD fetches the content an rcd links to and computes its rcdi
// digests; it runs once, before the table is stored, and a failure keeps
// the table from being used.
//
// A Table is immutable once built (and resolved) and safe for concurrent use. Holder swaps a
// Table atomically on reload, so a reload never blocks or drops a call: an
// in-flight decision finishes on the table it started with.
//
// Decide allocates nothing; it costs one pass over the rules, a prefix check
// per source prefix and a binary search per number inventory.
package policy
