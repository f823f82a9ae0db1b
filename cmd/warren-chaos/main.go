// Command warren-chaos runs rounds of random faults against warren nodes under a confirmed
// publish / acked consume workload and checks the history: no confirmed message lost, nothing
// delivered that was never published, duplicates only as redeliveries, publisher order kept.
//
// Each round starts fresh nodes (in network namespaces when run as root), runs the workload,
// injects a schedule of faults drawn from the round's seed (seed + round - 1), heals, drains the
// queues and prints a table. A failed round is replayed with -seed SEED -rounds 1 (printed).
//
//	go build -o bin/warren ./cmd/warren
//	go run ./cmd/warren-chaos -bin bin/warren -nodes 3 -rounds 10 -seed 42
//
// Until the cluster exists every node is an independent broker (-cluster=false): each node gets
// a classic durable queue of its own with its own clients, and faults hit single nodes. With
// -cluster the nodes get the cluster flags (clustertest.ClusterArgs) and share replicated queues.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/cluster/clustertest"
)

type config struct {
	bin          string
	nodes        int
	rounds       int
	seed         int64
	round        time.Duration
	faults       string
	cluster      bool
	rpcAdvertise bool
	netns        string
	publishers   int
	consumers    int
	window       int
	rate         float64
	diskLeave    int64
	tmpfs        int64
	keep         bool
	verbose      bool
	extraArgs    string
	queueKinds   string
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/warren", "warren binary")
	flag.IntVar(&c.nodes, "nodes", 3, "nodes per round")
	flag.IntVar(&c.rounds, "rounds", 1, "rounds")
	flag.Int64Var(&c.seed, "seed", 0, "seed of round 1 (round r uses seed+r-1; 0: from the clock, printed)")
	flag.DurationVar(&c.round, "round", 10*time.Second, "time within which a round's faults start")
	flag.StringVar(&c.faults, "faults", "", "fault kinds, comma-separated, or all (default: kill,pause,link-down without -cluster; all with it); kinds: "+kinds())
	flag.BoolVar(&c.cluster, "cluster", false, "start the nodes as one cluster (the planned --cluster-* flags) with replicated queues")
	flag.BoolVar(&c.rpcAdvertise, "rpc-advertise", false, "with -cluster: also pass --cluster-rpc-advertise (needed for proxy faults)")
	flag.StringVar(&c.netns, "netns", "auto", "network namespaces: auto, on (required), off (loopback)")
	flag.IntVar(&c.publishers, "publishers", 2, "publishers per queue")
	flag.IntVar(&c.consumers, "consumers", 2, "consumers per queue")
	flag.IntVar(&c.window, "window", 64, "unconfirmed messages in flight per publisher")
	flag.Float64Var(&c.rate, "rate", 500, "messages per second per publisher (0: as fast as confirms allow)")
	flag.Int64Var(&c.diskLeave, "disk-leave", 1<<20, "bytes a disk-full fault leaves free")
	flag.Int64Var(&c.tmpfs, "tmpfs", 256<<20, "size of each node's tmpfs data folder when disk-full is scheduled")
	flag.BoolVar(&c.keep, "keep", true, "keep the data and logs of failed rounds")
	flag.BoolVar(&c.verbose, "v", false, "print harness, fault and client lines as they happen")
	flag.StringVar(&c.queueKinds, "queues", "", "with -cluster: the workload's queue kinds, comma-separated, of quorum, quorum-async, classic (default: all three)")
	flag.StringVar(&c.extraArgs, "args", "", "extra warren arguments for every node, space-separated (templates allowed, e.g. --log-level=debug)")
	flag.Parse()
	os.Exit(run(c))
}

func kinds() string {
	var s []string
	for _, k := range clustertest.AllFaults {
		s = append(s, string(k))
	}
	return strings.Join(s, ",")
}

// roundResult is what the summary adds up.
type roundResult struct {
	seed   int64
	ok     bool
	report clustertest.Report
	err    error
}

