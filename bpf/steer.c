//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// Shakenline XDP program: steers SIP-over-UDP initial INVITEs to the
// userspace signing loop and forwards every other packet at XDP level.
// See doc.go for the contract; the Go side mirrors struct layouts through
// the bpf2go-generated types (steer_bpfel.go), never by hand.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

#define MAX_SIP_PORTS 8
#define MAX_IFACES 64
#define MAX_VLAN_TAGS 2
#define META_MAGIC 0x534b4e4c /* "SKNL" on the wire */
#define META_VERSION 1

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#define IPPROTO_ICMPV6 58

// struct iface flags.
// IF_CSUM_VERIFY: frames received here may carry a partial L4 checksum
// (CHECKSUM_PARTIAL: native XDP on a veth or tun, whose frames come from
// the sending host's stack with the checksum left to an offload that an
// XDP redirect never performs). Set by userspace at attach time.
#define IF_CSUM_VERIFY 0x1

// l4_sum: bpf_csum_diff sums at most 512 bytes per call on older kernels
// (a per-CPU scratch buffer); 8 chunks cover any frame up to a page.
#define CSUM_CHUNK 512
#define CSUM_MAX_CHUNKS 8

// Counter reasons. Every packet is counted exactly once in one of the
// steered / forwarded / passed / dropped reasons; the ev_* reasons are extra
// events counted on top (an INVITE that was not steered, and why).
enum reason {
	R_STEERED = 0,         // INVITE rewritten towards the steering socket
	R_FORWARDED,           // forwarded by bpf_fib_lookup + redirect
	R_FORWARDED_CSUM,      // same, after completing a partial L4 checksum
	R_PASS_NOT_IP,         // not IPv4/IPv6 (ARP, LLDP, ...): kernel
	R_PASS_L2,             // not addressed to this interface's MAC
	R_PASS_VLAN,           // 802.1Q tagged, non-steered: kernel forwards
	R_PASS_MALFORMED,      // truncated or invalid headers: kernel decides
	R_PASS_TTL,            // TTL / hop limit expires here: kernel sends ICMP
	R_PASS_LOCAL,          // FIB: not forwarded (local or no route)
	R_PASS_NO_NEIGH,       // FIB: next hop neighbour unresolved
	R_PASS_FRAG_NEEDED,    // FIB: larger than egress MTU, kernel fragments
	R_PASS_FIB_OTHER,      // FIB: forwarding disabled, blackhole, ...
	R_PASS_EGRESS,         // egress interface is not managed by us
	R_PASS_UNSAFE_EGRESS,  // managed egress that does not take redirected frames
	R_PASS_UNSAFE_CSUM,    // L4 checksum not provably complete (see l4_csum)
	R_DROP_STEER_DIRECT,   // from the wire straight to the steering socket
	R_DROP_STEER_ERROR,    // frame resized but metadata could not be written
	R_EV_INVITE_STALE,     // INVITE not steered: heartbeat stale
	R_EV_INVITE_DISABLED,  // INVITE not steered: steering switched off
	R_EV_INVITE_ERROR,     // INVITE not steered: no steer address / no tailroom
	R_EV_INVITE_FRAGMENT,  // INVITE not steered: arrived as IP fragments
	R_EV_SIP_TCP,          // SIP over TCP (a SIP port at either end): passed on unsigned
	R_NR,
};

// Global configuration, written by userspace (key 0).
struct config {
	__u64 stale_ns;   // heartbeat older than this: fail open
	__u64 cookie;     // copied into every meta, checked by userspace
	__u32 enabled;    // steering switch
	__u16 steer_port; // network byte order
	__u16 nports;
	__u16 sip_ports[MAX_SIP_PORTS]; // network byte order
};

// Per managed interface (key: ifindex).
struct iface {
	__u8 mac[ETH_ALEN];
	__u16 slot;     // counter slot, 1..MAX_IFACES-1 (0: unknown ifindex)
	__u32 has_v4;
	__u32 has_v6;
	__be32 steer_v4;
	__u8 steer_v6[16];
	__u32 flags;    // IF_*
};

