package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// FaultKind names a fault.
type FaultKind string

const (
	FaultKill     FaultKind = "kill"      // kill -9 the targets; restart them (same data) at heal
	FaultPause    FaultKind = "pause"     // SIGSTOP the targets; SIGCONT at heal
	FaultIsolate  FaultKind = "isolate"   // cut one node from the other nodes (clients still reach it)
	FaultLinkDown FaultKind = "link-down" // cut one node from everything, clients included
	FaultSplit    FaultKind = "split"     // majority / minority partition
	FaultBridge   FaultKind = "bridge"    // two sides that only one node (the bridge) sees both of
	FaultOneWay   FaultKind = "one-way"   // packets from one side to the other are dropped, not back
	FaultSlowNet  FaultKind = "slow-net"  // proxy: delay, jitter (reordering) and loss on node links
	FaultWipe     FaultKind = "wipe"      // kill -9, delete the data folder, restart at heal (disk loss)
	FaultDiskFull FaultKind = "disk-full" // fill the target's tmpfs data folder; free it at heal
)

// AllFaults lists every kind.
var AllFaults = []FaultKind{FaultKill, FaultPause, FaultIsolate, FaultLinkDown, FaultSplit,
	FaultBridge, FaultOneWay, FaultSlowNet, FaultWipe, FaultDiskFull}

// ParseFaults parses a comma-separated list of kinds ("all" for every one).
func ParseFaults(s string) ([]FaultKind, error) {
	if s == "all" {
		return AllFaults, nil
	}
	var out []FaultKind
	for _, f := range strings.Split(s, ",") {
		k := FaultKind(strings.TrimSpace(f))
		if !slices.Contains(AllFaults, k) {
			return nil, fmt.Errorf("unknown fault kind %q (kinds: %v)", k, AllFaults)
		}
		out = append(out, k)
	}
	return out, nil
}

// Fault is one scheduled fault.
type Fault struct {
	ID    int
	Kind  FaultKind
	Nodes []int         // targets (kill, pause, isolate, link-down, wipe, disk-full)
	Sides [2][]int      // split, bridge, one-way (packets from Sides[0] to Sides[1])
	Start time.Duration // from the start of the schedule
	Dur   time.Duration // until healed
	Link  LinkFaults    // slow-net
}

func (f Fault) String() string {
	switch f.Kind {
	case FaultSplit, FaultBridge:
		return fmt.Sprintf("#%d %s %v|%v for %v", f.ID, f.Kind, f.Sides[0], f.Sides[1], f.Dur)
	case FaultOneWay:
		return fmt.Sprintf("#%d %s %v->%v for %v", f.ID, f.Kind, f.Sides[0], f.Sides[1], f.Dur)
	case FaultSlowNet:
		return fmt.Sprintf("#%d %s nodes %v %s for %v", f.ID, f.Kind, f.Nodes, f.Link, f.Dur)
	}
	return fmt.Sprintf("#%d %s nodes %v for %v", f.ID, f.Kind, f.Nodes, f.Dur)
}

// Targets describes the fault's targets for a report line.
func (f Fault) Targets() string {
	switch f.Kind {
	case FaultSplit, FaultBridge:
		return fmt.Sprintf("%v|%v", f.Sides[0], f.Sides[1])
	case FaultOneWay:
		return fmt.Sprintf("%v->%v", f.Sides[0], f.Sides[1])
	}
	return fmt.Sprint(f.Nodes)
}

// PlanConfig shapes a schedule.
type PlanConfig struct {
	Nodes    int
	Kinds    []FaultKind
	Duration time.Duration // faults start within it (default 10 s)
	// Each fault lasts MinFault..MaxFault (default 1–3 s); between faults MinGap..MaxGap
	// (default 0.5–2 s). Faults do not overlap, so each one's unavailability is its own.
	MinFault, MaxFault, MinGap, MaxGap time.Duration
}

// Plan draws a schedule from seed: the same seed and config give the same faults.
func Plan(seed int64, cfg PlanConfig) []Fault {
	if cfg.Duration == 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.MaxFault == 0 {
		cfg.MinFault, cfg.MaxFault = time.Second, 3*time.Second
	}
	if cfg.MaxGap == 0 {
		cfg.MinGap, cfg.MaxGap = 500*time.Millisecond, 2*time.Second
	}
	if len(cfg.Kinds) == 0 || cfg.Nodes < 1 {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x7761727265))
	between := func(a, b time.Duration) time.Duration {
		if b <= a {
			return a
		}
		return a + time.Duration(rng.Int64N(int64(b-a)))
	}
	n := cfg.Nodes
	nodes := make([]int, n)
	for i := range nodes {
		nodes[i] = i + 1
	}
	shuffled := func() []int {
		p := slices.Clone(nodes)
		rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
		return p
	}
	minority := max(1, (n-1)/2) // 1 of 3, 2 of 5
	var out []Fault
	at := between(cfg.MinGap, cfg.MaxGap)
	for id := 1; at < cfg.Duration; id++ {
		f := Fault{ID: id, Kind: cfg.Kinds[rng.IntN(len(cfg.Kinds))], Start: at, Dur: between(cfg.MinFault, cfg.MaxFault)}
		p := shuffled()
		switch f.Kind {
		case FaultKill, FaultPause:
			f.Nodes = sortedInts(p[:1+rng.IntN(minority)])
		case FaultIsolate, FaultLinkDown, FaultWipe, FaultDiskFull:
			f.Nodes = []int{p[0]}
		case FaultSplit:
			k := 1 + rng.IntN(minority)
			f.Sides = [2][]int{sortedInts(p[:k]), sortedInts(p[k:])}
		case FaultBridge:
			// p[0] is the bridge; the rest split in two halves that cannot see each other.
			rest := p[1:]
			k := max(1, len(rest)/2)
			f.Sides = [2][]int{sortedInts(rest[:k]), sortedInts(rest[k:])}
			f.Nodes = []int{p[0]}
		case FaultOneWay:
			k := 1 + rng.IntN(minority)
			f.Sides = [2][]int{sortedInts(p[:k]), sortedInts(p[k:])}
		case FaultSlowNet:
			f.Nodes = sortedInts(p[:1+rng.IntN(n)])
			f.Link = LinkFaults{
				Delay:  time.Duration(rng.IntN(50)) * time.Millisecond,
				Jitter: time.Duration(rng.IntN(100)) * time.Millisecond,
				Loss:   float64(rng.IntN(20)) / 100,
			}
		}
		out = append(out, f)
		at += f.Dur + between(cfg.MinGap, cfg.MaxGap)
	}
	return out
}

