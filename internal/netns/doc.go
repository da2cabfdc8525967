// Package netns owns the network namespaces that the project's tests and
// its lab (bench/interop) build on this machine: creating one under a name
// unique to the process, veth pairs and bridges between them, addresses
// from the benchmarking ranges, running a function or a process inside,
// and removing them again, also after a run that was killed.
//
// # What it owns
//
//   - NS: a namespace made with `ip netns add` (/run/netns/<name>). Do runs
//     a function on an OS thread switched into it, Go does so without
//     waiting, Command returns a process that runs inside (ip netns exec).
//     The zero NS is the namespace the process runs in, so a veth end or
//     an address can be put there too (the Ansible test's controller side).
//   - Links: Veth makes a pair between two namespaces, optionally with a
//     fixed MAC, an MTU or one end enslaved to a bridge (Bridge), and sets
//     both ends up. AddAddr refuses addresses outside 198.18.0.0/15 and
//     2001:2::/48 (RFC 2544 and RFC 5180 benchmarking ranges), the only
//     ones a test may use. SetGRO is ETHTOOL_SGRO.
//   - Names and removal: Prefix returns tag<pid>-<n>, unique per process
//     and call; Add and New create a namespace and hold a lock on it
//     (flock on /run/netns/<name>) for as long as the process lives.
//     Delete kills what still runs inside (ip netns pids) and removes it;
//     New registers Delete with t.Cleanup, so a failing test removes its
//     namespaces too. RemoveLeftovers(tag) removes the namespaces of that
//     tag whose owner is gone (the pid in the name is not running and
//     nobody holds the lock), what a run killed by a timeout leaves
//     behind; a namespace of another process that is still running, even
//     one in another pid namespace, is left alone. Removing a namespace
//     removes its links, so a veth with one end in the process's own
//     namespace goes too.
//   - The prerequisite: Available says what is missing (root,
//     CAP_SYS_ADMIN for ip netns add, CAP_NET_ADMIN for links, the ip tool)
//     through internal/prereq; Require skips a test on it (fails under
//     CI=true).
//
// Topologies stay with their users: bpf/nettest (the inline client,
// appliance and server hosts), bench/interop (a core bridge and a host per
// carrier) and deploy/ansible's test hosts (sshd per namespace).
//
// Concurrency: an NS is read-only after Add; Do locks an OS thread per
// call and returns the thread to the runtime only once it is back in the
// process's namespace. Goroutines started by the function given to Do do
// not run in the namespace. Needs iproute2 (ip) and Linux >= 4.11
// (/proc/thread-self).
package netns