// Inserted in front of a steered INVITE's UDP payload (between the UDP
// header and the SIP message). Fixed 56 bytes; integer fields big-endian
// except cookie (copied as stored by userspace).
struct meta {
	__be32 magic;
	__u8 version;
	__u8 family;    // 4 or 6
	__be16 vlan;    // outermost 802.1Q VLAN ID (0: untagged)
	__u8 src[16];   // original source address (IPv4: first 4 bytes)
	__u8 dst[16];   // original destination address
	__be16 sport;
	__be16 dport;
	__be32 ifindex; // ingress interface
	__u64 cookie;
};

#define META_LEN 56
#define MAX_HDR_LEN (ETH_HLEN + 4 * MAX_VLAN_TAGS + 60 + 8)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} heartbeat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, struct iface);
} ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_IFACES * R_NR);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Force BTF emission of types userspace needs but no map references.
const struct meta *unused_meta __attribute__((unused));
const enum reason *unused_reason __attribute__((unused));

static __always_inline void count(__u32 slot, __u32 reason)
{
	__u32 key = slot * R_NR + reason;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);
	if (v)
		*v += 1;
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline int in6_eq(const void *a, const void *b)
{
	const __u32 *x = a, *y = b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline __u32 csum_fold(__u32 acc)
{
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	return acc;
}

// RFC 1624 incremental update term for one 16-bit word: ~m + m'.
static __always_inline __u32 csum_repl(__u16 old, __u16 new)
{
	return (__u32)(__u16)~old + (__u32)new;
}

struct parsed {
	__u32 l3;      // offset of the IP header
	__u32 l4;      // offset of the UDP header (0: no UDP to look at)
	__u16 vlan;    // outermost TCI, host order
	__u8 nvlan;
	__u8 v6;
	__u8 fragment; // IPv4/IPv6 fragment (no L4 for us)
	__u8 first_fragment;
	__u8 l4proto;  // IPv4 protocol / IPv6 first next header
};

static __always_inline int is_sip_port(struct config *cfg, __u16 port)
{
	__u32 n = cfg->nports;
#pragma unroll
	for (int i = 0; i < MAX_SIP_PORTS; i++) {
		if (i >= n)
			break;
		if (cfg->sip_ports[i] == port)
			return 1;
	}
	return 0;
}

static __always_inline int is_invite(void *payload, void *data_end)
{
	char *p = payload;
	if (p + 7 > (char *)data_end)
		return 0;
	return p[0] == 'I' && p[1] == 'N' && p[2] == 'V' && p[3] == 'I' &&
	       p[4] == 'T' && p[5] == 'E' && p[6] == ' ';
}

// l4_csum flags, with the L4 protocol in the low byte.
#define L4_V6 0x100
#define L4_FRAGMENT 0x200

// fold64 folds a one's complement sum to 16 bits (0 only for a zero sum).
static __always_inline __u32 fold64(__u64 acc)
{
	acc = (acc & 0xffffffff) + (acc >> 32);
	acc = (acc & 0xffffffff) + (acc >> 32);
	return csum_fold((__u32)acc);
}

#define SUM_PART(n)                                                    \
	if (len & (n)) {                                               \
		void *p = data + off;                                  \
		if (p + (n) > data_end)                                \
			return -1;                                     \
		__s64 s = bpf_csum_diff(0, 0, p, (n), 0);              \
		if (s < 0)                                             \
			return -1;                                     \
		acc += (__u64)s;                                       \
		off += (n);                                            \
	}

// l4_sum returns the one's complement sum (RFC 1071, little-endian words,
// unfolded) of len bytes at offset off, or -1 when they are not all in
// the frame. A global function: the verifier checks it once, not at every
// inlined forward().
__attribute__((noinline)) __s64 l4_sum(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 acc = 0;

	if (len > CSUM_CHUNK * CSUM_MAX_CHUNKS)
		return -1;
	off &= 0xff; // l4_csum passes at most 74
#pragma unroll
	for (int i = 0; i < CSUM_MAX_CHUNKS; i++) {
		if (len < CSUM_CHUNK)
			break;
		void *p = data + off;
		if (p + CSUM_CHUNK > data_end)
			return -1;
		__s64 s = bpf_csum_diff(0, 0, p, CSUM_CHUNK, 0);
		if (s < 0)
			return -1;
		acc += (__u64)s;
		off += CSUM_CHUNK;
		len -= CSUM_CHUNK;
	}
	if (len >= CSUM_CHUNK)
		return -1;
	SUM_PART(256)
	SUM_PART(128)
	SUM_PART(64)
	// The rest (< 64 bytes) in 8-byte loads: cheaper than helper calls for
	// the short frames that dominate (RTP, SIP, TCP ACKs).
	len &= 63;
	for (int i = 0; i < 7; i++) {
		if (len < 8)
			break;
		__u64 *q = data + off;
		if ((void *)(q + 1) > data_end)
			return -1;
		__u64 x = *q;
		acc += (x & 0xffffffff) + (x >> 32);
		off += 8;
		len -= 8;
	}
	if (len & 4) {
		__u32 *d = data + off;
		if ((void *)(d + 1) > data_end)
			return -1;
		acc += *d;
		off += 4;
	}
	if (len & 2) {
		__u16 *w = data + off;
		if ((void *)(w + 1) > data_end)
			return -1;
		acc += *w;
		off += 2;
	}
	if (len & 1) {
		__u8 *b = data + off;
		if ((void *)(b + 1) > data_end)
			return -1;
		acc += *b; // the zero-padded word [b, 0], read little-endian
	}
	return acc;
}

// l4_csum proves the L4 checksum of a frame about to be redirected
// complete, completing it where it is partial. Returns 0: complete (or
// none to check), 1: it was partial and is now complete, -1: cannot tell
// (the frame is unmodified and must go to the kernel).
//
// A sender with TX checksum offload (CHECKSUM_PARTIAL) leaves in the
// checksum field the folded sum of the pseudo-header only (Linux:
// udp4_hwcsum, __tcp_v4_send_check and the IPv6 twins), for the device to
// complete. Redirected frames lose that state, so the receiver would see a
// bad checksum. So, for UDP and TCP: a checksum that verifies is
// complete; a field equal to the pseudo-header sum whose full sum does not
// verify is partial: compute the real one; anything else (corrupt, or
// valid only once an inner offload is done, e.g. tunnels with local
// checksum offload) goes to the kernel, which knows. An IPv4 UDP checksum
// of 0 (none) cannot be verified, nor can protocols we do not parse.
// ICMP checksums are always computed in software; fragments were
// checksummed before fragmentation (ip_do_fragment, ip6_fragment).
__attribute__((noinline)) int l4_csum(struct xdp_md *ctx, __u32 l3, __u32 l4, __u32 info)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 proto = info & 0xff;
	__u32 v6 = info & L4_V6;
	__u64 psum = 0; // pseudo-header sum
	__u32 len;      // L4 length

	if (info & L4_FRAGMENT)
		return 0;
	if ((!v6 && proto == IPPROTO_ICMP) || (v6 && proto == IPPROTO_ICMPV6))
		return 0;
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return -1;
	// Masks, not comparisons: clang would drop a mask after a comparison
	// and test a copy, leaving the verifier an unbounded offset.
	l3 &= 0x7f; // forward() passes 14
	l4 &= 0xff; // at most 14 + 60

	if (v6) {
		struct ipv6hdr *ip6 = data + l3;
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__u16 *a = (__u16 *)&ip6->saddr; // saddr and daddr are adjacent
#pragma unroll
		for (int i = 0; i < 16; i++)
			psum += a[i];
		len = bpf_ntohs(ip6->payload_len);
	} else {
		struct iphdr *ip4 = data + l3;
		if ((void *)(ip4 + 1) > data_end)
			return -1;
		psum += (ip4->saddr & 0xffff) + (ip4->saddr >> 16);
		psum += (ip4->daddr & 0xffff) + (ip4->daddr >> 16);
		__u32 ihl = ip4->ihl * 4;
		len = bpf_ntohs(ip4->tot_len);
		if (len < ihl)
			return -1;
		len -= ihl;
	}
	psum += bpf_htons(proto) + bpf_htons(len);

	__u32 coff = proto == IPPROTO_UDP ? 6 : 16; // checksum field in the L4 header
	__u16 *check = data + l4 + coff;
	if ((void *)(check + 1) > data_end || len < coff + 2)
		return -1;
	__u16 c = *check;
	if (proto == IPPROTO_UDP && !v6 && c == 0)
		return -1;

	__s64 sum = l4_sum(ctx, l4, len);
	if (sum < 0)
		return -1;
	if (fold64(psum + (__u64)sum) == 0xffff)
		return 0;

	__u32 pfold = fold64(psum);
	if (c != pfold && !(c == 0 && pfold == 0xffff) && !(c == 0xffff && pfold == 0))
		return -1;
	// The segment's sum includes the field: take it out again.
	__u16 full = ~fold64(psum + (__u64)sum + (__u16)~c);
	if (proto == IPPROTO_UDP && full == 0)
		full = 0xffff;
	// Re-derive the pointer: l4_sum was a call.
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	check = data + l4 + coff;
	if ((void *)(check + 1) > data_end)
		return -1;
	*check = full;
	return 1;
}

