// Package ansible holds the Ansible role (roles/appliance), the sample
// inventory and the playbooks (site.yml, rolling-upgrade.yml) that install,
// configure, tune, supervise and upgrade the appliance. The Go code here is
// only its test harness, which applies the role for real to test hosts made
// on this machine and runs the rolling upgrade under live SIP traffic:
//
//   - harness_test.go: the prerequisites, the secrets given to the role,
//     building the appliance;
//   - hosts_test.go: the test hosts (namespace, veth, sshd, overlays) and
//     what the tests read from them;
//   - inventory_test.go: the inventory the role is applied with;
//   - playbook_test.go: running ansible-playbook within its limit, timing
//     its tasks;
//   - traffic_test.go: the SBC (INVITEs round-robin over the hosts in
//     service), the next hop that counts them, the counter sampler;
//   - upgrade_test.go: TestRoleAndRollingUpgrade, monitoring_test.go:
//     TestMonitoringTag, systemd_test.go: TestUnitVerifies.
//
// Test hosts: one network namespace per host (internal/netns; veth to the
// root namespace, 198.19.N.0/30 addresses from the benchmarking range; a
// killed run's namespaces are removed by the next), each running its
// own sshd reached by ansible-playbook over SSH. Each sshd runs in a private
// mount namespace where /etc, /var, /usr/local and /opt are overlays (upper
// layers under the test's temporary directory), /run is a fresh tmpfs and
// /root a bare Debian root home (bareHome), so every host has its own
// users, /etc/shakenline, sysctl.d, unit directory, token store and pidfile
// while /usr (the Debian packages) is shared. systemd cannot run there, so the role is applied with
// appliance_supervisor=pidfile (start-stop-daemon + setpriv, the same user,
// capabilities, validation and SIGHUP reload as the unit) and the unit is
// still rendered and checked with systemd-analyze verify on every run.
//
// Concurrency: the test is sequential; the traffic generator, the SIP sink
// and the metrics sampler are goroutines stopped before the test returns.
// Limits: two hosts, traffic bounded in rate (100 INVITEs/s) and count,
// each ansible-playbook run bounded by playLimit (4 minutes scaled by the
// load, within go test -timeout); a run stopped there fails naming the task
// it was running.
// Cleanup: processes in the namespaces, sshd, namespaces and files are
// removed with t.Cleanup even when the test fails.
package ansible
