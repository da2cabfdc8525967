package netns

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exists reports whether the namespace is listed under /run/netns.
func exists(name string) bool {
	_, err := os.Stat(runDir + name)
	return err == nil
}

// linkNames lists the links the namespace sees, as ip prints them.
func linkNames(t *testing.T, n *NS) string {
	t.Helper()
	out, err := n.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show in %q: %v: %s", n.Name, err, out)
	}
	return string(out)
}

// exchange sends one datagram from src in a to dst in b and checks it
// arrives from src.
func exchange(t *testing.T, a, b *NS, src, dst netip.AddrPort) {
	t.Helper()
	var rx, tx *net.UDPConn
	if err := b.Do(func() (err error) { rx, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst)); return err }); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := a.Do(func() (err error) { tx, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(src)); return err }); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := tx.WriteToUDPAddrPort([]byte("ping"), dst); err != nil {
		t.Fatal(err)
	}
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	m, from, err := rx.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:m]) != "ping" || netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != src {
		t.Fatalf("%v -> %v: got %q from %v, %v", src, dst, buf[:m], from, err)
	}
}

// TestVeth: a pair between two namespaces carries IPv4 and IPv6 with the
// MAC and MTU asked for; each namespace sees only its own links.
func TestVeth(t *testing.T) {
	p := Prefix("slnt")
	a, b := New(t, p+"-a"), New(t, p+"-b")
	if err := Veth(End{NS: a, Name: "x0", MAC: "02:00:00:00:09:01", MTU: 1400}, End{NS: b, Name: "x1", MTU: 1400}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		n    *NS
		dev  string
		addr string
	}{{a, "x0", "198.18.9.1/24"}, {a, "x0", "2001:2:0:9::1/64"}, {b, "x1", "198.18.9.2/24"}, {b, "x1", "2001:2:0:9::2/64"}} {
		if err := s.n.AddAddr(s.dev, netip.MustParsePrefix(s.addr)); err != nil {
			t.Fatal(err)
		}
	}
	exchange(t, a, b, netip.MustParseAddrPort("198.18.9.1:4000"), netip.MustParseAddrPort("198.18.9.2:4001"))
	exchange(t, b, a, netip.MustParseAddrPort("[2001:2:0:9::2]:4000"), netip.MustParseAddrPort("[2001:2:0:9::1]:4001"))
	la := linkNames(t, a)
	if !strings.Contains(la, "x0@") || strings.Contains(la, "x1@") || !strings.Contains(la, "mtu 1400") || !strings.Contains(la, "02:00:00:00:09:01") {
		t.Errorf("namespace a sees:\n%s", la)
	}
	// Do and Command run inside; the zero NS is the process's own.
	var ifs []net.Interface
	if err := b.Do(func() (err error) { ifs, err = net.Interfaces(); return err }); err != nil || len(ifs) != 2 {
		t.Errorf("Do in b sees %d interfaces (%v), want lo and x1", len(ifs), err)
	}
	if self := linkNames(t, &NS{}); strings.Contains(self, "x0@") || strings.Contains(self, "x1@") {
		t.Errorf("the pair leaked into the process's namespace:\n%s", self)
	}
	if err := b.SetGRO("x1", true); err != nil {
		t.Fatal(err)
	}
	if out, _ := b.Command("ethtool", "-k", "x1").CombinedOutput(); len(out) > 0 && !strings.Contains(string(out), "generic-receive-offload: on") {
		t.Errorf("GRO not on:\n%s", out)
	}
}

