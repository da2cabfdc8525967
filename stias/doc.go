// Package stias is the client side of a remote STI-AS: the link of the
// signer chain (hsm.RemoteSigner) that has calls signed by another signing
// service through its ATIS-1000082 signing API (POST {"signingRequest":
// {claims}} -> {"signingResponse":{"identity":"..."}}): a hosted STI-AS,
// a carrier's existing one kept as a fallback, or another appliance's
// /stir/v1/signing (docs/API.md). docs/KEYS.md, "A remote STI-AS in the
// chain", is the operator's side of it.
//
// # What a call does
//
// SignInput takes the call's PASSporT signing input as the appliance built
// it (passport.ParseSigningInput): the claims it decoded are the
// signingRequest's members as they are (the PASSporT claims and the
// ATIS-1000082 signing request share their names and forms: attest,
// dest.tn, iat, orig.tn, origid, and the extension claims div, rcd, rcdi,
// crn), so the remote signs exactly what the appliance would have. The
// request goes over keep-alive connections (one pool per client, at most
// MaxInFlight connections, as many requests at once: the chain gives the
// link that many workers), with the bearer token of Config.Token.
//
// The answer is checked before it is stamped; any failure is a signer
// error, so the chain moves the call to its next link: HTTP status 200 and
// a signingResponse within MaxResponse bytes; an Identity header value that
// parses (passport.ParseIdentity) with alg ES256, the ppt and typ of the
// PASSporT asked for, and exactly the claims asked for (passport.SameClaims:
// none more, none less, none changed). The Identity header value is then
// stamped as it is: its x5u and signature are the remote's.
//
// # The FCC own-certificate rule
//
// A remote STI-AS signs with its own certificate. At each new x5u (the
// first answer, and again after an hour), the client fetches the chain
// through verify's hardened client (verify.FetchX5U: https, no private or
// loopback targets unless lab, size cap, timeout) and reads the leaf's
// TNAuthList (package tnauth). When none of its SPCs is one of ours
// (Config.OwnSPCs, from the provider's certificate), it logs a warning once
// per x5u and sets shakenline_sti_as_foreign_cert{signer} to 1; with
// OwnCert "enforce" it refuses those answers instead (before stamping:
// the first answer waits for the fetch, within the call's timeout), and an
// x5u that cannot be fetched is refused too until a fetch succeeds.
//
// CheckAtStart applies the rule before any call: it has one probe PASSporT
// signed (attest C, from and to ProbeTN) and waits for the verdict of the
// x5u its answer names, logging a foreign certificate (in warn mode too),
// our own, or why it could not check. The appliance runs it for every
// sti_as link when it starts serving, in the background.
//
// # Security and limits
//
// The URL must be https (http only with Config.Lab); the token is read
// from a file and never logged. Redirects are not followed. The STI-AS is
// the operator's choice, so its address is not restricted (it is often on
// a private network); the x5u fetches are. Each call allocates (request
// and response bodies, the parse): the remote path is an HTTP round trip,
// never the fast path. Metrics: shakenline_sti_as_rejected_total{signer,
// reason} (http, answer, claims, foreign-cert) and
// shakenline_sti_as_foreign_cert{signer}; the chain counts the rest
// (shakenline_hsm_*{signer}).
package stias