// forward routes the packet with the kernel FIB and redirects it, or hands
// it to the kernel when the lookup cannot decide. Counts exactly once.
static __always_inline int forward(struct xdp_md *ctx, struct parsed *pp, struct iface *ifc, __u32 slot)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib = {};

	if (pp->nvlan) {
		count(slot, R_PASS_VLAN);
		return XDP_PASS;
	}
	if (pp->v6) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		if ((void *)(ip6 + 1) > data_end) {
			count(slot, R_PASS_MALFORMED);
			return XDP_PASS;
		}
		if (ip6->hop_limit <= 1) {
			count(slot, R_PASS_TTL);
			return XDP_PASS;
		}
		fib.family = AF_INET6;
		fib.flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0fffffff);
		fib.l4_protocol = ip6->nexthdr;
		fib.tot_len = bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr);
		__builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
	} else {
		struct iphdr *ip4 = data + sizeof(struct ethhdr);
		if ((void *)(ip4 + 1) > data_end) {
			count(slot, R_PASS_MALFORMED);
			return XDP_PASS;
		}
		if (ip4->ttl <= 1) {
			count(slot, R_PASS_TTL);
			return XDP_PASS;
		}
		fib.family = AF_INET;
		fib.tos = ip4->tos;
		fib.l4_protocol = ip4->protocol;
		fib.tot_len = bpf_ntohs(ip4->tot_len);
		fib.ipv4_src = ip4->saddr;
		fib.ipv4_dst = ip4->daddr;
	}
	fib.ifindex = ctx->ingress_ifindex;

	long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		break;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		count(slot, R_PASS_LOCAL);
		return XDP_PASS;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		count(slot, R_PASS_NO_NEIGH);
		return XDP_PASS;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		count(slot, R_PASS_FRAG_NEEDED);
		return XDP_PASS;
	default:
		count(slot, R_PASS_FIB_OTHER);
		return XDP_PASS;
	}

	// Only redirect to interfaces we manage that take redirected frames
	// (userspace keeps exactly those in tx_ports); anything else goes
	// through the kernel untouched.
	if (!bpf_map_lookup_elem(&tx_ports, &fib.ifindex)) {
		if (bpf_map_lookup_elem(&ifaces, &fib.ifindex))
			count(slot, R_PASS_UNSAFE_EGRESS);
		else
			count(slot, R_PASS_EGRESS);
		return XDP_PASS;
	}

	// A frame whose L4 checksum may be partial is redirected only once the
	// checksum is known to be complete; l4_csum leaves it unmodified when
	// it returns < 0.
	int completed = 0;
	if (ifc->flags & IF_CSUM_VERIFY) {
		__u32 info = pp->l4proto | (pp->v6 ? L4_V6 : 0) | (pp->fragment ? L4_FRAGMENT : 0);
		completed = l4_csum(ctx, pp->l3, pp->l4, info);
		if (completed < 0) {
			count(slot, R_PASS_UNSAFE_CSUM);
			return XDP_PASS;
		}
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	}

	if (pp->v6) {
		struct ipv6hdr *h6 = data + sizeof(struct ethhdr);
		if ((void *)(h6 + 1) > data_end)
			return XDP_PASS;
		h6->hop_limit--;
	} else {
		struct iphdr *h4 = data + sizeof(struct ethhdr);
		if ((void *)(h4 + 1) > data_end)
			return XDP_PASS;
		// ip_decrease_ttl (include/net/ip.h)
		__u32 check = h4->check;
		check += bpf_htons(0x0100);
		h4->check = (__u16)(check + (check >= 0xFFFF));
		h4->ttl--;
	}
	struct ethhdr *eth = data;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	count(slot, completed ? R_FORWARDED_CSUM : R_FORWARDED);
	return bpf_redirect_map(&tx_ports, fib.ifindex, 0);
}