func run(c config) int {
	if c.seed == 0 {
		c.seed = time.Now().UnixNano() % 1_000_000_000
	}
	if c.faults == "" {
		c.faults = "kill,pause,link-down"
		if c.cluster {
			c.faults = "all"
		}
	}
	kinds, err := clustertest.ParseFaults(c.faults)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warren-chaos:", err)
		return 2
	}
	if len(queuesFor(c, false)) == 0 {
		fmt.Fprintf(os.Stderr, "warren-chaos: -queues %q names no queue kind (quorum, quorum-async, classic)\n", c.queueKinds)
		return 2
	}
	if _, err := os.Stat(c.bin); err != nil {
		fmt.Fprintf(os.Stderr, "warren-chaos: %v (build it: go build -o bin/warren ./cmd/warren)\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("warren-chaos: seed %d, %d rounds, %d nodes, faults %s, mode %s\n", c.seed, c.rounds, c.nodes, c.faults, map[bool]string{true: "cluster", false: "independent single nodes"}[c.cluster])
	var results []roundResult
	for r := 1; r <= c.rounds && ctx.Err() == nil; r++ {
		res := runRound(ctx, c, r, kinds)
		results = append(results, res)
	}
	return summary(c, results)
}

func runRound(ctx context.Context, c config, r int, kinds []clustertest.FaultKind) roundResult {
	seed := c.seed + int64(r) - 1
	res := roundResult{seed: seed}
	logf := func(string, ...any) {}
	if c.verbose {
		logf = func(f string, a ...any) { fmt.Printf("    "+f+"\n", a...) }
	}
	opts := clustertest.Options{Binary: c.bin, Nodes: c.nodes, Logf: logf, KeepDir: true}
	switch c.netns {
	case "on":
		opts.Netns = clustertest.NetnsRequire
	case "off":
		opts.Netns = clustertest.NetnsOff
	}
	if c.cluster {
		opts.Args = slices.Clone(clustertest.ClusterArgs)
		if c.rpcAdvertise {
			opts.Args = append(opts.Args, clustertest.RPCAdvertiseArgs...)
		}
		opts.Proxy = slices.Contains(kinds, clustertest.FaultSlowNet)
	} else {
		opts.Args = slices.Clone(clustertest.SingleNodeArgs)
	}
	if c.extraArgs != "" {
		opts.Args = append(opts.Args, strings.Fields(c.extraArgs)...)
	}
	if slices.Contains(kinds, clustertest.FaultDiskFull) {
		opts.TmpfsSize = c.tmpfs
	}
	fmt.Printf("\nround %d  seed %d\n", r, seed)
	cl, err := clustertest.Start(opts)
	if err != nil {
		res.err = err
		fmt.Printf("  start: %v\n", err)
		return res
	}
	failed := true
	defer func() {
		if failed && c.keep {
			// Where each node stands (a node that stopped answering shows where it is stuck):
			// goroutine dumps into the kept logs.
			for _, n := range cl.Nodes {
				if n.Running() {
					n.Dump()
				}
			}
			time.Sleep(time.Second)
		}
		cl.Close()
		if failed && c.keep {
			fmt.Printf("  data and logs kept in %s\n", cl.Dir)
		} else {
			os.RemoveAll(cl.Dir)
		}
	}()
	if r == 1 {
		if cl.Netns {
			fmt.Printf("  nodes in network namespaces; clients reach them from %s\n", cl.ClientIP())
		} else {
			fmt.Printf("  no network namespaces (%s): nodes on loopback\n", cl.Why)
		}
	}
	if c.cluster {
		if err := cl.WaitClustered(60 * time.Second); err != nil {
			res.err = err
			fmt.Printf("  %v\n", err)
			return res
		}
	}
	var usable []clustertest.FaultKind
	for _, k := range kinds {
		if ok, why := cl.Supported(k); ok {
			usable = append(usable, k)
		} else if r == 1 {
			fmt.Printf("  fault %s skipped: %s\n", k, why)
		}
	}
	plan := clustertest.Plan(seed, clustertest.PlanConfig{Nodes: c.nodes, Kinds: usable, Duration: c.round})
	queues := queuesFor(c, wipes(plan))
	cfg := clustertest.CheckConfig{Queues: map[string]clustertest.QueueClass{}}
	for _, q := range queues {
		cfg.Queues[q.Name] = q.Class
	}
	rec := clustertest.NewRecorder()
	w := clustertest.StartWorkload(clustertest.WorkloadConfig{
		Queues: queues, Publishers: c.publishers, Consumers: c.consumers, Window: c.window, Rate: c.rate,
		Meta: true, MetaNodes: allNodes(c.nodes), URL: func(n int) string { return cl.Node(n).URL() },
		Rec: rec, Logf: logf,
	})
	// Warm up: let every queue exist and carry traffic before the first fault.
	deadline := time.Now().Add(15 * time.Second)
	for w.Published() < int64(len(queues)*c.publishers*10) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	in := &clustertest.Injector{C: cl, Rec: rec, DiskLeave: c.diskLeave, Logf: logf}
	runErr := in.Run(ctx, plan)
	// Heal everything, whatever the schedule left.
	cl.Heal()
	for _, n := range cl.Nodes {
		n.Resume()
		n.FreeDisk()
		if !n.Running() {
			if err := n.Start(); err != nil && runErr == nil {
				runErr = err
			}
		}
	}
	// Every queue must work again: a message published after the heal gets confirmed.
	stuck := w.WaitConfirmedAfter(time.Now(), 30*time.Second)
	w.StopPublishers()
	left := w.Drain(5*time.Second, 60*time.Second)
	w.Stop()
	rep := clustertest.Check(rec.Events(), cfg)
	res.report = rep
	res.err = runErr
	var notes []string
	if c.cluster {
		// Every node must agree once it has applied what the majority committed: a node that
		// was cut off catches up within moments of the heal, so look again for up to 15 s.
		var views map[int][]string
		var ok bool
		var diffs []string
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			views = map[int][]string{}
			var errs []string
			for i := 1; i <= c.nodes; i++ {
				v, err := cl.MetadataView(i)
				if err != nil {
					errs = append(errs, fmt.Sprintf("metadata of node %d: %v", i, err))
					continue
				}
				views[i] = v
			}
			ok, diffs = clustertest.Converged(views)
			if (ok && len(errs) == 0) || time.Now().After(deadline) {
				notes = append(notes, errs...)
				break
			}
		}
		if !ok {
			for _, d := range diffs[:min(len(diffs), 10)] {
				notes = append(notes, "metadata diverged: "+d)
			}
			res.err = errors.Join(res.err, fmt.Errorf("metadata diverged on %d objects", len(diffs)))
		}
	}
	if len(stuck) > 0 {
		res.err = errors.Join(res.err, fmt.Errorf("no confirm within 30 s after healing (stuck): %s", strings.Join(stuck, ", ")))
	}
	if left > 0 {
		notes = append(notes, fmt.Sprintf("%d confirmed messages not delivered after draining", left))
	}
	if !rep.OK() {
		// Where the missing messages are: gone, or held back (unacked) somewhere.
		for i := 1; i <= c.nodes; i++ {
			if f, err := cl.QueueFigures(i); err == nil {
				for _, q := range queues {
					notes = append(notes, fmt.Sprintf("node %d says of %s: %s", i, q.Name, f[q.Name]))
				}
			}
		}
	}
	printRound(rep, notes)
	res.ok = rep.OK() && res.err == nil
	if res.err != nil {
		fmt.Printf("  error: %v\n", res.err)
	}
	if res.ok {
		fmt.Printf("  round %d: PASS\n", r)
	} else {
		fmt.Printf("  round %d: FAIL  (replay: warren-chaos%s -seed %d -rounds 1)\n", r, replayFlags(), seed)
	}
	failed = !res.ok
	if failed && c.keep {
		if err := writeHistory(filepath.Join(cl.Dir, "history.jsonl"), rec.Events()); err != nil {
			fmt.Printf("  history not kept: %v\n", err)
		}
	}
	return res
}

