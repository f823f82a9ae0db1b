package clustertest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requireNetns skips a test that needs network namespaces where there are none, saying why; in
// CI (CI set) or with WARREN_CHAOS_NETNS=on it fails instead, so CI cannot skip them silently.
func requireNetns(t *testing.T) {
	t.Helper()
	if ok, why := netnsUsable(); !ok {
		if os.Getenv("CI") != "" || os.Getenv("WARREN_CHAOS_NETNS") == "on" {
			t.Fatalf("network namespaces needed here: %s", why)
		}
		t.Skipf("needs network namespaces (root and the ip tool): %s", why)
	}
}

// fakeNodeArgs makes /bin/sh a stand-in node: it writes its address file and sleeps.
var fakeNodeArgs = []string{"-c", `printf '{"amqp":"%s"}' '{{.AMQP}}' > '{{.AddrFile}}'; exec sleep 600`}

func startFake(t *testing.T, nodes int) *Cluster {
	t.Helper()
	c, err := Start(Options{Binary: "/bin/sh", Nodes: nodes, Args: fakeNodeArgs, Netns: NetnsRequire, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoIn listens on addr in node i's namespace and answers each connection with "ok\n".
func echoIn(t *testing.T, c *Cluster, i int, addr string) {
	t.Helper()
	ln, err := c.ListenIn(i, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("ok\n"))
			conn.Close()
		}
	}()
}

// reach reports whether a TCP exchange from node `from` (0: this, the root namespace) to addr
// works within timeout.
func reach(c *Cluster, from int, addr string, timeout time.Duration) bool {
	var conn net.Conn
	var err error
	if from == 0 {
		conn, err = net.DialTimeout("tcp", addr, timeout)
	} else {
		conn, err = c.DialFrom(from, addr, timeout)
	}
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && line == "ok\n"
}

func TestNetwork_CutLinksFailAndHeal(t *testing.T) {
	requireNetns(t)
	c := startFake(t, 3)
	addr := func(i int) string { return net.JoinHostPort(c.Node(i).Args.IP, "9000") }
	for i := 1; i <= 3; i++ {
		echoIn(t, c, i, addr(i))
	}
	const cut = 700 * time.Millisecond // a dropped SYN: the dial times out
	const up = 5 * time.Second
	type path struct{ from, to int }
	check := func(stage string, want map[path]bool) {
		t.Helper()
		for p, ok := range want {
			if got := reach(c, p.from, addr(p.to), map[bool]time.Duration{true: up, false: cut}[ok]); got != ok {
				t.Errorf("%s: %d → %d reachable = %v, want %v", stage, p.from, p.to, got, ok)
			}
		}
	}
	all := func(v bool) map[path]bool {
		m := map[path]bool{}
		for a := 0; a <= 3; a++ {
			for b := 1; b <= 3; b++ {
				if a != b {
					m[path{a, b}] = v
				}
			}
		}
		return m
	}
	check("before", all(true))

	// Node 1 isolated from the others; clients (root, 0) still reach it.
	if err := c.Isolate(1); err != nil {
		t.Fatal(err)
	}
	m := all(true)
	m[path{2, 1}], m[path{3, 1}], m[path{1, 2}], m[path{1, 3}] = false, false, false, false
	check("isolate 1", m)
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	check("healed", all(true))

	// Bridge: 1 | 3 with 2 seeing both sides.
	if err := c.Partition([]int{1}, []int{3}); err != nil {
		t.Fatal(err)
	}
	m = all(true)
	m[path{1, 3}], m[path{3, 1}] = false, false
	check("bridge", m)
	c.Heal()

	// Link down: node 2 unreachable from everyone, clients included.
	if err := c.LinkDown(2); err != nil {
		t.Fatal(err)
	}
	m = all(true)
	m[path{0, 2}], m[path{1, 2}], m[path{3, 2}], m[path{2, 1}], m[path{2, 3}] = false, false, false, false, false
	check("link-down 2", m)
	c.Heal()
	check("healed again", all(true))
}

// TestNetwork_OneWay checks that a one-way cut drops packets in one direction only: datagrams
// from 2 still reach 1, none from 1 reach 2.
func TestNetwork_OneWay(t *testing.T) {
	requireNetns(t)
	c := startFake(t, 2)
	if err := c.Cut(1, 2); err != nil {
		t.Fatal(err)
	}
	got := func(from, to int) bool {
		var pc net.PacketConn
		if err := inNetns(c.net.ns(to), func() error {
			var err error
			pc, err = net.ListenPacket("udp", net.JoinHostPort(c.Node(to).Args.IP, "9001"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		var out net.Conn
		if err := inNetns(c.net.ns(from), func() error {
			var err error
			out, err = net.Dial("udp", pc.LocalAddr().String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		pc.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		buf := make([]byte, 16)
		for k := 0; k < 5; k++ {
			out.Write([]byte("hi"))
		}
		_, _, err := pc.ReadFrom(buf)
		return err == nil
	}
	if got(1, 2) {
		t.Error("1 → 2 delivered across a one-way cut")
	}
	if !got(2, 1) {
		t.Error("2 → 1 not delivered: the cut is not one-way")
	}
	c.Heal()
	if !got(1, 2) {
		t.Error("1 → 2 not delivered after heal")
	}
}

// TestNetwork_CleanupLeavesNothing checks that Close removes the namespaces and the root link,
// and that CleanupStale removes what a crashed run left (its processes too) but not a live
// harness's slot.
func TestNetwork_CleanupLeavesNothing(t *testing.T) {
	requireNetns(t)
	live := startFake(t, 1)
	c, err := Start(Options{Binary: "/bin/sh", Nodes: 2, Args: fakeNodeArgs, Netns: NetnsRequire})
	if err != nil {
		t.Fatal(err)
	}
	slot := c.net.slot
	c.Close()
	if s := slotTraces(slot); s != "" {
		t.Errorf("after Close, slot %d left: %s", slot, s)
	}

	// A crashed run: a slot file naming a dead process, a namespace with a process in it.
	dead := exec.Command("true")
	dead.Run()
	x := 0
	for k := maxSlot; k > 0; k-- {
		if !usedSlots()[k] {
			x = k
			break
		}
	}
	os.WriteFile(filepath.Join(stateDir, fmt.Sprintf("slot-%d", x)), []byte(fmt.Sprintf("%d 1\n", dead.Process.Pid)), 0o644)
	ns := nsName(x, "n1")
	if err := ipRun("netns", "add", ns); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("ip", "netns", "exec", ns, "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { sleeper.Wait(); close(exited) }()
	cleaned, err := CleanupStale()
	if err != nil {
		t.Fatal(err)
	}
	if !contains(cleaned, x) || contains(cleaned, live.net.slot) {
		t.Errorf("cleaned slots %v; want %d and not the live %d", cleaned, x, live.net.slot)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the stale namespace's process still runs")
	}
	if s := slotTraces(x); s != "" {
		t.Errorf("stale slot %d left: %s", x, s)
	}
	if !reach(live, 0, net.JoinHostPort(live.Node(1).Args.IP, "1"), 300*time.Millisecond) {
		// nothing listens on port 1: a refused connection still proves the route is there
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort(live.Node(1).Args.IP, "1"), time.Second); err == nil {
			conn.Close()
		} else if !strings.Contains(err.Error(), "refused") {
			t.Errorf("the live harness lost its network: %v", err)
		}
	}
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// slotTraces describes what is left of a slot ("" when nothing).
func slotTraces(x int) string {
	var left []string
	prefix := fmt.Sprintf("%s%d-", nsPrefix, x)
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, prefix) {
			left = append(left, "netns "+strings.Fields(l)[0])
		}
	}
	if exec.Command("ip", "link", "show", nsName(x, "up")).Run() == nil {
		left = append(left, "link "+nsName(x, "up"))
	}
	if out, _ := exec.Command("ip", "route", "show", fmt.Sprintf("10.77.%d.0/24", x)).Output(); len(strings.TrimSpace(string(out))) > 0 {
		left = append(left, "route "+strings.TrimSpace(string(out)))
	}
	if _, err := os.Stat(filepath.Join(stateDir, "slot-"+strconv.Itoa(x))); err == nil {
		left = append(left, "slot file")
	}
	return strings.Join(left, ", ")
}

func TestNodeArgs_Template(t *testing.T) {
	requireNetns(t)
	c, err := Start(Options{Binary: "/bin/sh", Nodes: 3, Args: fakeNodeArgs, Netns: NetnsRequire, Proxy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := c.Node(2).Args
	ip := nodeIP(c.net.slot, 2)
	if a.Name != "warren-2" || a.AMQP != ip+":5672" || a.Gossip != ip+":7946" || a.RPC != ip+":7947" || a.RPCBind != ip+":17947" {
		t.Errorf("node 2 args %+v", a)
	}
	if want := nodeIP(c.net.slot, 1) + ":7946," + nodeIP(c.net.slot, 3) + ":7946"; a.Join != want {
		t.Errorf("join %q, want %q", a.Join, want)
	}
	// The cluster template renders with every planned flag.
	argv, err := renderArgs(ClusterArgs, a)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(argv, " ")
	for _, w := range []string{"--node-name warren-2", "--cluster-listen " + ip + ":7946", "--cluster-rpc-listen " + ip + ":17947",
		"--cluster-join " + a.Join, "--cluster-expect 3", "--cluster-key-file " + c.KeyFile, "--data-dir " + a.DataDir} {
		if !strings.Contains(got, w) {
			t.Errorf("cluster args %q lack %q", got, w)
		}
	}
	if key, _ := os.ReadFile(c.KeyFile); len(strings.TrimSpace(string(key))) != 64 {
		t.Errorf("key file %q", key)
	}
}

// TestNetwork_ProxyBetweenNodes: the proxy listens in each node's namespace on its RPC address,
// forwards to RPCBind, and tells sources apart by address, so a fault on 2 → 1 leaves 2 → 3
// alone; a partition cuts proxied traffic too.
func TestNetwork_ProxyBetweenNodes(t *testing.T) {
	requireNetns(t)
	c, err := Start(Options{Binary: "/bin/sh", Nodes: 3, Args: fakeNodeArgs, Netns: NetnsRequire, Proxy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoIn(t, c, 2, c.Node(2).Args.RPCBind)
	rpc := c.Node(2).Args.RPC
	if !reach(c, 1, rpc, 5*time.Second) || !reach(c, 3, rpc, 5*time.Second) {
		t.Fatal("no path through the proxy")
	}
	c.Proxy.Set(2, 1, LinkFaults{Blocked: true}) // the answers from 2 to 1
	if reach(c, 1, rpc, 500*time.Millisecond) {
		t.Error("1 → 2 passed a blocked proxy link")
	}
	if !reach(c, 3, rpc, 5*time.Second) {
		t.Error("3 → 2 blocked by the fault of 2 → 1")
	}
	c.Heal()
	if !reach(c, 1, rpc, 5*time.Second) {
		t.Error("1 → 2 still blocked after heal")
	}
	c.Isolate(2)
	if reach(c, 3, rpc, 700*time.Millisecond) {
		t.Error("proxied traffic crossed a partition")
	}
	c.Heal()
	if !reach(c, 3, rpc, 5*time.Second) {
		t.Error("3 → 2 after heal")
	}
}