// steer rewrites the INVITE towards the steering socket and inserts the
// metadata in front of the UDP payload. Headers move 56 bytes towards the
// head (XDP guarantees 256 bytes of headroom; tailroom is not guaranteed
// for skb-backed frames). Returns XDP_PASS on success, -1 when the packet
// was left unmodified and must be forwarded instead (fail open), -2 when it
// was damaged and must be dropped.
static __always_inline int steer(struct xdp_md *ctx, struct parsed *pp, struct config *cfg,
				 struct iface *ifc, __u32 slot)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct meta m;
	__u8 hdr[MAX_HDR_LEN];
	__builtin_memset(&m, 0, sizeof(m));

	__u32 l3 = pp->l3 & 0x3f;
	__u32 l4 = pp->l4 & 0x7f;
	__u32 hlen = l4 + sizeof(struct udphdr);
	if (hlen > MAX_HDR_LEN)
		return -1;
	struct udphdr *udp = data + l4;
	if ((void *)(udp + 1) > data_end)
		return -1;

	__u32 ip_len; // IP packet length per header
	if (pp->v6) {
		if (!ifc->has_v6)
			return -1;
		struct ipv6hdr *ip6 = data + l3;
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__builtin_memcpy(m.src, &ip6->saddr, 16);
		__builtin_memcpy(m.dst, &ip6->daddr, 16);
		m.family = 6;
		ip_len = bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr);
	} else {
		if (!ifc->has_v4)
			return -1;
		struct iphdr *ip4 = data + l3;
		if ((void *)(ip4 + 1) > data_end)
			return -1;
		__builtin_memcpy(m.src, &ip4->saddr, 4);
		__builtin_memcpy(m.dst, &ip4->daddr, 4);
		m.family = 4;
		ip_len = bpf_ntohs(ip4->tot_len);
	}
	__u32 udp_len = bpf_ntohs(udp->len);
	__u32 frame_len = data_end - data;
	if (udp_len < sizeof(struct udphdr) || udp_len != ip_len - (l4 - l3) ||
	    l3 + ip_len > frame_len || udp_len + META_LEN > 0xffff)
		return -1;
	m.magic = bpf_htonl(META_MAGIC);
	m.version = META_VERSION;
	m.vlan = bpf_htons(pp->vlan);
	m.sport = udp->source;
	m.dport = udp->dest;
	m.ifindex = bpf_htonl(ctx->ingress_ifindex);
	m.cookie = cfg->cookie;

	// Sum of the metadata's 16-bit words for the UDP checksum (IPv6). It
	// starts the payload, so it is always even-aligned.
	__u32 msum = 0;
	__u16 *mw = (__u16 *)&m;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(m) / 2); i++)
		msum += mw[i];

	// Drop Ethernet padding, if any, so the payload ends the frame.
	if (frame_len > l3 + ip_len) {
		if (bpf_xdp_adjust_tail(ctx, (int)(l3 + ip_len) - (int)frame_len))
			return -1;
	}
	if (bpf_xdp_load_bytes(ctx, 0, hdr, hlen))
		return -1;
	if (bpf_xdp_adjust_head(ctx, -META_LEN))
		return -1;
	if (bpf_xdp_store_bytes(ctx, 0, hdr, hlen) ||
	    bpf_xdp_store_bytes(ctx, hlen, &m, sizeof(m)))
		return -2;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return -2;
	udp = data + l4;
	if ((void *)(udp + 1) > data_end)
		return -2;

	__u16 old_len = udp->len;
	__u16 new_len = bpf_htons(udp_len + META_LEN);
	__u16 old_port = udp->dest;
	udp->dest = cfg->steer_port;
	udp->len = new_len;

	if (pp->v6) {
		struct ipv6hdr *ip6 = data + l3;
		if ((void *)(ip6 + 1) > data_end)
			return -2;
		__u32 acc = (__u16)~udp->check;
		__u16 *od = (__u16 *)&ip6->daddr;
		__u16 *nd = (__u16 *)ifc->steer_v6;
#pragma unroll
		for (int i = 0; i < 8; i++)
			acc += csum_repl(od[i], nd[i]);
		acc += csum_repl(old_port, cfg->steer_port);
		acc += csum_repl(old_len, new_len); // pseudo-header length
		acc += csum_repl(old_len, new_len); // UDP header length
		acc = csum_fold(acc) + csum_fold(msum);
		__u16 c = ~csum_fold(acc);
		udp->check = c ? c : 0xffff;
		__builtin_memcpy(&ip6->daddr, ifc->steer_v6, 16);
		ip6->payload_len = new_len;
	} else {
		struct iphdr *ip4 = data + l3;
		if ((void *)(ip4 + 1) > data_end)
			return -2;
		udp->check = 0; // optional for IPv4 (RFC 768)
		__u16 old_tot = ip4->tot_len;
		__u16 new_tot = bpf_htons(ip_len + META_LEN);
		__u16 *od = (__u16 *)&ip4->daddr;
		__u16 *nd = (__u16 *)&ifc->steer_v4;
		__u32 acc = (__u16)~ip4->check;
		acc += csum_repl(od[0], nd[0]);
		acc += csum_repl(od[1], nd[1]);
		acc += csum_repl(old_tot, new_tot);
		ip4->check = ~csum_fold(acc);
		ip4->daddr = ifc->steer_v4;
		ip4->tot_len = new_tot;
	}
	// Deliver locally even if the frame was sent to another MAC (wire mode).
	__builtin_memcpy(eth->h_dest, ifc->mac, ETH_ALEN);
	count(slot, R_STEERED);
	return XDP_PASS;
}

