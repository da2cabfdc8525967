// Package nettest builds the inline-mode test network out of network
// namespaces: a client host, an appliance host that routes between two veth
// links, and a server host.
//
//	client ns            appliance ns                     server ns
//	c0 198.18.1.2/24 --- ac0 198.18.1.1/24
//	   2001:2:0:1::2/64     2001:2:0:1::1/64
//	                        as0 198.18.2.1/24 ----------- s0 198.18.2.2/24
//	                            2001:2:0:2::1/64             2001:2:0:2::2/64
//
// MAC addresses are fixed (02:00:00:00:<net>:<host>) and neighbour entries
// are static, so nothing depends on ARP/NDP timing. The namespaces, links
// and addresses are internal/netns's; this package owns only the
// topology. Namespaces are removed by t.Cleanup, also when the test fails;
// those a killed run left behind are removed by the first New of the next
// (netns.RemoveLeftovers).
//
// The client and server veths are left as ip-link creates them (no XDP
// program, GRO off, TX checksum offload on), like the ordinary hosts of a
// container or VM host, unless Options.NeighbourGRO tunes them. RTPStream
// and TCPExchange check media and SIP-over-TCP traffic across the
// appliance, byte for byte, bounded in count and time.
//
// Tests need root with CAP_SYS_ADMIN and CAP_NET_ADMIN, and iproute2.
// Without them the test is skipped with a message naming what is missing,
// unless CI=true, where a missing prerequisite fails the test.
//
// Concurrency: NS.Do (netns.NS.Do) locks an OS thread per call; Topology
// values are read-only after New. Limits: one topology per New call, names unique per
// process (sl<pid>-<n>-{c,a,s}).
package nettest
