// Package bpf owns the kernel half of inline mode: an XDP program that
// steers SIP-over-UDP INVITEs to the userspace signing loop and forwards
// every other packet at XDP level, plus the Go API the fast path uses
// (Attach, Steering, DecodeMeta, Reinjector).
//
// # Packet path
//
// xdp_steer (steer.c) runs on every interface in Config.Ifaces. It parses
// Ethernet with up to two 802.1Q/802.1ad tags, IPv4 (any IHL) and IPv6
// (UDP as the first next header), and UDP. A datagram to one of the
// configured SIP ports whose payload starts with "INVITE " is steered when
// steering is enabled and the heartbeat is fresh:
//
//   - 56 bytes of metadata (struct meta: magic "SKNL", version, family,
//     VLAN, original source and destination address and port, ingress
//     ifindex, a per-Attach random cookie) are inserted between the UDP
//     header and the SIP message. The headers move into the headroom
//     (bpf_xdp_adjust_head), which XDP guarantees; tailroom is not
//     guaranteed for skb-backed frames (veth, generic mode), so a trailer
//     would fail there.
//   - The destination becomes the interface's steering address and
//     Config.SteerPort; the destination MAC becomes the interface's own.
//     IP and UDP lengths are fixed; the IPv4 header checksum and the IPv6
//     UDP checksum are updated incrementally (RFC 1624); the IPv4 UDP
//     checksum is set to 0 (RFC 768).
//   - XDP_PASS: the kernel delivers it to the steering socket with the
//     ORIGINAL source address and port.
//
// Everything else (other methods, responses, RTP, any traffic, and INVITEs
// when failing open) is routed with bpf_fib_lookup; on success the TTL /
// hop limit is decremented, the MACs are rewritten and the frame is
// redirected through a devmap to the egress interface, if that interface is
// one of Config.Ifaces. The kernel forwards it instead (XDP_PASS,
// unmodified) when the lookup cannot decide: local destination, unresolved
// neighbour, larger than the egress MTU (the kernel fragments or sends
// ICMP), TTL expiring, 802.1Q-tagged frames, unmanaged egress, frames not
// addressed to the interface's MAC, non-IP. Datagrams from the wire to the
// steering address and port are dropped (they could carry forged metadata).
// IP fragments are never steered: an INVITE that arrives fragmented is
// forwarded unsigned (counted as invite_unsteered/fragment). SIP over TCP
// is never steered either: a segment to or from a SIP port is forwarded
// like any other packet, unchanged, and counted on top (sip_tcp; signing
// it would need a transparent TCP proxy, docs/ARCHITECTURE.md).
//
// Only the first bytes are checked: re-INVITEs (To tag) are steered too,
// and the userspace loop must forward them unchanged with the Reinjector.
//
// # Userspace contract
//
// The fast path listens on the wildcard address at SteerPort (IPv4 and
// IPv6), calls (*Steering).DecodeMeta on each datagram (zero allocation;
// checks magic and cookie), stamps the SIP message and calls
// (*Reinjector).Send(flow, stamped). Send uses one UDP socket per original
// source (IP_TRANSPARENT + IP_FREEBIND, bound to the client's address and
// port; needs CAP_NET_ADMIN), so the stamped INVITE leaves towards its
// original destination with its original source, routed and fragmented to
// the path MTU by the kernel. Locally sent packets do not pass XDP, so the
// appliance never re-steers its own output.
//
// # Fail-open
//
// The fast path calls Heartbeat every ~100 ms from its event loop (gnet
// OnTick), writing CLOCK_MONOTONIC (the clock of bpf_ktime_get_ns) into the
// heartbeat map. When the heartbeat is older than Config.StaleAfter
// (default 500 ms) INVITEs are forwarded like any other packet. SetEnabled
// (false) does the same at once (use it when the signing queue is over its
// limit). XDP links are bpf_links owned by the process: Close, exit or a
// crash detaches them and the kernel's forwarding carries everything, so
// the link keeps working (TestKillApplianceFailsOpen: kill -9, calls pass
// unsigned within milliseconds).
//
// # Counters
//
// A per-CPU array counts, per interface and Reason, every packet exactly
// once as steered, forwarded, passed or dropped, plus invite_unsteered
// events (heartbeat_stale, disabled, steer_error, fragment) and sip_tcp
// events (SIP over TCP passed on unsigned). Counters returns them;
// WritePrometheus writes shakenline_xdp_packets_total,
// shakenline_xdp_invite_unsteered_total and
// shakenline_xdp_sip_tcp_packets_total for metrics.RegisterMetricsWriter.
//
// # Attach modes and veths
//
// Attach tries native (driver) XDP and falls back to generic mode with a
// slog warning (ModeAuto). XDP_REDIRECT into a veth needs an XDP program
// (or NAPI) on the veth's peer: AttachPass attaches a pass-through program
// for that. XDP_REDIRECT also drops the skb's CHECKSUM_PARTIAL state, so
// hosts that send into such a veth from local sockets must turn off TX
// checksum offload (ethtool -K dev tx off); physical NICs deliver complete
// checksums. The test topology (package nettest) does both.
//
// # Concurrency, buffers, limits
//
// Steering and Reinjector methods are safe for concurrent use. DecodeMeta's
// payload aliases its input; nothing keeps the caller's buffer. Heartbeat,
// DecodeMeta and Send (after a source's first datagram) allocate nothing.
// Limits: MaxSIPPorts SIP ports, MaxIfaces interfaces, frames up to a page
// (no XDP multi-buffer), Reinjector caches DefaultMaxSockets sockets
// (oldest closed first). Attach and the Reinjector's first Send from a
// source act in the calling thread's network namespace.
//
// # Generated code
//
// steer_bpfel.{go,o}, sink_bpfel.{go,o} (sink.c: a count-and-drop program
// used only by BenchmarkForwarding) and trafficgen_bpfel_test.{go,o}
// (trafficgen.c: the test-only packet source BenchmarkForwarding runs with
// BPF_F_TEST_XDP_LIVE_FRAMES; the _test suffix keeps it out of the
// package) are generated by bpf2go (a tool in go.mod) with Debian clang
// 14.0.6 and committed; `make bpf-generate` regenerates, `make bpf-check`
// fails when they are stale.
package bpf
