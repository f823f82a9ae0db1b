package main

import (
	"encoding/json"
	"errors"
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

	"github.com/warrenmq/warren/cluster/clustertest"
)

var (
	warrenOnce sync.Once
	warrenPath string
	warrenErr  error
)

// warrenBinary builds cmd/warren once per test binary (or takes WARREN_BIN).
func warrenBinary(t *testing.T) string {
	t.Helper()
	warrenOnce.Do(func() {
		if p := os.Getenv("WARREN_BIN"); p != "" {
			warrenPath = p
			return
		}
		dir, err := os.MkdirTemp("", "warrenctl-test-bin-")
		if err != nil {
			warrenErr = err
			return
		}
		warrenPath = filepath.Join(dir, "warren")
		if out, err := exec.Command("go", "build", "-o", warrenPath, "../warren").CombinedOutput(); err != nil {
			warrenErr = fmt.Errorf("build warren: %v\n%s", err, out)
		}
	})
	if warrenErr != nil {
		t.Fatal(warrenErr)
	}
	return warrenPath
}

// startCluster starts n warren processes on loopback, clustered, and returns them.
func startCluster(t *testing.T, n int) *clustertest.Cluster {
	t.Helper()
	c, err := clustertest.Start(clustertest.Options{Binary: warrenBinary(t), Nodes: n, Netns: clustertest.NetnsOff,
		Args: clustertest.ClusterArgs, Logf: t.Logf, StartTimeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitClustered(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// nodeCtl runs warrenctl against node i of c as the harness's user.
func nodeCtl(t *testing.T, c *clustertest.Cluster, i int, args ...string) (string, error) {
	t.Helper()
	a := c.Node(i).Args
	return ctl(t, "http://"+a.HTTP, append([]string{"--user", a.User, "--password", a.Pass}, args...)...)
}

func mustNodeCtl(t *testing.T, c *clustertest.Cluster, i int, args ...string) string {
	t.Helper()
	out, err := nodeCtl(t, c, i, args...)
	if err != nil {
		t.Fatalf("warrenctl (node %d) %s: %v\n%s", i, strings.Join(args, " "), err, out)
	}
	return out
}

// queueState is a replicated queue's leader and members as node i reports them.
func queueState(t *testing.T, c *clustertest.Cluster, i int, name string) (leader string, members []string) {
	t.Helper()
	var qs []map[string]any
	if err := json.Unmarshal([]byte(mustNodeCtl(t, c, i, "--json", "list", "queues")), &qs); err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q["name"] == name {
			ms, _ := q["members"].([]any)
			for _, m := range ms {
				members = append(members, m.(string))
			}
			slices.Sort(members)
			return str(q["leader"]), members
		}
	}
	t.Fatalf("no queue %s on node %d", name, i)
	return "", nil
}

// until retries f for up to d.
func until(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatal(err)
}

// The cluster commands against three real warren processes: cluster status, transfer-leader,
// rebalance, add-member/delete-member, grow/shrink, node drain/revive.
func TestWarrenctl_ClusterCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := startCluster(t, 3)
	n1, n2, n3 := c.Node(1).Args.Name, c.Node(2).Args.Name, c.Node(3).Args.Name
	out := mustNodeCtl(t, c, 2, "cluster", "status")
	for _, n := range []string{n1, n2, n3, "voter", "leader", "commit_index"} {
		if !strings.Contains(out, n) {
			t.Fatalf("cluster status lacks %q:\n%s", n, out)
		}
	}

	// Three quorum queues declared on node 1: node 1 leads all three.
	for _, q := range []string{"q1", "q2", "q3"} {
		mustNodeCtl(t, c, 1, "declare", "queue", q, "--durable", "--type", "quorum")
	}
	for _, q := range []string{"q1", "q2", "q3"} {
		if l, ms := queueState(t, c, 1, q); l != n1 || len(ms) != 3 {
			t.Fatalf("%s: leader %s members %v, want %s and 3 members", q, l, ms, n1)
		}
	}
	// transfer-leader to a named node, then rebalance: one leader per node.
	mustNodeCtl(t, c, 2, "queues", "transfer-leader", "q1", n3)
	until(t, 10*time.Second, func() error {
		if l, _ := queueState(t, c, 2, "q1"); l != n3 {
			return fmt.Errorf("q1 led by %s after transfer-leader to %s", l, n3)
		}
		return nil
	})
	out = mustNodeCtl(t, c, 3, "queues", "rebalance")
	if !strings.Contains(out, "from") || !strings.Contains(out, n1) {
		t.Fatalf("rebalance:\n%s", out)
	}
	until(t, 10*time.Second, func() error {
		leaders := map[string]int{}
		for _, q := range []string{"q1", "q2", "q3"} {
			l, _ := queueState(t, c, 1, q)
			leaders[l]++
		}
		if len(leaders) != 3 {
			return fmt.Errorf("leaders after rebalance: %v, want one queue per node", leaders)
		}
		return nil
	})
	if out := mustNodeCtl(t, c, 1, "queues", "rebalance"); !strings.Contains(out, "nothing moved") {
		t.Fatalf("second rebalance:\n%s", out)
	}

	// Membership: delete-member, add-member, shrink (replacing nothing: every node has a
	// replica), grow back.
	leader, _ := queueState(t, c, 1, "q2")
	other := n1
	if leader == n1 {
		other = n2
	}
	mustNodeCtl(t, c, 1, "queues", "delete-member", "q2", other)
	if _, ms := queueState(t, c, 1, "q2"); len(ms) != 2 || slices.Contains(ms, other) {
		t.Fatalf("q2 members after delete-member %s: %v", other, ms)
	}
	var ae *apiError
	if _, err := nodeCtl(t, c, 1, "queues", "delete-member", "q2", leader); !errors.As(err, &ae) || ae.Status != 400 {
		t.Fatalf("delete-member of the leader: %v, want HTTP 400", err)
	}
	mustNodeCtl(t, c, 1, "queues", "add-member", "q2", other)
	if _, ms := queueState(t, c, 1, "q2"); len(ms) != 3 {
		t.Fatalf("q2 members after add-member %s: %v", other, ms)
	}
	out = mustNodeCtl(t, c, 2, "queues", "shrink", n3)
	if !strings.Contains(out, "removed "+n3) || !strings.Contains(out, "leader moved") || !strings.Contains(out, "no node to replace it") {
		t.Fatalf("shrink %s:\n%s", n3, out)
	}
	for _, q := range []string{"q1", "q2", "q3"} {
		until(t, 10*time.Second, func() error {
			if l, ms := queueState(t, c, 2, q); l == n3 || len(ms) != 2 || slices.Contains(ms, n3) {
				return fmt.Errorf("%s after shrink: leader %s members %v", q, l, ms)
			}
			return nil
		})
	}
	if out := mustNodeCtl(t, c, 2, "queues", "grow", n3, "even", "--queue-pattern", "^q[12]$"); strings.Count(out, "added "+n3) != 2 {
		t.Fatalf("grow %s even q1, q2:\n%s", n3, out)
	}
	if out := mustNodeCtl(t, c, 2, "queues", "grow", n3, "all"); strings.Count(out, "added "+n3) != 1 || !strings.Contains(out, "q3") {
		t.Fatalf("grow %s all:\n%s", n3, out)
	}
	for _, q := range []string{"q1", "q2", "q3"} {
		if _, ms := queueState(t, c, 2, q); len(ms) != 3 {
			t.Fatalf("%s after grow: members %v", q, ms)
		}
	}

	// Drain node 1 (asked through node 2): its leaderships move, its clients are closed with
	// 320, new ones are refused; revive lets them in again.
	mustNodeCtl(t, c, 1, "queues", "transfer-leader", "q1", n1)
	until(t, 10*time.Second, func() error {
		if l, _ := queueState(t, c, 1, "q1"); l != n1 {
			return fmt.Errorf("q1 led by %s, want %s", l, n1)
		}
		return nil
	})
	conn, err := amqp.Dial(c.Node(1).URL())
	if err != nil {
		t.Fatal(err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	out = mustNodeCtl(t, c, 2, "node", "drain", n1)
	if !strings.Contains(out, "q1") || !strings.Contains(out, "safe to stop") || strings.Contains(out, "NOT safe") {
		t.Fatalf("node drain:\n%s", out)
	}
	select {
	case e := <-closed:
		if e == nil || e.Code != amqp.ConnectionForced {
			t.Fatalf("client of the drained node closed with %v, want 320", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client of the drained node still connected")
	}
	for _, q := range []string{"q1", "q2", "q3"} {
		if l, _ := queueState(t, c, 2, q); l == n1 {
			t.Fatalf("%s still led by the drained node", q)
		}
	}
	if c, err := amqp.Dial(c.Node(1).URL()); err == nil {
		c.Close()
		t.Fatal("the drained node accepted a client")
	}
	// Revive without a name: the node asked.
	if out := mustNodeCtl(t, c, 1, "node", "revive"); !strings.Contains(out, n1) {
		t.Fatalf("node revive:\n%s", out)
	}
	conn, err = amqp.Dial(c.Node(1).URL())
	if err != nil {
		t.Fatalf("the revived node refused a client: %v", err)
	}
	conn.Close()
	if _, err := nodeCtl(t, c, 1, "queues", "grow", n3, "sometimes"); !errors.As(err, new(usageError)) {
		t.Fatalf("grow with a bad selector: %v, want a usage error", err)
	}
}

func TestPickReplacement_FewestReplicasNotAMember(t *testing.T) {
	q := replicated{name: "q", leader: "a", members: []string{"a", "b", "c"}}
	load := map[string]int{"a": 5, "b": 5, "c": 5, "d": 4, "e": 2, "f": 3}
	for _, tc := range []struct {
		alive []string
		want  string
	}{
		{[]string{"a", "b", "c", "d", "e", "f"}, "e"},
		{[]string{"a", "b", "c", "d", "f"}, "f"},
		{[]string{"a", "b", "c"}, ""},
		{[]string{"c", "d"}, "d"}, // c is leaving... and a member anyway
	} {
		if got := pickReplacement(q, "c", tc.alive, load); got != tc.want {
			t.Errorf("alive %v: %q, want %q", tc.alive, got, tc.want)
		}
	}
}
