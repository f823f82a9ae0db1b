package clustertest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The test network of one harness instance ("slot" X, 1..250):
//
//	root ns ── wct-X-up (10.77.X.2/30) ═══ up0 (10.77.X.1/30) ┐
//	                                                           ├─ wct-X-rt: a router namespace
//	wct-X-n1: eth0 10.77.X.6/30  ════════ n1 (10.77.X.5/30) ───┤  (ip_forward=1 there only)
//	wct-X-n2: eth0 10.77.X.10/30 ════════ n2 (10.77.X.9/30) ───┘
//
// Every node namespace has its own /30 link to the router, so every packet between two nodes
// (and between a node and the root namespace) is forwarded by the router namespace, where
// `ip rule ... blackhole` drops it silently: per directed pair, without any packet-filter
// tool (no iptables or nftables needed) and without touching the host's own traffic. A
// blackhole route in a node's own namespace would instead fail the node's sends at once
// (EINVAL), which is not what a partition looks like. The root namespace gets one veth end and
// one route (10.77.X.0/24), both removed at cleanup; the client side of tests reaches every node
// through it.
const (
	nsPrefix   = "wct-"              // every namespace and root-ns link of the harness starts with it
	stateDir   = "/run/warren-chaos" // slot-X files naming the owning process; the lock file
	maxSlot    = 250
	maxNetNode = 60 // node i uses 10.77.X.(4i+1) and (4i+2)
	rulePrio   = "100"
)

// nodeIP is the address of node i (1-based) in slot x.
func nodeIP(x, i int) string { return fmt.Sprintf("10.77.%d.%d", x, 4*i+2) }

// routerIP is the router's end of node i's link (i=0: the root namespace's link).
func routerIP(x, i int) string { return fmt.Sprintf("10.77.%d.%d", x, 4*i+1) }

// rootIP is the root namespace's address in slot x: where test clients come from.
func rootIP(x int) string { return nodeIP(x, 0) }

func nsName(x int, suffix string) string { return fmt.Sprintf("%s%d-%s", nsPrefix, x, suffix) }

// netw is one slot's namespaces and the cuts currently applied in its router.
type netw struct {
	slot  int
	nodes int
	mu    sync.Mutex
	rules map[string]bool // "from|to" → applied; "" for any
}

// ipRun runs ip with args and returns its combined output in the error.
func ipRun(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// netnsUsable reports whether this process can build namespaces (root and the ip tool), and why
// not.
func netnsUsable() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false, "the ip tool is missing"
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return false, "no network namespaces in /proc"
	}
	return true, ""
}

// lockState takes the harness-wide lock (an flock on stateDir/lock) and returns its release.
func lockState() (func(), error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// procStart returns a process's start time (field 22 of /proc/PID/stat), to tell a live owner
// from a reused pid.
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 20 {
		return ""
	}
	return f[19] // field 22 overall; fields after "(comm)" start at field 3
}

// ownerAlive reports whether the process recorded in a slot file still runs.
func ownerAlive(slot int) bool {
	b, err := os.ReadFile(filepath.Join(stateDir, fmt.Sprintf("slot-%d", slot)))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	pid, _ := strconv.Atoi(f[0])
	return pid > 0 && procStart(pid) == f[1]
}

// usedSlots lists the slots that have namespaces, root-ns links or slot files.
func usedSlots() map[int]bool {
	used := map[int]bool{}
	parse := func(name string) {
		if !strings.HasPrefix(name, nsPrefix) {
			return
		}
		rest := strings.TrimPrefix(name, nsPrefix)
		if i := strings.IndexByte(rest, '-'); i > 0 {
			if x, err := strconv.Atoi(rest[:i]); err == nil {
				used[x] = true
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				parse(f[0])
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) > 1 {
				parse(strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
			}
		}
	}
	if ents, err := os.ReadDir(stateDir); err == nil {
		for _, e := range ents {
			if x, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "slot-")); err == nil && strings.HasPrefix(e.Name(), "slot-") {
				used[x] = true
			}
		}
	}
	return used
}

// CleanupStale removes what crashed earlier harness runs left behind: the namespaces (and every
// process still in them), root-namespace links and slot files of every slot whose owning process
// is gone. Slots of live harnesses (tests running concurrently) are left alone. It returns the
// slots it cleaned.
func CleanupStale() ([]int, error) {
	if ok, why := netnsUsable(); !ok {
		return nil, fmt.Errorf("clustertest: no namespaces: %s", why)
	}
	unlock, err := lockState()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return cleanupStaleLocked(), nil
}

func cleanupStaleLocked() []int {
	var cleaned []int
	for x := range usedSlots() {
		if !ownerAlive(x) {
			destroySlot(x)
			cleaned = append(cleaned, x)
		}
	}
	sort.Ints(cleaned)
	return cleaned
}

// destroySlot kills every process in the slot's namespaces and deletes them, the root link and
// the slot file. Errors are ignored: it is best effort and runs again on the next start.
func destroySlot(x int) {
	prefix := fmt.Sprintf("%s%d-", nsPrefix, x)
	var names []string
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
				names = append(names, f[0])
			}
		}
	}
	for _, ns := range names {
		killNetnsPids(ns)
	}
	for _, ns := range names {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	exec.Command("ip", "link", "del", nsName(x, "up")).Run()
	os.Remove(filepath.Join(stateDir, fmt.Sprintf("slot-%d", x)))
}

