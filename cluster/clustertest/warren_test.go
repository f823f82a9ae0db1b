package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// These tests drive real warren processes (today's single-node broker: no cluster flags) to
// prove the harness, the workload and the checker end to end on Warren's single-node
// durability contract: a confirmed persistent message in a durable queue survives kill -9.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// warrenBin builds cmd/warren once (or uses WARREN_BIN).
func warrenBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("WARREN_BIN"); p != "" {
			binPath = p
			return
		}
		binDir, binErr = os.MkdirTemp("", "clustertest-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "warren")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/warren").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build warren: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// run is one workload against a harness: it waits for progress between steps.
type run struct {
	t   *testing.T
	c   *Cluster
	rec *Recorder
	w   *Workload
	cfg CheckConfig
}

func startRun(t *testing.T, c *Cluster, queues []QueueSpec) *run {
	r := &run{t: t, c: c, rec: NewRecorder(), cfg: CheckConfig{Queues: map[string]QueueClass{}}}
	for _, q := range queues {
		r.cfg.Queues[q.Name] = q.Class
	}
	r.w = StartWorkload(WorkloadConfig{
		Queues: queues, Publishers: 2, Consumers: 2, Window: 32, Rate: 1000,
		URL: func(n int) string { return c.Node(n).URL() }, Rec: r.rec,
		Logf: t.Logf,
	})
	t.Cleanup(r.w.Stop)
	return r
}

// confirms counts confirm events so far.
func (r *run) confirms() int {
	n := 0
	for _, e := range r.rec.Events() {
		if e.Kind == EvConfirm {
			n++
		}
	}
	return n
}