// TestBridgeAndOwnEnd: hosts on a bridge reach each other, and a veth end
// in the process's own namespace goes away with the namespace.
func TestBridgeAndOwnEnd(t *testing.T) {
	p := Prefix("slnt")
	core, h1, h2 := New(t, p+"-core"), New(t, p+"-h1"), New(t, p+"-h2")
	if err := core.Bridge("br0"); err != nil {
		t.Fatal(err)
	}
	for i, h := range []*NS{h1, h2} {
		peer := []string{"c1", "c2"}[i]
		if err := Veth(End{NS: h, Name: "eth0"}, End{NS: core, Name: peer, Master: "br0"}); err != nil {
			t.Fatal(err)
		}
		if err := h.AddAddr("eth0", netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 7, byte(i + 1)}), 24)); err != nil {
			t.Fatal(err)
		}
	}
	exchange(t, h1, h2, netip.MustParseAddrPort("198.18.7.1:5000"), netip.MustParseAddrPort("198.18.7.2:5001"))

	own := "slnv" + strconv.Itoa(os.Getpid())
	lonely, err := Add(p + "-own")
	if err != nil {
		t.Fatal(err)
	}
	if err := Veth(End{Name: own}, End{NS: lonely, Name: "eth0"}); err != nil {
		_ = lonely.Delete()
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName(own); err != nil {
		t.Errorf("own end %s not in the process's namespace: %v", own, err)
	}
	if err := lonely.Delete(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, err := net.InterfaceByName(own); err == nil; _, err = net.InterfaceByName(own) {
		if time.Now().After(deadline) {
			t.Fatalf("own end %s outlived its peer's namespace", own)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAddAddrRange: only the benchmarking ranges are accepted.
func TestAddAddrRange(t *testing.T) {
	for _, c := range []struct {
		p  string
		ok bool
	}{
		{"198.18.0.1/15", true}, {"198.19.255.254/30", true}, {"2001:2::1/48", true}, {"2001:2:0:ffff::1/64", true},
		{"198.18.0.1/14", false}, {"198.20.0.1/24", false}, {"10.0.0.1/8", false}, {"127.0.0.2/8", false},
		{"2001:3::1/64", false}, {"2001:2::1/47", false}, {"::1/128", false},
	} {
		if got := InRange(netip.MustParsePrefix(c.p)); got != c.ok {
			t.Errorf("InRange(%s) = %v", c.p, got)
		}
	}
	// Refused before anything runs: the zero NS would be the machine's.
	if err := (&NS{}).AddAddr("lo", netip.MustParsePrefix("10.1.2.3/32")); err == nil || !strings.Contains(err.Error(), "outside 198.18.0.0/15") {
		t.Errorf("AddAddr 10.1.2.3: %v", err)
	}
}

// TestDeleteKillsProcesses: what runs inside is killed, the namespace is
// gone.
func TestDeleteKillsProcesses(t *testing.T) {
	Require(t)
	n, err := Add(Prefix("slnt") + "-k")
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		_ = n.Delete()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitInside(t, n, cmd.Process.Pid)
	if err := n.Delete(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("Delete left the process in the namespace running")
	}
	if exists(n.Name) {
		t.Errorf("%s still exists", n.Name)
	}
	if err := (&NS{}).Delete(); err == nil {
		t.Error("deleting the process's own namespace: no error")
	}
}

// waitInside waits until ip netns exec has entered the namespace and
// exec'ed the command.
func waitInside(t *testing.T, n *NS, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
		if slices.Contains(strings.Fields(string(out)), strconv.Itoa(pid)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not enter %s", pid, n.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChildFails and TestChildKilled are run by TestCleanup and
// TestRemoveLeftovers in a child process: each makes a namespace with a
// process in it and prints its name, then fails or waits to be killed.
func TestChildFails(t *testing.T)  { child(t, "fail") }
func TestChildKilled(t *testing.T) { child(t, "wait") }

func child(t *testing.T, how string) {
	if os.Getenv("NETNS_CHILD") != how {
		t.Skip("run by TestCleanup and TestRemoveLeftovers")
	}
	n := New(t, Prefix("slnl")+"-x")
	cmd := n.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitInside(t, n, cmd.Process.Pid)
	os.Stdout.WriteString("NS " + n.Name + "\n")
	if how == "fail" {
		t.Fatal("failing on purpose")
	}
	time.Sleep(time.Minute)
}

// startChild runs one of the child tests and returns it with the name of
// the namespace it made.
func startChild(t *testing.T, test, how string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v")
	cmd.Env = append(os.Environ(), "NETNS_CHILD="+how, "CI=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var log strings.Builder
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if name, ok := strings.CutPrefix(sc.Text(), "NS "); ok {
			go func() { // drain the rest
				for sc.Scan() {
				}
			}()
			return cmd, name
		}
	}
	_ = cmd.Wait()
	t.Fatalf("child %s printed no namespace:\n%s", test, log.String())
	return nil, ""
}

// TestCleanup: a test that fails still removes its namespace and kills
// what ran in it.
func TestCleanup(t *testing.T) {
	Require(t)
	cmd, name := startChild(t, "TestChildFails", "fail")
	err := cmd.Wait()
	if err == nil {
		t.Fatal("the child test passed; it fails on purpose")
	}
	if exists(name) {
		t.Errorf("namespace %s survived the failing test", name)
		_ = (&NS{Name: name}).Delete()
	}
}

// TestRemoveLeftovers: the namespace of a test process killed by SIGKILL
// (no cleanup ran) is removed with the process it left inside; this
// process's own namespaces, and a namespace whose owner still holds its
// lock although its pid is not running here (another pid namespace),
// are left alone.
func TestRemoveLeftovers(t *testing.T) {
	Require(t)
	cmd, leftover := startChild(t, "TestChildKilled", "wait")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !exists(leftover) {
		t.Fatalf("%s vanished without a cleanup", leftover)
	}
	t.Cleanup(func() {
		if exists(leftover) {
			_ = (&NS{Name: leftover}).Delete()
		}
	})
	inside, _ := exec.Command("ip", "netns", "pids", leftover).Output()
	if len(strings.Fields(string(inside))) == 0 {
		t.Fatalf("no process left in %s", leftover)
	}

	mine := New(t, Prefix("slnl")+"-mine")
	// A dead pid's name, locked by this process.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	foreign, err := Add("slnl" + strconv.Itoa(dead.ProcessState.Pid()) + "-1-foreign")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = foreign.Delete() })

	removed, err := RemoveLeftovers("slnl")
	if err != nil {
		t.Fatal(err)
	}
	// Older runs' leftovers may go too; the live owners' must not.
	if !slices.Contains(removed, leftover) || slices.Contains(removed, mine.Name) || slices.Contains(removed, foreign.Name) {
		t.Errorf("removed %v, want %s and neither %s nor %s", removed, leftover, mine.Name, foreign.Name)
	}
	if exists(leftover) {
		t.Errorf("%s not removed", leftover)
	}
	for _, pid := range strings.Fields(string(inside)) {
		if _, err := os.Stat("/proc/" + pid); err == nil {
			if st, _ := os.ReadFile("/proc/" + pid + "/stat"); !strings.Contains(string(st), ") Z ") {
				t.Errorf("process %s left in %s still runs", pid, leftover)
			}
		}
	}
	if !exists(mine.Name) || !exists(foreign.Name) {
		t.Errorf("a namespace with a live owner was removed: %s %v, %s %v", mine.Name, exists(mine.Name), foreign.Name, exists(foreign.Name))
	}
}

func TestOwner(t *testing.T) {
	for _, c := range []struct {
		name, tag string
		pid       int
		ok        bool
	}{
		{"sl4711-3-c", "sl", 4711, true},
		{"sli4711-1-core", "sl", 0, false},
		{"sli4711-1-core", "sli", 4711, true},
		{"slans12-1-0", "sl", 0, false},
		{"sl4711", "sl", 0, false},
		{"sl-1-x", "sl", 0, false},
		{"sl+5-1-x", "sl", 0, false},
		{"other", "sl", 0, false},
	} {
		if pid, ok := owner(c.name, c.tag); pid != c.pid || ok != c.ok {
			t.Errorf("owner(%q, %q) = %d, %v", c.name, c.tag, pid, ok)
		}
	}
	if p, q := Prefix("x"), Prefix("x"); p == q || !strings.HasPrefix(p, "x"+strconv.Itoa(os.Getpid())+"-") {
		t.Errorf("Prefix: %q, %q", p, q)
	}
}
