package clustertest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// NetnsMode says whether a harness puts its nodes in network namespaces.
type NetnsMode int

const (
	// NetnsAuto uses namespaces where this process can (root, the ip tool) and falls back to
	// loopback otherwise, saying so. The environment variable WARREN_CHAOS_NETNS=off forces the
	// fallback, =on makes it an error.
	NetnsAuto NetnsMode = iota
	// NetnsRequire fails Start when namespaces cannot be built.
	NetnsRequire
	// NetnsOff runs every node on loopback.
	NetnsOff
)

// Fixed ports of a node in its own namespace (each node has its own address there).
const (
	nsAMQPPort   = 5672
	nsHTTPPort   = 15672
	nsGossipPort = 7946 // the RPC port is gossip + 1, as the cluster's default
	nsRPCBind    = 17947
)

// SingleNodeArgs is the argument template for today's warren (no cluster flags): every node is
// an independent broker. Each element is a text/template over NodeArgs.
var SingleNodeArgs = []string{
	"--amqp-listen", "{{.AMQP}}",
	"--http-listen", "{{.HTTP}}",
	"--prometheus-listen", "",
	"--data-dir", "{{.DataDir}}",
	"--addr-file", "{{.AddrFile}}",
	"--default-user", "{{.User}}",
	"--default-pass", "{{.Pass}}",
	"--log-level", "info",
}

// ClusterArgs is SingleNodeArgs plus the planned cluster flags: every node names itself, listens
// for gossip on its own address, binds its node-to-node RPC listener to RPCBind and joins all
// the others. RPCBind differs from RPC (what the peers must use) when the harness puts a fault
// proxy in front of the node: see RPCAdvertiseArgs.
var ClusterArgs = append(append([]string(nil), SingleNodeArgs...),
	"--node-name", "{{.Name}}",
	"--cluster-listen", "{{.Gossip}}",
	"--cluster-advertise", "{{.Gossip}}",
	"--cluster-rpc-listen", "{{.RPCBind}}",
	"--cluster-join", "{{.Join}}",
	"--cluster-expect", "{{.N}}",
	"--cluster-key-file", "{{.KeyFile}}",
)

// RPCAdvertiseArgs tells a node which node-to-node address to publish to its peers when it
// differs from the one it binds (a fault proxy listens on RPC and forwards to RPCBind). Append
// it to ClusterArgs once warren has such a flag; without it peers would reach RPCBind directly
// and the proxy would see no traffic.
var RPCAdvertiseArgs = []string{"--cluster-rpc-advertise", "{{.RPC}}"}

// NodeArgs is what an argument template can use for one node.
type NodeArgs struct {
	Index    int    // 1-based
	N        int    // number of nodes
	Name     string // node name: warren-1, warren-2, ...
	IP       string // the node's address (10.77.x.y in a namespace, 127.0.0.1 on loopback)
	AMQP     string // host:port of its AMQP listener
	HTTP     string // host:port of its management listener
	Gossip   string // host:port of its gossip listener
	RPC      string // host:port its peers use for node-to-node RPC (the proxy's, when proxied)
	RPCBind  string // host:port the node binds for node-to-node RPC
	DataDir  string
	AddrFile string
	LogFile  string
	KeyFile  string // a cluster key shared by all nodes: 32 random bytes as 64 hex digits
	Join     string // every other node's Gossip, comma-separated
	JoinAll  string // every node's Gossip, comma-separated
	User     string
	Pass     string
}

// Options configures a harness.
type Options struct {
	Binary string   // path of the warren binary (required)
	Nodes  int      // number of nodes (required, ≥ 1)
	Args   []string // argument template per node; default SingleNodeArgs
	Env    []string // extra environment for every node
	Dir    string   // working folder (data, logs); default a new temporary folder
	// KeepDir keeps Dir after Close (a failed round's data and logs).
	KeepDir bool
	Netns   NetnsMode
	// Proxy puts a fault-injecting TCP proxy in front of every node's RPC port.
	Proxy bool
	// TmpfsSize > 0 gives every node a tmpfs of that size as its data folder, mounted in a mount
	// namespace of its own (for the disk-full fault). Needs root.
	TmpfsSize    int64
	User, Pass   string        // broker user for clients; default chaos/chaos
	StartTimeout time.Duration // per node start; default 30 s
	// Logf receives the harness's lines (fallback notices, starts, kills); default: discarded.
	Logf func(format string, args ...any)
}

