// Package e164 canonicalises telephone numbers to E.164 digits without '+'
// or separators, the form RFC 8224 section 8.3 signs and compares, for any
// default region, using the numbering-plan metadata of
// github.com/nyaruka/phonenumbers (a port of Google's libphonenumber).
//
// It owns the two rules of docs/API.md, "Telephone numbers": a
// Canonicalizer reads a number out of a SIP URI, dialled in a default
// region (rule S, below); AppendGiven and AppendGivenPrefix take a number
// already written in E.164 (rule G: the HTTP API, JSON claims, the policy
// inventory), never adding a country code, and refuse what is not E.164
// with a *GivenError whose text a client can act on (given.go).
//
// # Canonicalise, do not judge
//
// A Canonicalizer never rejects a number because a numbering plan calls it
// invalid or unassigned (new ranges, fictional 555-01xx numbers, unknown
// country codes after '+'): such numbers are returned as dialled, with the
// country code. It only fails on input that is not a number
// (ErrNotNumber: empty or a non-digit byte), on a result over the 15-digit
// E.164 limit (ErrTooLong) and on one too short to hold a country code and
// a national significant number of at least two digits (ErrTooShort).
// New fails with ErrRegion for a region the metadata does not know.
//
// # Rules
//
//   - global (the number had '+', or a global phone-context): the digits are
//     returned unchanged.
//   - dialled with the default region's international prefix when that is
//     a digit string ("011" in NANP, "00" in most of the world, "810" in
//     RU): the prefix is removed and the rest is treated as a global
//     number. Like a '+' number it is not further normalised, so
//     "0044 0 20..." keeps the 0 (libphonenumber would strip the foreign
//     trunk prefix). Where the international prefix is a pattern (AU
//     "0011", BR, KR, NZ, MX, ...) phonenumbers.Parse decides, with the
//     library's semantics.
//   - otherwise the number is national: the default country's calling code
//     is prefixed and the national (trunk) prefix removed exactly as
//     libphonenumber's parser does (including its checks that the rest is
//     of a possible length and still a viable number, and its handling of
//     national numbers that already begin with the country code). Leading
//     zeros that belong to the national number (Italy) are kept.
//
// # Allocation
//
// Append allocates nothing when dst has room for the result and the input
// is one of:
//
//   - a global number, or one dialled with a digit-string international
//     prefix (every region except those whose prefix is a pattern: AU, BR,
//     CN, KR, MX, NZ, ... which use the library);
//   - a NANP number of ten digits starting 2-9, or 1 plus such ten digits;
//   - a national number in a region whose national-prefix-for-parsing is
//     absent or made of plain digit alternatives without a transform rule
//     (GB, DE, AT, CH, FR, IT, ES, NL, BE, SE, FI, IE, HU, RU, IN, ZA, IL,
//     SG, PL, NZ, MX and most others), unless the number begins with the
//     country code's digits or matches a pattern international prefix.
//
// Everything else goes through phonenumbers.Parse and allocates a few
// hundred bytes: national numbers of JP, AU, BR, AR, CN, KR, CO, BO, BY,
// LT, LU, LI, FO, GA, MG, NF, SM, GG, IM, JE (prefix patterns or transform
// rules), NANP numbers other than the two forms above (for example seven
// digits in a territory that supplies its area code), national numbers
// starting with the country code's digits (Italian mobiles 39x...), and
// input matching a pattern international prefix. The choice is made
// in New from the region's metadata (country code, international prefix,
// national prefix for parsing, transform rule, possible lengths, general
// number pattern), and TestAgreesWithLibrary and FuzzAppend check that the
// fast path gives the library's answer.
//
// # Concurrency and buffers
//
// A Canonicalizer is immutable after New and safe for concurrent use.
// Append keeps no reference to digits or dst. New is not on the packet
// path: the first call decodes the library's metadata (once per process,
// some milliseconds) and each call compiles the region's patterns.
package e164