// writeHistory keeps a failed round's history, one JSON event per line, beside the nodes' logs.
func writeHistory(path string, events []clustertest.Event) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// replayFlags repeats the flags given on the command line, except -seed and -rounds.
func replayFlags() string {
	var b strings.Builder
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "seed" && f.Name != "rounds" {
			fmt.Fprintf(&b, " -%s=%s", f.Name, f.Value)
		}
	})
	return b.String()
}

// wipes says whether a plan loses a node's disk.
func wipes(plan []clustertest.Fault) bool {
	return slices.ContainsFunc(plan, func(f clustertest.Fault) bool { return f.Kind == clustertest.FaultWipe })
}

func allNodes(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}

// queuesFor picks the workload's queues: one classic durable queue per node for independent
// nodes; replicated (quorum) and classic queues served through every node for a cluster.
//
// A classic queue lives on one node, so only a disk loss (a wipe in this round's plan) may lose
// its confirmed messages: kill -9, pauses and partitions must not.
func queuesFor(c config, wiped bool) []clustertest.QueueSpec {
	if !c.cluster {
		var qs []clustertest.QueueSpec
		for i := 1; i <= c.nodes; i++ {
			qs = append(qs, clustertest.QueueSpec{
				Name:  fmt.Sprintf("chaos.classic.n%d", i),
				Class: clustertest.QueueClass{Kind: "classic", MustNotLose: !wiped},
				Nodes: []int{i},
			})
		}
		return qs
	}
	all := allNodes(c.nodes)
	qs := []clustertest.QueueSpec{
		{Name: "chaos.quorum", Class: clustertest.QueueClass{Kind: "quorum", MustNotLose: true},
			Args: amqp.Table{"x-queue-type": "quorum"}, Nodes: all},
		// Async may lose what it confirmed during a fault or within the replication lag
		// before one (2 s is far above a healthy follower's lag of milliseconds).
		{Name: "chaos.quorum-async", Class: clustertest.QueueClass{Kind: "quorum-async", LossWindow: 2 * time.Second},
			Args: amqp.Table{"x-queue-type": "quorum", "x-warren-replication": "async"}, Nodes: all},
		{Name: "chaos.classic", Class: clustertest.QueueClass{Kind: "classic", MustNotLose: !wiped},
			Nodes: all},
	}
	if c.queueKinds == "" {
		return qs
	}
	want := map[string]bool{}
	for _, k := range strings.Split(c.queueKinds, ",") {
		want[strings.TrimSpace(k)] = true
	}
	var out []clustertest.QueueSpec
	for _, q := range qs {
		if want[q.Class.Kind] {
			out = append(out, q)
		}
	}
	return out
}