// Cluster is a set of started nodes and their network.
type Cluster struct {
	opts    Options
	Dir     string
	Netns   bool   // nodes run in namespaces (partitions available)
	Why     string // why not, when Netns is false
	Nodes   []*Node
	Proxy   *Proxy // nil unless Options.Proxy
	KeyFile string

	net *netw
}

// Node is one warren process of a harness, restartable with the same data folder.
type Node struct {
	Args    NodeArgs
	NS      string // network namespace ("" on loopback)
	DataDir string // as the node sees it
	LogPath string

	c      *Cluster
	argv   []string
	holder *exec.Cmd // owns the node's mount namespace with its tmpfs, when TmpfsSize > 0

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	paused  bool
	starts  int
	filling string // path of the disk filler file
}

// Start builds the network (or falls back to loopback), writes the key file, starts every node
// and waits until each has written its addresses. Close undoes all of it.
func Start(o Options) (*Cluster, error) {
	if o.Binary == "" || o.Nodes < 1 {
		return nil, errors.New("clustertest: Options.Binary and Options.Nodes are required")
	}
	if o.Args == nil {
		o.Args = SingleNodeArgs
	}
	if o.User == "" {
		o.User, o.Pass = "chaos", "chaos"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	bin, err := filepath.Abs(o.Binary)
	if err != nil {
		return nil, err
	}
	o.Binary = bin
	c := &Cluster{opts: o}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "warren-chaos-")
		if err != nil {
			return nil, err
		}
		c.Dir = d
	} else {
		c.Dir = o.Dir
		if err := os.MkdirAll(c.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	mode := o.Netns
	if mode == NetnsOff {
		c.Why = "Options.Netns is NetnsOff"
	}
	if mode == NetnsAuto {
		switch os.Getenv("WARREN_CHAOS_NETNS") {
		case "off", "0":
			mode = NetnsOff
			c.Why = "WARREN_CHAOS_NETNS=off"
		case "on", "1":
			mode = NetnsRequire
		}
	}
	if mode != NetnsOff {
		ok, why := netnsUsable()
		if ok {
			nw, err := buildNetwork(o.Nodes)
			if err == nil {
				c.net, c.Netns = nw, true
			} else {
				why = err.Error()
			}
		}
		if !c.Netns {
			if mode == NetnsRequire {
				c.Close()
				return nil, fmt.Errorf("clustertest: network namespaces required: %s", why)
			}
			c.Why = why
		}
	}
	if !c.Netns {
		o.Logf("clustertest: no network namespaces (%s): nodes run on loopback; partitions unavailable, proxy faults per destination only", c.Why)
	}
	if o.TmpfsSize > 0 && os.Geteuid() != 0 {
		c.Close()
		return nil, errors.New("clustertest: a tmpfs data folder needs root")
	}
	key := make([]byte, 32)
	rand.Read(key)
	c.KeyFile = filepath.Join(c.Dir, "cluster.key")
	if err := os.WriteFile(c.KeyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.layout(); err != nil {
		c.Close()
		return nil, err
	}
	if o.Proxy {
		c.Proxy = NewProxy(time.Now().UnixNano())
		for _, n := range c.Nodes {
			if err := c.Proxy.Add(n.Args.Index, n.NS, n.Args.RPC, n.Args.RPCBind); err != nil {
				c.Close()
				return nil, err
			}
		}
		if c.Netns {
			for _, n := range c.Nodes {
				c.Proxy.NameSource(n.Args.IP, n.Args.Index)
			}
		}
	}
	errs := make(chan error, len(c.Nodes))
	for _, n := range c.Nodes {
		go func() { errs <- n.Start() }()
	}
	var first error
	for range c.Nodes {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		c.Close()
		return nil, first
	}
	return c, nil
}

// layout assigns addresses, folders and argument lists to the nodes.
func (c *Cluster) layout() error {
	o := c.opts
	ports := map[int]bool{}
	type addrs struct{ ip, amqp, http, gossip, rpc, rpcBind string }
	all := make([]addrs, o.Nodes+1)
	for i := 1; i <= o.Nodes; i++ {
		if c.Netns {
			ip := nodeIP(c.net.slot, i)
			hp := func(p int) string { return net.JoinHostPort(ip, strconv.Itoa(p)) }
			a := addrs{ip: ip, amqp: hp(nsAMQPPort), http: hp(nsHTTPPort), gossip: hp(nsGossipPort), rpc: hp(nsGossipPort + 1), rpcBind: hp(nsGossipPort + 1)}
			if o.Proxy {
				a.rpcBind = hp(nsRPCBind)
			}
			all[i] = a
			continue
		}
		hp := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
		g, err := freePorts(ports, 2) // gossip and gossip+1
		if err != nil {
			return err
		}
		a := addrs{ip: "127.0.0.1", gossip: hp(g), rpc: hp(g + 1), rpcBind: hp(g + 1)}
		for _, p := range []*string{&a.amqp, &a.http} {
			q, err := freePorts(ports, 1)
			if err != nil {
				return err
			}
			*p = hp(q)
		}
		if o.Proxy {
			q, err := freePorts(ports, 1)
			if err != nil {
				return err
			}
			a.rpcBind = hp(q)
		}
		all[i] = a
	}
	var gossips []string
	for i := 1; i <= o.Nodes; i++ {
		gossips = append(gossips, all[i].gossip)
	}
	for i := 1; i <= o.Nodes; i++ {
		a := all[i]
		var others []string
		for j := 1; j <= o.Nodes; j++ {
			if j != i {
				others = append(others, all[j].gossip)
			}
		}
		dir := filepath.Join(c.Dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			return err
		}
		n := &Node{c: c, LogPath: filepath.Join(dir, "warren.log"), DataDir: filepath.Join(dir, "data")}
		n.Args = NodeArgs{
			Index: i, N: o.Nodes, Name: fmt.Sprintf("warren-%d", i), IP: a.ip,
			AMQP: a.amqp, HTTP: a.http, Gossip: a.gossip, RPC: a.rpc, RPCBind: a.rpcBind,
			DataDir: n.DataDir, AddrFile: filepath.Join(dir, "addr.json"), LogFile: n.LogPath,
			KeyFile: c.KeyFile, Join: strings.Join(others, ","), JoinAll: strings.Join(gossips, ","),
			User: o.User, Pass: o.Pass,
		}
		if c.Netns {
			n.NS = c.net.ns(i)
		}
		argv, err := renderArgs(o.Args, n.Args)
		if err != nil {
			return err
		}
		n.argv = argv
		if o.TmpfsSize > 0 {
			if err := n.mountTmpfs(o.TmpfsSize); err != nil {
				return err
			}
		}
		c.Nodes = append(c.Nodes, n)
	}
	return nil
}

// renderArgs expands an argument template for one node.
func renderArgs(tmpl []string, a NodeArgs) ([]string, error) {
	var argv []string
	for k, t := range tmpl {
		tpl, err := template.New(fmt.Sprint("arg", k)).Option("missingkey=error").Parse(t)
		if err != nil {
			return nil, fmt.Errorf("clustertest: argument template %q: %w", t, err)
		}
		var b bytes.Buffer
		if err := tpl.Execute(&b, a); err != nil {
			return nil, fmt.Errorf("clustertest: argument template %q: %w", t, err)
		}
		argv = append(argv, b.String())
	}
	return argv, nil
}

// freePorts finds k consecutive free TCP ports on loopback, not in taken, and marks them taken.
func freePorts(taken map[int]bool, k int) (int, error) {
	for try := 0; try < 200; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ok := !taken[p]
		var extra []net.Listener
		for j := 1; j < k && ok; j++ {
			l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+j)))
			if err != nil || taken[p+j] {
				ok = false
				if l2 != nil {
					l2.Close()
				}
				break
			}
			extra = append(extra, l2)
		}
		ln.Close()
		for _, l := range extra {
			l.Close()
		}
		if ok {
			for j := 0; j < k; j++ {
				taken[p+j] = true
			}
			return p, nil
		}
	}
	return 0, errors.New("clustertest: no free ports")
}