SEC("xdp")
int xdp_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct parsed pp = {};
	__u32 zero = 0;
	__u32 ifindex = ctx->ingress_ifindex;

	struct iface *ifc = bpf_map_lookup_elem(&ifaces, &ifindex);
	__u32 slot = 0;
	if (ifc)
		slot = ifc->slot < MAX_IFACES ? ifc->slot : 0;
	struct config *cfg = bpf_map_lookup_elem(&config_map, &zero);
	if (!ifc || !cfg) {
		count(slot, R_PASS_EGRESS);
		return XDP_PASS;
	}

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end) {
		count(slot, R_PASS_MALFORMED);
		return XDP_PASS;
	}
	if (!mac_eq(eth->h_dest, ifc->mac)) {
		count(slot, R_PASS_L2);
		return XDP_PASS;
	}

	__u16 proto = eth->h_proto;
	__u32 off = sizeof(struct ethhdr);
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		__be16 *tag = data + off; // TCI, then inner ethertype
		if ((void *)(tag + 2) > data_end) {
			count(slot, R_PASS_MALFORMED);
			return XDP_PASS;
		}
		if (pp.nvlan == 0)
			pp.vlan = bpf_ntohs(tag[0]) & 0x0fff;
		pp.nvlan++;
		proto = tag[1];
		off += 4;
	}
	pp.l3 = off;

	__u8 l4proto;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip4 = data + off;
		if ((void *)(ip4 + 1) > data_end) {
			count(slot, R_PASS_MALFORMED);
			return XDP_PASS;
		}
		__u32 ihl = ip4->ihl * 4;
		if (ip4->version != 4 || ihl < sizeof(*ip4)) {
			count(slot, R_PASS_MALFORMED);
			return XDP_PASS;
		}
		__u16 frag = bpf_ntohs(ip4->frag_off);
		if (frag & (IP_MF | IP_OFFSET)) {
			pp.fragment = 1;
			pp.first_fragment = (frag & IP_OFFSET) == 0;
		}
		l4proto = ip4->protocol;
		pp.l4 = off + ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end) {
			count(slot, R_PASS_MALFORMED);
			return XDP_PASS;
		}
		if (ip6->version != 6) {
			count(slot, R_PASS_MALFORMED);
			return XDP_PASS;
		}
		pp.v6 = 1;
		l4proto = ip6->nexthdr;
		if (l4proto == IPPROTO_FRAGMENT)
			pp.fragment = 1;
		pp.l4 = off + sizeof(*ip6);
	} else {
		count(slot, R_PASS_NOT_IP);
		return XDP_PASS;
	}
	pp.l4proto = l4proto;

	// SIP over TCP is not steered: signing it here would take a
	// transparent TCP proxy (docs/ARCHITECTURE.md, "Inline mode"). It is
	// forwarded like any other packet and counted on top.
	if (l4proto == IPPROTO_TCP && !(pp.fragment && !pp.first_fragment)) {
		struct tcphdr *tcp = data + (pp.l4 & 0xff);
		if ((void *)(tcp + 1) <= data_end && (is_sip_port(cfg, tcp->dest) || is_sip_port(cfg, tcp->source)))
			count(slot, R_EV_SIP_TCP);
	}
	if (l4proto != IPPROTO_UDP || (pp.fragment && !pp.first_fragment))
		return forward(ctx, &pp, ifc, slot);

	struct udphdr *udp = data + (pp.l4 & 0xff);
	if ((void *)(udp + 1) > data_end) {
		count(slot, R_PASS_MALFORMED);
		return XDP_PASS;
	}

	// Someone on the wire addressing the steering socket directly would
	// inject forged metadata: drop.
	if (cfg->steer_port && udp->dest == cfg->steer_port && !pp.fragment) {
		int direct = 0;
		if (pp.v6) {
			struct ipv6hdr *ip6 = data + off;
			direct = ifc->has_v6 &&
				 in6_eq(&ip6->daddr, ifc->steer_v6);
		} else {
			struct iphdr *ip4 = data + off;
			direct = ifc->has_v4 && ip4->daddr == ifc->steer_v4;
		}
		if (direct) {
			count(slot, R_DROP_STEER_DIRECT);
			return XDP_DROP;
		}
	}

	if (!is_sip_port(cfg, udp->dest) || !is_invite(udp + 1, data_end))
		return forward(ctx, &pp, ifc, slot);

	if (pp.fragment) {
		count(slot, R_EV_INVITE_FRAGMENT);
		return forward(ctx, &pp, ifc, slot);
	}
	if (!cfg->enabled || !cfg->steer_port) {
		count(slot, R_EV_INVITE_DISABLED);
		return forward(ctx, &pp, ifc, slot);
	}
	__u64 *hb = bpf_map_lookup_elem(&heartbeat, &zero);
	__u64 now = bpf_ktime_get_ns();
	if (!hb || *hb == 0 || (__s64)(now - *hb) > (__s64)cfg->stale_ns) {
		count(slot, R_EV_INVITE_STALE);
		return forward(ctx, &pp, ifc, slot);
	}

	int rc = steer(ctx, &pp, cfg, ifc, slot);
	if (rc == -1) {
		count(slot, R_EV_INVITE_ERROR);
		return forward(ctx, &pp, ifc, slot);
	}
	if (rc < 0) {
		// The frame was resized but could not be completed; the kernel
		// would deliver a corrupt packet. Should not happen (bounds were
		// checked before growing).
		count(slot, R_EV_INVITE_ERROR);
		count(slot, R_DROP_STEER_ERROR);
		return XDP_DROP;
	}
	return rc;
}