// waitConfirms waits until at least n more confirms arrived (bounded).
func (r *run) waitConfirms(n int, within time.Duration) {
	r.t.Helper()
	target := r.confirms() + n
	deadline := time.Now().Add(within)
	for r.confirms() < target {
		if time.Now().After(deadline) {
			r.t.Fatalf("fewer than %d confirms within %v (have %d)", n, within, r.confirms())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finish stops publishing, drains, stops, checks, and fails the test on a violation.
func (r *run) finish() Report {
	r.t.Helper()
	r.w.StopPublishers()
	left := r.w.Drain(3*time.Second, 30*time.Second)
	r.w.Stop()
	rep := Check(r.rec.Events(), r.cfg)
	for _, q := range rep.Queues {
		r.t.Logf("%s: published %d confirmed %d nacked %d unknown %d delivered %d redelivered %d lost %d unexpected %d dups %d (unflagged %d) order %d",
			q.Queue, q.Published, q.Confirmed, q.Nacked, q.Indeterminate, q.Delivered, q.Redeliveries, q.Lost, q.Unexpected, q.Duplicates, q.BadDuplicates, q.OrderViolations)
	}
	for _, f := range rep.Faults {
		r.t.Logf("fault #%d %s %s: %v, next confirm after %v, next delivery after %v", f.ID, f.Kind, f.Detail, f.Duration, f.ToConfirm, f.ToDeliver)
	}
	if left != 0 {
		r.t.Errorf("%d confirmed messages still undelivered after draining", left)
	}
	for _, v := range rep.Violations() {
		r.t.Error(v)
	}
	return rep
}

func classicQueue(name string, node int) QueueSpec {
	return QueueSpec{Name: name, Class: QueueClass{Kind: "classic", MustNotLose: true}, Nodes: []int{node}}
}

// TestSingleNode_KillMidPublishLosesNoConfirmed: three independent brokers in namespaces; a
// workload on node 1 with a classic durable queue; kill -9 of node 1 while publishers have
// messages in flight; restart with the same data. Every confirmed message is delivered.
func TestSingleNode_KillMidPublishLosesNoConfirmed(t *testing.T) {
	requireNetns(t)
	c, err := Start(Options{Binary: warrenBin(t), Nodes: 3, Netns: NetnsRequire, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Every node is its own broker on its own address, reachable from here.
	for _, n := range c.Nodes {
		conn, err := amqp.Dial(n.URL())
		if err != nil {
			t.Fatalf("node %d at %s: %v", n.Args.Index, n.Args.AMQP, err)
		}
		conn.Close()
	}
	r := startRun(t, c, []QueueSpec{classicQueue("chaos.classic", 1)})
	in := &Injector{C: c, Rec: r.rec, Logf: t.Logf}
	r.waitConfirms(300, 30*time.Second)
	heal, err := in.Apply(Fault{ID: 1, Kind: FaultKill, Nodes: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	r.waitConfirms(300, 30*time.Second)
	rep := r.finish()
	q := rep.Queues[0]
	if q.Confirmed < 600 || q.Delivered < q.Confirmed {
		t.Errorf("confirmed %d, delivered %d: want ≥ 600 confirmed, all delivered", q.Confirmed, q.Delivered)
	}
	if q.Indeterminate == 0 {
		t.Log("no message was in flight at the kill (the kill came between two windows)")
	}
	if f := rep.Faults[0]; f.ToConfirm < 0 || f.ToDeliver < 0 {
		t.Errorf("node 1 did not serve again after its restart: %+v", f)
	}
	// The nodes are independent: the queue exists on node 1 only, and the metadata check says
	// so (with a cluster, every node must list it).
	views := map[int][]string{}
	for i := 1; i <= 3; i++ {
		v, err := c.MetadataView(i)
		if err != nil {
			t.Fatal(err)
		}
		views[i] = v
	}
	if ok, diffs := Converged(views); ok || !slices.Contains(diffs, "queue //chaos.classic missing on node 2,3") {
		t.Errorf("metadata of independent nodes: converged=%v %v", ok, diffs)
	}
}

// TestSingleNode_CheckerSeesLostTransientMessages is the control of the test above: transient
// messages (delivery-mode 1) are confirmed without reaching the disk, so a backlog of them dies
// with kill -9, and the checker must report exactly those as lost.
func TestSingleNode_CheckerSeesLostTransientMessages(t *testing.T) {
	c, err := Start(Options{Binary: warrenBin(t), Nodes: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := NewRecorder()
	q := classicQueue("chaos.transient", 1)
	w := StartWorkload(WorkloadConfig{
		Queues: []QueueSpec{q}, Publishers: 1, Consumers: 1, Rate: 500, Transient: true,
		ConsumerDelay: 3 * time.Second, URL: func(n int) string { return c.Node(n).URL() }, Rec: rec,
	})
	defer w.Stop()
	time.Sleep(time.Second) // a backlog of confirmed transient messages, no consumer yet
	in := &Injector{C: c, Rec: rec}
	heal, err := in.Apply(Fault{ID: 1, Kind: FaultKill, Nodes: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	w.StopPublishers()
	w.Drain(2*time.Second, 20*time.Second)
	w.Stop()
	events := rec.Events()
	rep := Check(events, CheckConfig{Queues: map[string]QueueClass{q.Name: q.Class}})
	got := rep.Queues[0]
	// Expected: every confirmed message published before the kill; none published after it.
	before, confirmedBefore := map[string]bool{}, 0
	fault := false
	for _, e := range events {
		switch {
		case e.Kind == EvFault:
			fault = true
		case e.Kind == EvPublish && !fault:
			before[e.ID] = true
		case e.Kind == EvConfirm && before[e.ID]:
			confirmedBefore++
		}
	}
	if got.Lost != confirmedBefore || confirmedBefore < 100 || rep.OK() {
		t.Errorf("confirmed before the kill %d; checker: lost %d, ok %v, violations %v", confirmedBefore, got.Lost, rep.OK(), rep.Violations())
	}
}

// TestSingleNode_LoopbackPauseAndKill runs the same workload without namespaces (the fallback:
// processes on loopback ports), with a pause (SIGSTOP/SIGCONT) and a kill -9 + restart.
func TestSingleNode_LoopbackPauseAndKill(t *testing.T) {
	var lines []string
	var mu sync.Mutex
	c, err := Start(Options{Binary: warrenBin(t), Nodes: 2, Netns: NetnsOff, Logf: func(f string, a ...any) {
		mu.Lock()
		lines = append(lines, fmt.Sprintf(f, a...))
		mu.Unlock()
		t.Logf(f, a...)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mu.Lock()
	said := strings.Join(lines, "\n")
	mu.Unlock()
	if c.Netns || !strings.Contains(said, "no network namespaces") {
		t.Errorf("fallback not announced: netns=%v, lines %q", c.Netns, said)
	}
	if ok, _ := c.Supported(FaultSplit); ok {
		t.Error("partitions offered without namespaces")
	}
	r := startRun(t, c, []QueueSpec{classicQueue("chaos.loop", 2)})
	in := &Injector{C: c, Rec: r.rec, Logf: t.Logf}
	r.waitConfirms(200, 30*time.Second)
	for id, kind := range []FaultKind{FaultPause, FaultKill} {
		heal, err := in.Apply(Fault{ID: id + 1, Kind: kind, Nodes: []int{2}})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := heal(); err != nil {
			t.Fatal(err)
		}
		r.waitConfirms(200, 30*time.Second)
	}
	rep := r.finish()
	if len(rep.Faults) != 2 || rep.Faults[0].Kind != "pause" || rep.Faults[0].ToConfirm < 900*time.Millisecond {
		t.Errorf("a 1 s pause should delay the next confirm by about 1 s: %+v", rep.Faults)
	}
}

// TestSingleNode_DiskAlarm: node 1's data folder is a tmpfs; filling it to below Warren's disk
// alarm limit (50 MB free by default; 20 MB left) blocks publishers (no confirms) within the
// alarm's one-second check; freeing it lets them go on; nothing confirmed is lost.
func TestSingleNode_DiskAlarm(t *testing.T) {
	requireNetns(t)
	c, err := Start(Options{Binary: warrenBin(t), Nodes: 1, Netns: NetnsRequire, TmpfsSize: 128 << 20, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitClustered(10 * time.Second); err != nil {
		t.Errorf("a single node is a cluster of one: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.Node(1).DataDir, "wal")); err == nil {
		t.Error("the node's tmpfs is visible in the host's mount namespace")
	}
	if _, err := os.Stat(filepath.Join(c.Node(1).HostDataDir(), "wal")); err != nil {
		t.Errorf("node data not reachable through its mount namespace: %v", err)
	}
	r := startRun(t, c, []QueueSpec{classicQueue("chaos.disk", 1)})
	in := &Injector{C: c, Rec: r.rec, Logf: t.Logf, DiskLeave: 20 << 20}
	r.waitConfirms(200, 30*time.Second)
	heal, err := in.Apply(Fault{ID: 1, Kind: FaultDiskFull, Nodes: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // the alarm is checked every second
	before := r.confirms()
	time.Sleep(time.Second)
	during := r.confirms() - before
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	r.waitConfirms(200, 30*time.Second)
	r.finish()
	if during != 0 {
		t.Errorf("%d confirms while the disk was below the alarm limit (publishers should be blocked)", during)
	}
}

// TestSingleNode_WipeLosesEverything: the wipe fault really is a disk loss: a durable queue
// with a confirmed message is gone after the node comes back, while a kill alone keeps it.
func TestSingleNode_WipeLosesEverything(t *testing.T) {
	c, err := Start(Options{Binary: warrenBin(t), Nodes: 1, Netns: NetnsOff, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	publish := func() {
		conn, err := amqp.Dial(c.Node(1).URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, _ := conn.Channel()
		if _, err := ch.QueueDeclare("kept", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		ch.Confirm(false)
		dc, err := ch.PublishWithDeferredConfirm("", "kept", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("m")})
		if err != nil || !dc.Wait() {
			t.Fatalf("publish: %v", err)
		}
	}
	messages := func() int {
		conn, err := amqp.Dial(c.Node(1).URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, _ := conn.Channel()
		q, err := ch.QueueDeclarePassive("kept", true, false, false, false, nil)
		if err != nil {
			return -1 // 404: no such queue
		}
		return q.Messages
	}
	in := &Injector{C: c}
	publish()
	for _, tc := range []struct {
		kind FaultKind
		want int
	}{{FaultKill, 1}, {FaultWipe, -1}} {
		heal, err := in.Apply(Fault{Kind: tc.kind, Nodes: []int{1}})
		if err != nil {
			t.Fatal(err)
		}
		if err := heal(); err != nil {
			t.Fatal(err)
		}
		if got := messages(); got != tc.want {
			t.Errorf("after %s: messages %d, want %d (-1: no queue)", tc.kind, got, tc.want)
		}
	}
}
