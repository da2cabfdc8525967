//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// Test-only XDP sink: drops every frame and counts the IPv4 UDP ones (the
// generator's; not the IPv6 neighbour discovery or MLD frames the kernel
// sends on a new link by itself). The forwarding benchmark attaches it to
// the receiving host's veth so that the measured rate is the appliance's
// forwarding rate, not the receiver's UDP stack.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP)
		return XDP_DROP;
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&sink_count, &zero);
	if (v)
		*v += 1;
	return XDP_DROP;
}
