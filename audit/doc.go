// Package audit writes the signing audit trail the FCC own-certificate rule
// asks a provider to keep: one line per signed call saying when it was signed,
// which call it was (a hash of the Call-ID, never the Call-ID itself), the
// numbers, the attestation, the policy rule that decided it, the signer that
// produced the signature and the fingerprint of the certificate whose key
// signed it.
//
// # Line format
//
// One line per record, UTF-8, fields separated by one space, always in this
// order (logfmt style, key=value):
//
//		time=2026-03-01T12:00:00.123456Z call=3f1c...(32 hex) orig=12155550100 dest=12155550199 attest=A ppt=shaken rule=retail signer=pkcs11:tok-a cert=9a7b...(64 hex) transport=tcp
//
//	  - time: RFC 3339 UTC with microseconds, when the signature was made.
//	  - call: the first 16 bytes of SHA-256(Call-ID) in lowercase hex. For
//	    HTTP signing requests (which have no Call-ID) the api package hashes the
//	    X-RequestID header when the client sent one, else the PASSporT origid.
//	  - orig, dest: E.164 digits as signed (the PASSporT's orig and dest, from
//	    a SIP INVITE or an API request by the rules of docs/API.md,
//	    "Telephone numbers"); several dest numbers are joined with ','.
//	    Longer than MaxTN bytes are cut (E.164 numbers have at most 15).
//	  - attest: A, B or C; "-" when the call signed only div PASSporTs
//	    (RFC 8946: a div PASSporT has no attest).
//	  - ppt: the PASSporT types signed: "shaken", "shaken+rcd" (Rich Call
//	    Data inside the shaken PASSporT), "shaken,rcd" (an rcd PASSporT
//	    beside it), or "div", "div,div", ... (a forwarded call's div
//	    PASSporTs, docs/STANDARDS.md "div").
//	  - rule: the policy rule that decided the attestation ("default" when none
//	    matched; "request" when an HTTP client gave the attestation itself).
//	  - signer: hsm signer name ("soft", "pkcs11:<token>", ...).
//	  - cert: SHA-256 of the signing certificate's DER in lowercase hex
//	    (Fingerprint); "-" when a remote STI-AS link of the chain signed
//	    (signer names the link; the certificate is the remote's, at the
//	    x5u of the Identity header it returned).
//	  - transport: how the signed INVITE came: udp, tcp or tls ("-" for an
//	    HTTP signing request). Added last, so that readers of the older
//	    eight fields read on.
//
// An empty value is written as "-". A value holding a space, '"', '=', a
// control character or non-ASCII byte is written as a Go-quoted string
// (strconv.Quote), so every line splits unambiguously on spaces.
//
// # Hot path and concurrency
//
// Record is called from signer completion goroutines and HTTP handlers. It
// hashes the Call-ID on the caller's stack, copies everything into a fixed-size
// entry and offers it to a bounded queue (a channel of entry values allocated
// once in Open) without ever blocking: when the queue is full the record is
// dropped and counted (Dropped, shakenline_audit_dropped_total). It allocates
// nothing (TestRecordAllocs). Strings (Rule, Signer, CertFingerprint) are kept
// by reference, so they must not be built per call; byte slices are copied and
// may be reused by the caller as soon as Record returns.
//
// One writer goroutine per Log drains the queue, formats lines into a buffer,
// writes them in batches (one write per drained batch or every 64 KiB) and
// rotates by size: when the next batch would take the file past MaxBytes the
// file is fsynced and closed, path.(N-1) is renamed to path.N ... path to
// path.1, keeping Keep old files, and a new file is opened. Close drains the
// queue, fsyncs and closes the file. Records offered concurrently with Close
// may be lost.
//
// # Limits
//
// Queue entries are about 200 bytes; a queue of 65536 (the default) holds
// about 13 MB. Write errors are counted (shakenline_audit_write_errors_total)
// and the records of that batch are lost; the writer keeps trying with the next
// batch. A line is at most about 400 bytes.
package audit