// mountTmpfs starts the holder of the node's mount namespace and mounts a tmpfs of size bytes
// on the node's data folder inside it. The host never sees the mount; it reaches the files
// through /proc/HOLDER/root. The holder dies with this process (and is killed by the stale
// cleanup with its network namespace), which frees the tmpfs.
func (n *Node) mountTmpfs(size int64) error {
	args := []string{"unshare", "--mount", "--propagation", "private", "sleep", "infinity"}
	if n.NS != "" {
		args = append([]string{"ip", "netns", "exec", n.NS}, args...)
	}
	h := exec.Command(args[0], args[1:]...)
	h.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := h.Start(); err != nil {
		return fmt.Errorf("clustertest: mount namespace holder: %w", err)
	}
	n.holder = h
	go h.Wait()
	pid := strconv.Itoa(h.Process.Pid)
	// Wait until the holder is in its own mount namespace.
	self, _ := os.Readlink("/proc/self/ns/mnt")
	for i := 0; ; i++ {
		l, err := os.Readlink("/proc/" + pid + "/ns/mnt")
		exe, _ := os.Readlink("/proc/" + pid + "/exe")
		if err == nil && l != self && strings.HasSuffix(exe, "sleep") {
			break
		}
		if i > 500 {
			return errors.New("clustertest: mount namespace holder did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, err := exec.Command("nsenter", "-t", pid, "-m", "mount", "-t", "tmpfs", "-o",
		fmt.Sprintf("size=%d,mode=0755", size), "chaos-tmpfs", n.DataDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("clustertest: mount tmpfs: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// HostDataDir is the node's data folder as this process reaches it (through the holder of its
// mount namespace when it is a tmpfs).
func (n *Node) HostDataDir() string {
	if n.holder != nil {
		return fmt.Sprintf("/proc/%d/root%s", n.holder.Process.Pid, n.DataDir)
	}
	return n.DataDir
}

// URL is the AMQP URL of the node for the harness's user.
func (n *Node) URL() string {
	return fmt.Sprintf("amqp://%s:%s@%s/", n.Args.User, n.Args.Pass, n.Args.AMQP)
}

// Start starts the node's process (again, after Kill) with the same arguments and data folder,
// and waits until it has written its address file.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("clustertest: node %d already running", n.Args.Index)
	}
	var args []string
	switch {
	case n.holder != nil && n.NS != "":
		args = append([]string{"nsenter", "-t", strconv.Itoa(n.holder.Process.Pid), "-m", "-n", "--", n.c.opts.Binary}, n.argv...)
	case n.holder != nil:
		args = append([]string{"nsenter", "-t", strconv.Itoa(n.holder.Process.Pid), "-m", "--", n.c.opts.Binary}, n.argv...)
	case n.NS != "":
		args = append([]string{"ip", "netns", "exec", n.NS, n.c.opts.Binary}, n.argv...)
	default:
		args = append([]string{n.c.opts.Binary}, n.argv...)
	}
	os.Remove(n.Args.AddrFile)
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	n.starts++
	fmt.Fprintf(logf, "=== clustertest: start #%d at %s: %s\n", n.starts, time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), n.c.opts.Env...)
	// The node dies with the harness process (a crashed test leaves no broker behind), and
	// has a process group of its own (a terminal's ^C reaches the harness only).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("clustertest: start node %d: %w", n.Args.Index, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	n.cmd, n.done, n.paused = cmd, done, false
	n.c.opts.Logf("clustertest: node %d started (pid %d)", n.Args.Index, cmd.Process.Pid)
	deadline := time.Now().Add(n.c.opts.StartTimeout)
	for {
		if b, err := os.ReadFile(n.Args.AddrFile); err == nil && len(b) > 0 {
			var a struct{ AMQP string }
			if json.Unmarshal(b, &a) == nil && a.AMQP != "" {
				return nil
			}
		}
		select {
		case <-done:
			n.cmd = nil
			return fmt.Errorf("clustertest: node %d exited at start (%v); log %s:\n%s", n.Args.Index, cmd.ProcessState, n.LogPath, tail(n.LogPath, 20))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.killLocked()
			return fmt.Errorf("clustertest: node %d wrote no address file within %v; log %s:\n%s", n.Args.Index, n.c.opts.StartTimeout, n.LogPath, tail(n.LogPath, 20))
		}
	}
}

// tail returns the last k lines of a file.
func tail(path string, k int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return strings.Join(lines, "\n")
}

// Running reports whether the node's process is up.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Pid is the node's process id (0 when down).
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Kill sends SIGKILL (a crash: kill -9) and waits for the process to be gone.
func (n *Node) Kill() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return nil
	}
	n.killLocked()
	n.c.opts.Logf("clustertest: node %d killed", n.Args.Index)
	return nil
}

