//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// Test-only XDP traffic generator for BenchmarkForwarding. It is never
// attached: the benchmark runs it with BPF_PROG_TEST_RUN in live-frame mode
// (BPF_F_TEST_XDP_LIVE_FRAMES), where XDP_TX sends each frame out of the
// ingress interface for real, at a rate an AF_PACKET sender cannot reach.
//
// Live frames are recycled through a page pool and keep whatever the
// forwarding path wrote into them (MACs, TTL, checksum), so every run
// rewrites the Ethernet, IPv4 and UDP headers from tmpl, which userspace
// sets before loading.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "GPL";

#define HDR_WORDS 21 /* 14 Ethernet + 20 IPv4 + 8 UDP bytes, as 16-bit words */

volatile const __u16 tmpl[HDR_WORDS];

SEC("xdp")
int xdp_trafficgen(struct xdp_md *ctx)
{
	__u16 *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if ((void *)(data + HDR_WORDS) > data_end)
		return XDP_ABORTED;
#pragma unroll
	for (int i = 0; i < HDR_WORDS; i++)
		data[i] = tmpl[i];
	return XDP_TX;
}
