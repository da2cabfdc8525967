// Package kamailio runs Kamailio as the comparison peer of the benchmark: a
// stateless SIP proxy that signs initial INVITEs with the secsipid module
// (kamailio.cfg, embedded), or only forwards them (the plain forwarding
// cost), or verifies their Identity header with a key, or with the
// certificate its x5u serves chained to a CA file (Options.VerifyCAFile:
// libsecsipid fetches and caches the x5u; interop tests: a verified
// INVITE is forwarded with X-Identity-Check: ok and X-Identity-Payload, the
// PASSporT payload as Kamailio decodes it).
//
// # What it owns
//
// kamailio.cfg and Start, which writes that config into a temporary
// directory and runs `kamailio -DD -E -f cfg` in the foreground in its own
// process group, selecting the variant with -A defines (WITH_SIGN,
// WITH_VERIFY, WITH_TCP, WITH_TLS) and the addresses with -l and -A NEXTHOP.
// Options.Transport adds a TCP or TLS listener on the UDP port, and
// Options.NextHopTransport the next hop's transport; TLS takes a
// certificate, a key and the anchors peers are verified against (the tls
// module, Debian package kamailio-tls-modules; TLS 1.2 and later). Stop
// ends the whole process group and removes the directory.
//
// # Concurrency
//
// A Process is safe to Stop from several goroutines; Stop is idempotent.
// Kamailio itself runs Options.Workers UDP worker processes, and as many
// TCP ones (-N) with a stream.
//
// # Limits
//
// Linux with the Debian packages kamailio and kamailio-secsipid-modules
// (module path ModuleDir), kamailio-tls-modules for TLS. Keys are passed by path; they are never
// read or logged here. Kamailio's output is kept only as a bounded tail
// (Process.Log) unless Options.Log is set.
package kamailio