func (n *Node) killLocked() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.cmd, n.paused = nil, false
}

// Stop sends SIGTERM (a graceful shutdown) and waits up to 15 s, then kills.
func (n *Node) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return nil
	}
	if n.paused {
		n.cmd.Process.Signal(syscall.SIGCONT)
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		n.cmd, n.paused = nil, false
	case <-time.After(15 * time.Second):
		n.killLocked()
	}
	return nil
}

// Restart kills the node (kill -9) and starts it again with the same data folder.
func (n *Node) Restart() error {
	n.Kill()
	return n.Start()
}

// Pause stops the process (SIGSTOP): it holds its sockets but answers nothing. It returns once
// every thread of the process is stopped (a signal reaches running threads asynchronously).
func (n *Node) Pause() error {
	if err := n.signal(syscall.SIGSTOP, true); err != nil {
		return err
	}
	pid := n.Pid()
	for i := 0; i < 500 && !allStopped(pid); i++ {
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// allStopped reports whether every thread of pid is in state T (stopped).
func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true // gone
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) || s[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Dump makes a running node print every goroutine's stack to its log and exit (SIGQUIT, the
// Go runtime's dump): to see where a node that stopped answering is stuck.
func (n *Node) Dump() error {
	if err := n.signal(syscall.SIGCONT, false); err != nil {
		return err
	}
	return n.signal(syscall.SIGQUIT, false)
}

// Resume continues a paused process (SIGCONT).
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT, false) }

