//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// Test-only XDP sink: counts and drops every frame. The forwarding
// benchmark attaches it to the receiving host's veth so that the measured
// rate is the appliance's forwarding rate, not the receiver's UDP stack.

#include <linux/bpf.h>
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
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&sink_count, &zero);
	if (v)
		*v += 1;
	return XDP_DROP;
}
