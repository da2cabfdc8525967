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
// redirected through a devmap to the egress interface, if redirecting it
// is safe (next section). The kernel forwards it instead (XDP_PASS,
// unmodified) when the lookup cannot decide: local destination, unresolved
// neighbour, larger than the egress MTU (the kernel fragments or sends
// ICMP), TTL expiring, 802.1Q-tagged frames, unmanaged egress, frames not
// addressed to the interface's MAC, non-IP; and when redirecting is not
// safe. Datagrams from the wire to the steering address and port are
// dropped (they could carry forged metadata).
// IP fragments are never steered: an INVITE that arrives fragmented is
// forwarded unsigned (counted as invite_unsteered/fragment). SIP over TCP
// is never steered either: a segment to or from a SIP port is forwarded
// like any other packet, unchanged, and counted on top (sip_tcp; signing
// it would need a transparent TCP proxy, docs/ARCHITECTURE.md).
//
// Only the first bytes are checked: re-INVITEs (To tag) are steered too,
// and the userspace loop must forward them unchanged with the Reinjector.
//
// # Redirect only where it works
//
// The appliance asks nothing of its neighbours: whatever their offloads
// and programs, a frame XDP cannot deliver intact is left to the kernel,
// so inline mode never loses a packet the kernel alone would have
// forwarded. Two things can break an XDP redirect:
//
//   - The egress device must take redirected frames (ndo_xdp_xmit). A
//     veth passes them to its peer's NAPI context, which exists only while
//     the peer runs an XDP program or has GRO on; otherwise they are
//     dropped. The kernel (Linux >= 6.3) reports this per device as
//     NETDEV_XDP_ACT_NDO_XMIT in the netdev generic netlink family's XDP
//     features (a veth according to its peer). Attach reads it for every
//     interface after attaching, keeps exactly the interfaces that have it
//     in the devmap (tx_ports), and re-reads it on every link change
//     (rtnetlink link messages, netdev device notifications: a peer
//     attaching a program or turning GRO on or off, in any namespace) and
//     every 5 s. An interface without it is counted as passed /
//     redirect_unsafe_egress when the FIB picks it. On an older kernel,
//     which cannot say, XDP redirects nothing (it still steers INVITEs).
//     Between a neighbour's change and the notification, frames redirected
//     into it can be lost (milliseconds; none in the steady state).
//   - A frame from a host's own stack may carry a partial L4 checksum
//     (CHECKSUM_PARTIAL: TX checksum offload, the default on a veth); the
//     redirect drops that state and the receiver would see a bad
//     checksum. Native XDP on a veth or tun (or a driver that does not
//     say; Attach reads it with ETHTOOL_GDRVINFO) sees such frames, so
//     there the program proves the UDP or TCP checksum complete before it
//     redirects: a checksum that verifies is kept; a field holding just
//     the pseudo-header sum (what Linux leaves for the offload) is
//     completed (counted forwarded / fib_checksum_completed); anything
//     else (corrupt, IPv4 UDP without checksum, protocols it does not
//     parse: SCTP's CRC offload, tunnels with offloaded inner checksums)
//     goes to the kernel, counted as passed / redirect_unsafe_checksum.
//     ICMP is always checksummed in software, IP fragments before
//     fragmentation: redirected as they are. The sum is computed with
//     bpf_csum_diff over at most eight 512-byte chunks (a frame is at most
//     a page) in a global BPF function. Frames from a NIC come from the
//     wire with complete checksums and are not summed; generic (skb) mode
//     keeps the checksum state through a redirect and is not summed either.
//
// In generic mode the redirect itself would work into any device, but the
// same tx_ports rule applies (conservative: only the rate is lost).
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
// A per-CPU array counts, per ingress interface and Reason, every packet
// exactly once as steered, forwarded, passed or dropped, plus
// invite_unsteered events (heartbeat_stale, disabled, steer_error,
// fragment) and sip_tcp events (SIP over TCP passed on unsigned). Counters
// returns them; WritePrometheus writes, for metrics.RegisterMetricsWriter:
//
//   - shakenline_xdp_packets_total{iface,action,reason}, action steered
//     (invite), forwarded (fib, fib_checksum_completed), passed
//     (not_ip, other_l2_dest, vlan, malformed, ttl, not_forwarded,
//     no_neigh, frag_needed, fib_other, egress_unmanaged,
//     redirect_unsafe_egress, redirect_unsafe_checksum) or dropped
//     (steer_port_direct, steer_error). The two redirect_unsafe_* reasons
//     are the frames XDP would have forwarded but handed to the kernel
//     because a redirect was not safe (IfaceCounters.RedirectUnsafe);
//   - shakenline_xdp_invite_unsteered_total{iface,reason};
//   - shakenline_xdp_sip_tcp_packets_total{iface}: SIP over TCP segments
//     (a SIP port at either end), forwarded unchanged, never steered;
//   - shakenline_xdp_redirect_target{iface}: 1 while XDP forwards into the
//     interface, 0 while the kernel does (RedirectTargets; the reason is
//     logged when it changes).
//
// # Attach modes
//
// Attach tries native (driver) XDP and falls back to generic mode with a
// slog warning (ModeAuto).
//
// # Concurrency, buffers, limits
//
// Steering and Reinjector methods are safe for concurrent use. Attach
// starts one goroutine that follows link changes until Close; it runs on
// a thread in Attach's network namespace (entering it needs CAP_SYS_ADMIN
// only if the process's other threads are elsewhere; if it cannot, XDP
// stops redirecting and says so in the log). DecodeMeta's
// payload aliases its input; nothing keeps the caller's buffer. Heartbeat,
// DecodeMeta and Send (after a source's first datagram) allocate nothing.
// Limits: MaxSIPPorts SIP ports, MaxIfaces interfaces, frames up to a page
// (no XDP multi-buffer), Reinjector caches DefaultMaxSockets sockets
// (oldest closed first). Attach and the Reinjector's first Send from a
// source act in the calling thread's network namespace.
//
// # Generated code
//
// steer_bpfel.{go,o}, and the test-only sink_bpfel_test.{go,o} (sink.c: a
// count-and-drop program) and trafficgen_bpfel_test.{go,o} (trafficgen.c:
// the packet source BenchmarkForwarding runs with
// BPF_F_TEST_XDP_LIVE_FRAMES; the _test suffix keeps both out of the
// package and the binary) are generated by bpf2go (a tool in go.mod) with
// Debian clang 14.0.6 and committed; gen.sh holds the commands and takes
// the kernel headers' asm/ directory from `clang -print-multiarch`
// (x86_64-linux-gnu, aarch64-linux-gnu, ...), so they regenerate on any
// Debian architecture: the objects are little-endian BPF, which depends on
// clang and the kernel headers' version, not on the build machine.
// `make bpf-generate` regenerates, `make bpf-check` fails when they are
// stale.
package bpf
