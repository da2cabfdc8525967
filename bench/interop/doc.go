// Package interop is the global interoperability proof of concept behind
// `make interop`: it shows that unmodified IETF and ATIS STIR/SHAKEN works
// across borders with international E.164 numbering and a
// non-jurisdictional Global Certificate Authority beside national ones.
//
// # What it owns
//
//   - Lab governance (governance.go): PolicyAdministrator (the Global
//     Policy Administrator, G-PA, and national STI-PAs) assigns service
//     provider codes and signs ATIS-1000080 SPC tokens bound to a
//     provider's account key; Authority (root + issuing intermediate from
//     package labpki) issues a provider certificate only against a valid
//     token of its own PA, with the token's TNAuthList, and publishes CRLs.
//     On the network (acme.go), each jurisdiction's CA is an ACME server
//     and its PA a token API (package labsti, https on the core host, one
//     port per jurisdiction from 8443): every carrier has an account at
//     its PA, and its appliances obtain the carrier's certificate from its
//     CA through ACME at start (acme:, publishing under /acme/<side>/ of
//     the carrier's repository); the Kamailio signer, which has no ACME
//     client, signs with the key and certificate its verifier obtained.
//     The runner keeps certificates of its own (current, expired, revoked,
//     issued directly) for the pre-signed cases.
//   - The plan (plan.go): the carriers (DefaultCarriers: five, on the
//     Global CA, a US-style STI-CA and a French CA; one signing with
//     Kamailio+secsipid, one rejecting failed calls, one holding a
//     TN-range certificate), the numbering plans (Countries: 22 countries,
//     9 with numbers of several lengths), the calls (Plan) and the outcome
//     each must have, derived from the verifier's documented check order
//     and each carrier's trust stores and policy. Besides the signed,
//     unsigned and negative cases, forwarded calls (RFC 8946): the
//     caller's carrier's PASSporT for a forwarding carrier's number, sent
//     on by that carrier's retail trunk (a div rule: div PASSporT added,
//     passes where its CA and the caller's are trusted) or wholesale trunk
//     (no div: fails, 438); and branded calls (RFC 9795): each appliance
//     carrier signs Rich Call Data for two brand numbers of its own, one
//     whose logo stays as signed (name and logo shown where trusted) and
//     one whose logo changes after its signer loaded the policy (rcdi
//     mismatch: passes, nothing shown).
//   - The run (run.go, netns.go, ua.go): a core network namespace with a
//     bridge (the CA repository serving CRLs, 198.18.0.1) and one namespace
//     per carrier (198.18.i.1 services, 198.18.i.10-13 SBC trunks A, B, C
//     and unsigned). Per carrier: an x5u http repository (also serving the
//     brand logos, no-store), a UAS (its switch: records verstat, attest,
//     orig, display name and verified logo of each delivered INVITE,
//     answers 200 by Via), four UAC trunks, an originating proxy (appliance
//     `serve` routing by Request-URI with sign rules by trunk, or Kamailio
//     with kamailio.cfg) and a terminating appliance (verify or
//     verify-reject, --trust with the jurisdictions it accepts, --lab).
//     After the calls each terminating appliance's
//     shakenline_verify_results_total counters are compared with the plan.
//   - The trace (trace.go): every SIP message and every connection to an
//     http repository that crosses the core namespace's bridge, stamped by
//     the kernel, so that each call's setup time splits into the
//     originating proxy's part, the terminating proxy's (and the x5u and
//     CRL fetches it waited for) and the way back ("Where the time goes"
//     in the report). Calls are placed in a shuffled order (fixed seed),
//     so that no signer alone reaches each verifier first and pays its
//     cold fetches.
//   - The report (report.go): report.md, report.html, results.json,
//     calls.csv and latency.png (gnuplot) with the per-pair matrix, the
//     per-case, per-attest and per-country tables, timings and findings.
//     In bench/interop/results only report.md, the summary, is kept in
//     git; it names the plot instead of embedding it, as the other files
//     are git-ignored.
//
// Command cmd/interop runs it; it exits 1 when any call or counter
// differs from the expectation and 2 when the lab cannot be run.
//
// # Concurrency, cleanup, limits
//
// Run places calls from Config.Concurrency goroutines (replay pairs run
// in order afterwards); UAS and UAC sockets are made inside their
// namespaces by an OS thread switched with setns and served by one
// goroutine each. Processes run in their own process groups with
// Pdeathsig; Run stops them (SIGTERM, SIGKILL after 5 s) and deletes every
// namespace it made (which removes the veths and the bridge) on every
// return path. A run killed with SIGKILL can leave namespaces named
// sli<pid>-*; the next run removes them (internal/netns owns the
// namespaces, veths, bridge and addresses). Needs root, iproute2 and,
// for a Kamailio carrier, kamailio and kamailio-secsipid-modules. Lab
// keys are written in the clear to Config.WorkDir and never logged.
// Addresses are from 198.18.0.0/15 only; IPv4 only.
package interop