func sortedInts(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// Supported reports whether the harness can inject a kind, and why not.
func (c *Cluster) Supported(k FaultKind) (bool, string) {
	switch k {
	case FaultIsolate, FaultLinkDown, FaultSplit, FaultBridge, FaultOneWay:
		if !c.Netns {
			return false, "needs network namespaces (" + c.Why + ")"
		}
	case FaultSlowNet:
		if c.Proxy == nil {
			return false, "needs the proxy (Options.Proxy)"
		}
	case FaultDiskFull:
		if c.opts.TmpfsSize == 0 {
			return false, "needs tmpfs data folders (Options.TmpfsSize)"
		}
	}
	return true, ""
}

// Injector applies faults to a harness and records them in a history.
type Injector struct {
	C   *Cluster
	Rec *Recorder // may be nil
	// DiskLeave is the free space a disk-full fault leaves (default 1 MiB).
	DiskLeave int64
	// Retarget may replace a fault's targets just before it is applied (e.g. "the leader of
	// queue q" once the cluster reports leaders). Nil keeps the schedule's targets.
	Retarget func(Fault) Fault
	Logf     func(format string, args ...any)
}

// Run applies the schedule in order (each fault from its Start, healed after its Dur) and
// returns when the last one is healed or ctx ends (then the current fault is healed too).
// The first error ends the run, after healing.
func (in *Injector) Run(ctx context.Context, faults []Fault) error {
	t0 := time.Now()
	for _, f := range faults {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(t0.Add(f.Start))):
		}
		if in.Retarget != nil {
			f = in.Retarget(f)
		}
		heal, err := in.Apply(f)
		if err != nil {
			return fmt.Errorf("fault %v: %w", f, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(f.Dur):
		}
		if err := heal(); err != nil {
			return fmt.Errorf("heal %v: %w", f, err)
		}
	}
	return nil
}

func (in *Injector) logf(format string, args ...any) {
	if in.Logf != nil {
		in.Logf(format, args...)
	}
}

// Apply injects one fault now and returns the function that heals it.
func (in *Injector) Apply(f Fault) (heal func() error, err error) {
	c := in.C
	if ok, why := c.Supported(f.Kind); !ok {
		return nil, fmt.Errorf("%s %s", f.Kind, why)
	}
	record := func(kind EventKind) {
		if in.Rec != nil {
			in.Rec.Add(Event{Kind: kind, FaultID: f.ID, Op: string(f.Kind), Detail: f.Targets()})
		}
	}
	each := func(fn func(n *Node) error) error {
		for _, i := range f.Nodes {
			if err := fn(c.Node(i)); err != nil {
				return err
			}
		}
		return nil
	}
	in.logf("fault %v", f)
	healed := func(fn func() error) func() error {
		return func() error {
			err := fn()
			record(EvHeal)
			in.logf("healed #%d %s", f.ID, f.Kind)
			return err
		}
	}
	switch f.Kind {
	case FaultKill:
		err = each((*Node).Kill)
		heal = healed(func() error { return each((*Node).Start) })
	case FaultWipe:
		err = each(func(n *Node) error {
			if err := n.Kill(); err != nil {
				return err
			}
			return n.Wipe()
		})
		heal = healed(func() error { return each((*Node).Start) })
	case FaultPause:
		err = each((*Node).Pause)
		heal = healed(func() error { return each((*Node).Resume) })
	case FaultIsolate:
		err = each(func(n *Node) error { return c.Isolate(n.Args.Index) })
		heal = healed(c.Heal)
	case FaultLinkDown:
		err = each(func(n *Node) error { return c.LinkDown(n.Args.Index) })
		heal = healed(c.Heal)
	case FaultSplit, FaultBridge:
		err = c.Partition(f.Sides[0], f.Sides[1])
		heal = healed(c.Heal)
	case FaultOneWay:
		for _, a := range f.Sides[0] {
			for _, b := range f.Sides[1] {
				if err = c.Cut(a, b); err != nil {
					break
				}
			}
		}
		heal = healed(c.Heal)
	case FaultSlowNet:
		// Every link into and out of the targets.
		for _, i := range f.Nodes {
			for j := 0; j <= len(c.Nodes); j++ {
				if j != i {
					c.Proxy.Set(j, i, f.Link)
					c.Proxy.Set(i, j, f.Link)
				}
			}
		}
		heal = healed(func() error { c.Proxy.Clear(); return nil })
	case FaultDiskFull:
		leave := in.DiskLeave
		if leave == 0 {
			leave = 1 << 20
		}
		err = each(func(n *Node) error { return n.FillDisk(leave) })
		heal = healed(func() error { return each((*Node).FreeDisk) })
	default:
		return nil, fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	if err != nil {
		heal()
		return nil, err
	}
	// Recorded once in effect: whatever is published after this event met the fault.
	record(EvFault)
	return heal, nil
}