func (n *Node) signal(s syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("clustertest: node %d is not running", n.Args.Index)
	}
	if err := n.cmd.Process.Signal(s); err != nil {
		return err
	}
	n.paused = paused
	return nil
}

// Wipe deletes everything in the node's data folder (disk loss). The node must be down.
func (n *Node) Wipe() error {
	if n.Running() {
		return fmt.Errorf("clustertest: wipe of running node %d", n.Args.Index)
	}
	dir := n.HostDataDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// FillDisk fills the node's tmpfs data folder until leave bytes are free (a full disk). It needs
// Options.TmpfsSize.
func (n *Node) FillDisk(leave int64) error {
	if n.holder == nil {
		return errors.New("clustertest: disk-full needs a tmpfs data folder (Options.TmpfsSize)")
	}
	dir := n.HostDataDir()
	path := filepath.Join(dir, "clustertest-filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	n.mu.Lock()
	n.filling = path
	n.mu.Unlock()
	// The node keeps writing: when it took some of the space between the look and the
	// allocation, the allocation fails (ENOSPC) and is tried again with what is left.
	for try := 0; ; try++ {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			return err
		}
		size := int64(st.Bavail)*st.Bsize - leave
		if size <= 0 {
			return nil
		}
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ENOSPC) || try == 20 {
			return fmt.Errorf("clustertest: fill disk of node %d: %w", n.Args.Index, err)
		}
	}
}