func dur(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(time.Millisecond).String()
}

func printRound(rep clustertest.Report, notes []string) {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	if len(rep.Faults) > 0 {
		fmt.Fprintln(tw, "  fault\tkind\ttargets\tat\tfor\tnext confirm\tnext delivery\t")
		for _, f := range rep.Faults {
			fmt.Fprintf(tw, "  #%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", f.ID, f.Kind, f.Detail, dur(f.Start), dur(f.Duration), dur(f.ToConfirm), dur(f.ToDeliver))
		}
		tw.Flush()
	} else {
		fmt.Println("  no faults")
	}
	fmt.Fprintln(tw, "  queue\tkind\tpublished\tconfirmed\tnacked\tunknown\tdelivered\tlost\tunexpected\tdup (redeliv.)\tunflagged dup\torder\tnacked+deliv.\t")
	for _, q := range rep.Queues {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", q.Queue, q.Kind, q.Published, q.Confirmed, q.Nacked,
			q.Indeterminate, q.Delivered, q.Lost, q.Unexpected, q.Duplicates, q.BadDuplicates, q.OrderViolations, q.NackedDelivered)
	}
	tw.Flush()
	m := rep.Meta
	if m.Ops > 0 {
		fmt.Printf("  metadata operations: %d ok, %d failed", m.OK, m.Failed)
		errs := make([]string, 0, len(m.Errors))
		for e := range m.Errors {
			errs = append(errs, e)
		}
		sort.Strings(errs)
		if len(errs) > 0 {
			fmt.Printf(" (%d kinds of error, e.g. %q)", len(errs), errs[0])
		}
		fmt.Println()
	}
	for _, v := range rep.Violations() {
		fmt.Println("  VIOLATION", v)
	}
	for _, n := range notes {
		fmt.Println("  NOTE", n)
	}
}

func summary(c config, results []roundResult) int {
	var failed []int64
	var faults, published, confirmed, lost, unexpected, dups, unflagged, order, nacked, nackedDeliv int
	type worstT struct {
		n                    int
		toConfirm, toDeliver time.Duration
	}
	worst := map[string]*worstT{}
	for _, r := range results {
		if !r.ok {
			failed = append(failed, r.seed)
		}
		faults += len(r.report.Faults)
		for _, q := range r.report.Queues {
			published += q.Published
			confirmed += q.Confirmed
			if q.MustNotLose {
				lost += q.Lost
			}
			unexpected += q.Unexpected
			dups += q.Duplicates
			unflagged += q.BadDuplicates
			order += q.OrderViolations
			nacked += q.Nacked
			nackedDeliv += q.NackedDelivered
		}
		for _, f := range r.report.Faults {
			w := worst[f.Kind]
			if w == nil {
				w = &worstT{}
				worst[f.Kind] = w
			}
			w.n++
			if w.toConfirm >= 0 {
				w.toConfirm = worseDur(w.toConfirm, f.ToConfirm)
			}
			if w.toDeliver >= 0 {
				w.toDeliver = worseDur(w.toDeliver, f.ToDeliver)
			}
		}
	}
	fmt.Printf("\nsummary: seed %d, %d rounds (%d failed), %d nodes, %d faults\n", c.seed, len(results), len(failed), c.nodes, faults)
	fmt.Printf("  messages: %d published, %d confirmed, %d nacked (%d of them delivered)\n", published, confirmed, nacked, nackedDeliv)
	fmt.Printf("  lost (where it must be 0): %d   never published: %d   duplicates: %d (unflagged %d)   order violations: %d\n",
		lost, unexpected, dups, unflagged, order)
	if len(worst) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  fault kind\tcount\tworst next confirm\tworst next delivery\t")
		ks := make([]string, 0, len(worst))
		for k := range worst {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			w := worst[k]
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t\n", k, w.n, dur(w.toConfirm), dur(w.toDeliver))
		}
		tw.Flush()
	}
	if len(failed) > 0 {
		fmt.Printf("  failed round seeds: %v (replay one with -seed SEED -rounds 1)\n", failed)
		return 1
	}
	fmt.Println("  PASS")
	return 0
}

// worseDur keeps the worse of two unavailabilities (-1, never, is the worst).
func worseDur(a, b time.Duration) time.Duration {
	if a < 0 || b < 0 {
		return -1
	}
	return max(a, b)
}
