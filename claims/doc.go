// Package claims maps a SIP INVITE to the claims of the PASSporT the
// authentication service signs for it (RFC 8224, RFC 8225, RFC 8588):
//
//   - orig and dest: the calling number from the first P-Asserted-Identity
//     that is a telephone number, else From, and the called number from To
//     (RFC 8224 section 8.3, ATIS-1000074 section 5.3.1), canonicalised to
//     E.164 digits by rule S of docs/API.md, "Telephone numbers" (OrigTN,
//     DestTN);
//   - the retargets of a forwarded call, for its div PASSporTs (RFC 8946):
//     Retargets.Read maps History-Info (RFC 7044, cause of RFC 4458) or
//     Diversion (RFC 5806) to hops, the target each diversion left and the
//     one it reached, oldest first, the last reaching the Request-URI
//     (docs/STANDARDS.md, "div"); MaxDiv is the most div PASSporTs a call
//     carries;
//   - iat: by the Date rules of RFC 8224 sections 4.1 and 6.1 (DateRule,
//     Stale; docs/STANDARDS.md, "Date"): a missing Date is added, a fresh
//     one is the iat, a stale or unparseable one is not signed unless
//     stale_date is replace.
//
// Attestation is the policy's (package policy) and origid is random; the
// token itself is package passport's. The fast path maps every INVITE it
// signs through this package, without allocating; `appliance sign` maps
// an INVITE given on stdin the same way, and the HTTP API checks a given
// iat with Stale, so the three cannot disagree.
//
// The mapping lives here rather than in passport because passport is the
// token (canonical JSON, build, parse) that the verifying side shares: it
// knows no SIP, and would otherwise import the SIP parser and the number
// canonicaliser.
package claims