// FreeDisk removes what FillDisk wrote.
func (n *Node) FreeDisk() error {
	n.mu.Lock()
	p := n.filling
	n.filling = ""
	n.mu.Unlock()
	if p == "" {
		return nil
	}
	return os.Remove(p)
}

// Node returns node i (1-based).
func (c *Cluster) Node(i int) *Node { return c.Nodes[i-1] }

// Partition cuts every pair of nodes that are in different groups, both ways (silently dropped
// packets). Nodes in no group keep their links to everyone (a "bridge" node). Clients in the
// root namespace still reach every node. Cuts add up until Heal.
func (c *Cluster) Partition(groups ...[]int) error {
	for a := range groups {
		for b := range groups {
			if a == b {
				continue
			}
			for _, i := range groups[a] {
				for _, j := range groups[b] {
					if err := c.Cut(i, j); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// Isolate cuts node i from every other node (not from clients).
func (c *Cluster) Isolate(i int) error {
	var others []int
	for j := 1; j <= len(c.Nodes); j++ {
		if j != i {
			others = append(others, j)
		}
	}
	return c.Partition([]int{i}, others)
}

// ErrNoNetns is returned for faults that need network namespaces when the harness runs on
// loopback.
var ErrNoNetns = errors.New("clustertest: this fault needs network namespaces")

// Cut drops every packet from node `from` to node `to` (one way: replies the other way still
// flow, so TCP between them stalls in both directions but UDP from `to` still arrives).
func (c *Cluster) Cut(from, to int) error {
	if !c.Netns {
		return ErrNoNetns
	}
	return c.net.setRule(nodeIP(c.net.slot, from), nodeIP(c.net.slot, to), true)
}

// LinkDown cuts node i from everything, clients included (a pulled cable: packets to and from
// it are dropped silently).
func (c *Cluster) LinkDown(i int) error {
	if !c.Netns {
		return ErrNoNetns
	}
	ip := nodeIP(c.net.slot, i)
	if err := c.net.setRule(ip, "", true); err != nil {
		return err
	}
	return c.net.setRule("", ip, true)
}

// LinkUp undoes LinkDown.
func (c *Cluster) LinkUp(i int) error {
	if !c.Netns {
		return ErrNoNetns
	}
	ip := nodeIP(c.net.slot, i)
	if err := c.net.setRule(ip, "", false); err != nil {
		return err
	}
	return c.net.setRule("", ip, false)
}

// Heal removes every cut and every proxy fault.
func (c *Cluster) Heal() error {
	var err error
	if c.Netns {
		err = c.net.clearRules()
	}
	if c.Proxy != nil {
		c.Proxy.Clear()
	}
	return err
}

// ClientIP is the address clients of the harness connect from ("" on loopback).
func (c *Cluster) ClientIP() string {
	if !c.Netns {
		return ""
	}
	return rootIP(c.net.slot)
}

// DialFrom opens a TCP connection from node i's namespace (or from here on loopback), for tests
// of the network itself.
func (c *Cluster) DialFrom(i int, addr string, timeout time.Duration) (net.Conn, error) {
	if !c.Netns {
		return net.DialTimeout("tcp", addr, timeout)
	}
	var conn net.Conn
	err := inNetns(c.net.ns(i), func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return conn, err
}

// ListenIn opens a TCP listener in node i's namespace (or here on loopback).
func (c *Cluster) ListenIn(i int, addr string) (net.Listener, error) {
	if !c.Netns {
		return net.Listen("tcp", addr)
	}
	var ln net.Listener
	err := inNetns(c.net.ns(i), func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// Close kills every node, removes the network and (unless KeepDir) the working folder.
func (c *Cluster) Close() error {
	for _, n := range c.Nodes {
		n.Kill()
		if n.holder != nil {
			n.holder.Process.Kill()
		}
	}
	if c.Proxy != nil {
		c.Proxy.Close()
	}
	if c.net != nil {
		c.net.destroy()
		c.net = nil
	}
	if !c.opts.KeepDir && c.Dir != "" {
		return os.RemoveAll(c.Dir)
	}
	return nil
}