// killNetnsPids sends SIGKILL (after SIGCONT, for stopped ones) to every process in namespace ns
// and waits briefly for them to go.
func killNetnsPids(ns string) {
	for try := 0; try < 50; try++ {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			return
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
				syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// claimSlot cleans stale slots and claims a free one for this process.
func claimSlot() (int, error) {
	unlock, err := lockState()
	if err != nil {
		return 0, err
	}
	defer unlock()
	cleanupStaleLocked()
	used := usedSlots()
	start := rand.IntN(maxSlot)
	for k := 0; k < maxSlot; k++ {
		x := (start+k)%maxSlot + 1
		if used[x] {
			continue
		}
		// Never take a subnet the host routes already (someone else's 10.77.X.0/24).
		if out, _ := exec.Command("ip", "route", "show", fmt.Sprintf("10.77.%d.0/24", x)).Output(); len(bytes.TrimSpace(out)) > 0 {
			continue
		}
		content := fmt.Sprintf("%d %s\n", os.Getpid(), procStart(os.Getpid()))
		if err := os.WriteFile(filepath.Join(stateDir, fmt.Sprintf("slot-%d", x)), []byte(content), 0o644); err != nil {
			return 0, err
		}
		return x, nil
	}
	return 0, errors.New("clustertest: no free network slot")
}

// buildNetwork claims a slot and creates the router namespace, n node namespaces and the root
// link.
func buildNetwork(n int) (*netw, error) {
	if n > maxNetNode {
		return nil, fmt.Errorf("clustertest: at most %d nodes with namespaces", maxNetNode)
	}
	x, err := claimSlot()
	if err != nil {
		return nil, err
	}
	nw := &netw{slot: x, nodes: n, rules: map[string]bool{}}
	rt := nsName(x, "rt")
	cmds := [][]string{
		{"netns", "add", rt},
		{"-n", rt, "link", "set", "lo", "up"},
		{"link", "add", nsName(x, "up"), "type", "veth", "peer", "name", "up0", "netns", rt},
		{"-n", rt, "addr", "add", routerIP(x, 0) + "/30", "dev", "up0"},
		{"-n", rt, "link", "set", "up0", "up"},
		{"addr", "add", rootIP(x) + "/30", "dev", nsName(x, "up")},
		{"link", "set", nsName(x, "up"), "up"},
		{"route", "add", fmt.Sprintf("10.77.%d.0/24", x), "via", routerIP(x, 0)},
	}
	for i := 1; i <= n; i++ {
		ns := nsName(x, "n"+strconv.Itoa(i))
		port := "n" + strconv.Itoa(i)
		cmds = append(cmds,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", rt, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", rt, "addr", "add", routerIP(x, i) + "/30", "dev", port},
			[]string{"-n", rt, "link", "set", port, "up"},
			[]string{"-n", ns, "addr", "add", nodeIP(x, i) + "/30", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "route", "add", fmt.Sprintf("10.77.%d.0/24", x), "via", routerIP(x, i)},
		)
	}
	for _, c := range cmds {
		if err := ipRun(c...); err != nil {
			nw.destroy()
			return nil, err
		}
	}
	// Forwarding on in the router namespace only (a new namespace starts with it off).
	if err := inNetns(rt, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}); err != nil {
		nw.destroy()
		return nil, fmt.Errorf("clustertest: ip_forward in %s: %w", rt, err)
	}
	return nw, nil
}

func (nw *netw) destroy() {
	unlock, err := lockState()
	if err == nil {
		defer unlock()
	}
	destroySlot(nw.slot)
}

func (nw *netw) ns(i int) string { return nsName(nw.slot, "n"+strconv.Itoa(i)) }

// setRule adds (on) or removes a blackhole rule in the router for packets from → to (either
// may be "" for any address).
func (nw *netw) setRule(from, to string, on bool) error {
	key := from + "|" + to
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.rules[key] == on {
		return nil
	}
	args := []string{"-n", nsName(nw.slot, "rt"), "rule"}
	if on {
		args = append(args, "add")
	} else {
		args = append(args, "del")
	}
	if from != "" {
		args = append(args, "from", from)
	}
	if to != "" {
		args = append(args, "to", to)
	}
	args = append(args, "priority", rulePrio, "blackhole")
	if err := ipRun(args...); err != nil {
		return err
	}
	if on {
		nw.rules[key] = true
	} else {
		delete(nw.rules, key)
	}
	return nil
}

// clearRules removes every cut.
func (nw *netw) clearRules() error {
	nw.mu.Lock()
	keys := make([]string, 0, len(nw.rules))
	for k := range nw.rules {
		keys = append(keys, k)
	}
	nw.mu.Unlock()
	var first error
	for _, k := range keys {
		f := strings.SplitN(k, "|", 2)
		if err := nw.setRule(f[0], f[1], false); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// inNetns runs fn on an OS thread that has joined network namespace ns (a name under
// /run/netns), then returns the thread to this process's namespace. Sockets created inside fn
// (net.Listen, net.Dial) stay in ns for their whole life, whichever thread uses them later.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := setns(target.Fd()); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := setns(orig.Fd()); err != nil {
			// The thread stays in ns: keep it locked so that it ends with this goroutine
			// instead of running other goroutines in the wrong namespace.
			errc <- fmt.Errorf("setns back from %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(fd uintptr) error {
	if _, _, e := syscall.RawSyscall(sysSetns, fd, syscall.CLONE_NEWNET, 0); e != 0 {
		return e
	}
	return nil
}
