// Package tnauth encodes and decodes the TN Authorization List certificate
// extension of RFC 8226 section 9 (OID 1.3.6.1.5.5.7.1.26), which says which
// telephone numbers a STIR/SHAKEN certificate may sign for:
//
//	TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry
//	TNEntry ::= CHOICE {
//	  spc   [0] ServiceProviderCode,      -- IA5String
//	  range [1] TelephoneNumberRange,
//	  one   [2] TelephoneNumber }
//	TelephoneNumberRange ::= SEQUENCE {
//	  start TelephoneNumber,
//	  count INTEGER (2..MAX), ... }
//	TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*"))
//
// The ASN.1 module uses EXPLICIT tags, so each choice is a constructed
// context tag wrapping the universal encoding ([0] { IA5String }).
// Marshal writes exactly that DER. Parse also accepts the IMPLICIT encodings
// ([0] primitive IA5, [1] constructed range contents, [2] primitive IA5)
// that some early issuers produced, and ignores extension fields after count.
//
// # Semantics
//
// A SHAKEN certificate normally carries the SPC form (ATIS-1000080): the
// certificate speaks for a service provider, not for numbers, and Covers
// reports false for every TN; the verifier records the SPC instead. The TN
// forms cover a number when it equals a listed TN, or when it has as many
// digits as a range's start and lies in [start, start+count).
//
// # Concurrency and limits
//
// All functions are pure; a List is a value. Parse rejects input over
// MaxDER bytes and lists with more than MaxEntries entries.
package tnauth
