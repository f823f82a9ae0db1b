package clustertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// Cluster I, proven on real processes: three warren nodes form one cluster whatever their
// start order, agree on every kind of metadata through their Raft log, keep it across
// restarts, elect a new leader when the leader is killed, refuse changes on a node cut off from
// the majority (and catch it up after), bring a wiped node back, and keep out a node with
// another key.

func startCluster(t *testing.T, n int, extra ...string) *Cluster {
	t.Helper()
	c, err := Start(Options{Binary: warrenBin(t), Nodes: n, Args: append(append([]string(nil), ClusterArgs...), extra...), Logf: t.Logf, StartTimeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range c.Nodes {
				t.Logf("node %d log tail:\n%s", nd.Args.Index, tail(nd.LogPath, 30))
			}
		}
		c.Close()
	})
	if err := c.WaitClustered(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// api performs a management request on node i as the harness's user.
func api(t *testing.T, c *Cluster, i int, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	nd := c.Node(i)
	req, err := http.NewRequest(method, "http://"+nd.Args.HTTP+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(nd.Args.User, nd.Args.Pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func channel(t *testing.T, c *Cluster, i int) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.DialConfig(c.Node(i).URL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("node %d: %v", i, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, ch
}

// sees checks that node i has everything TestCluster_MetadataEverywhere declared.
func sees(t *testing.T, c *Cluster, i int) error {
	_, ch := channel(t, c, i)
	if _, err := ch.QueueDeclarePassive("orders", true, false, false, false, nil); err != nil {
		return fmt.Errorf("node %d: queue: %w", i, err)
	}
	if err := ch.ExchangeDeclarePassive("events", "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("node %d: exchange: %w", i, err)
	}
	for _, p := range []string{"/api/bindings/%2F/e/events/q/orders", "/api/users/alice", "/api/permissions/%2F/alice", "/api/policies/%2F/cap", "/api/vhosts/shop"} {
		code, body := api(t, c, i, "GET", p, nil)
		if code != 200 || (strings.Contains(p, "bindings") && !strings.Contains(string(body), "order.*")) {
			return fmt.Errorf("node %d: GET %s: %d %s", i, p, code, body)
		}
	}
	return nil
}

func TestCluster_MetadataEverywhereAndAcrossRestarts(t *testing.T) {
	c := startCluster(t, 3)
	_, ch := channel(t, c, 1)
	if _, err := ch.QueueDeclare("orders", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("events", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("orders", "order.*", "events", false, nil); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		path string
		body any
	}{
		{"/api/users/alice", map[string]any{"password": "pw", "tags": "management"}},
		{"/api/permissions/%2F/alice", map[string]any{"configure": "^a", "write": ".*", "read": ".*"}},
		{"/api/policies/%2F/cap", map[string]any{"pattern": "^orders$", "definition": map[string]any{"max-length": 100}}},
		{"/api/vhosts/shop", nil},
	} {
		if code, body := api(t, c, 1, "PUT", w.path, w.body); code/100 != 2 {
			t.Fatalf("PUT %s: %d %s", w.path, code, body)
		}
	}
	// Answered on node 1 means committed: nodes 2 and 3 have it as soon as they applied it.
	for i := 2; i <= 3; i++ {
		eventually(t, 5*time.Second, func() error { return sees(t, c, i) })
	}
	// The user logs in on another node.
	u := c.Node(3)
	conn, err := amqp.Dial(fmt.Sprintf("amqp://alice:pw@%s/", u.Args.AMQP))
	if err != nil {
		t.Fatalf("alice on node 3: %v", err)
	}
	conn.Close()

	// kill -9 every node, restart them in another order: everything is still there.
	for _, nd := range c.Nodes {
		nd.Kill()
	}
	errs := make(chan error, 3)
	for _, i := range []int{3, 1, 2} {
		go func() { errs <- c.Node(i).Start() }()
		time.Sleep(300 * time.Millisecond)
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		if err := sees(t, c, i); err != nil {
			t.Fatalf("after restarting every node: %v", err)
		}
	}
}

// leader returns the index of the node leading the Raft log, as node i reports it.
func leader(t *testing.T, c *Cluster, i int) int {
	code, body := api(t, c, i, "GET", "/api/cluster", nil)
	if code != 200 {
		return 0
	}
	var st struct{ Leader string }
	json.Unmarshal(body, &st)
	for _, nd := range c.Nodes {
		if nd.Args.Name == st.Leader {
			return nd.Args.Index
		}
	}
	return 0
}

func TestCluster_LeaderKilledDeclaresResume(t *testing.T) {
	c := startCluster(t, 3)
	var l int
	eventually(t, 10*time.Second, func() error {
		if l = leader(t, c, 1); l == 0 {
			return errors.New("no leader")
		}
		return nil
	})
	other := l%3 + 1
	_, ch := channel(t, c, other)
	if _, err := ch.QueueDeclare("before", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	c.Node(l).Kill()
	start := time.Now()
	var took time.Duration
	for {
		conn, err := amqp.Dial(c.Node(other).URL())
		if err == nil {
			ch, err := conn.Channel()
			if err == nil {
				_, err = ch.QueueDeclare("after", true, false, false, false, nil)
			}
			conn.Close()
			if err == nil {
				took = time.Since(start)
				break
			}
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no declare accepted within 30 s of the leader's kill -9: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("leader (node %d) killed: a declare on node %d committed %v later", l, other, took.Round(time.Millisecond))
	if nl := leader(t, c, other); nl == 0 || nl == l {
		t.Fatalf("leader after the kill: %d", nl)
	}
	// The old leader comes back as a follower and catches up.
	if err := c.Node(l).Start(); err != nil {
		t.Fatal(err)
	}
	_, ch = channel(t, c, l)
	if _, err := ch.QueueDeclarePassive("after", true, false, false, false, nil); err != nil {
		t.Fatalf("restarted node misses what was declared while it was down: %v", err)
	}
}

func TestCluster_WipedNodeRejoinsAndReceivesEverything(t *testing.T) {
	c := startCluster(t, 3)
	_, ch := channel(t, c, 1)
	if _, err := ch.QueueDeclare("early", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	n3 := c.Node(3)
	n3.Kill()
	if err := os.RemoveAll(n3.HostDataDir()); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(n3.HostDataDir(), 0o755)
	for i := range 50 {
		if _, err := ch.QueueDeclare(fmt.Sprintf("late-%d", i), true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := n3.Start(); err != nil {
		t.Fatal(err)
	}
	_, ch3 := channel(t, c, 3)
	for _, q := range []string{"early", "late-0", "late-49"} {
		if _, err := ch3.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
			t.Fatalf("wiped node 3 misses %s: %v", q, err)
		}
	}
}

func TestCluster_IsolatedNodeRefusesThenCatchesUp(t *testing.T) {
	c := startCluster(t, 3)
	if !c.Netns {
		t.Skipf("partitions need network namespaces (%s)", c.Why)
	}
	if err := c.Isolate(3); err != nil {
		t.Fatal(err)
	}
	defer c.Heal()
	_, ch1 := channel(t, c, 1)
	_, ch3 := channel(t, c, 3)
	start := time.Now()
	_, err := ch3.QueueDeclare("minority", true, false, false, false, nil)
	took := time.Since(start)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.InternalError || !strings.Contains(ae.Reason, "no quorum") {
		t.Fatalf("declare on the isolated node: %v, want 541 ... no quorum", err)
	}
	if took > 15*time.Second {
		t.Fatalf("the refusal took %v", took)
	}
	t.Logf("isolated node refused a declare after %v: %s", took.Round(time.Millisecond), ae.Reason)
	// The majority goes on.
	eventually(t, 15*time.Second, func() error {
		_, err := ch1.QueueDeclare("majority", true, false, false, false, nil)
		if err != nil {
			_, ch1 = channel(t, c, 1)
		}
		return err
	})
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		_, ch := channel(t, c, 3)
		_, err := ch.QueueDeclarePassive("majority", true, false, false, false, nil)
		return err
	})
	// And node 3 takes changes again.
	eventually(t, 20*time.Second, func() error {
		_, ch := channel(t, c, 3)
		_, err := ch.QueueDeclare("healed", true, false, false, false, nil)
		return err
	})
}

func TestCluster_WrongKeyCannotJoin(t *testing.T) {
	c := startCluster(t, 3)
	dir := t.TempDir()
	key := filepath.Join(dir, "other.key")
	os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	host := "127.0.0.1"
	if c.Netns {
		host = c.ClientIP()
	}
	cmd := exec.Command(warrenBin(t), "--node-name", "mallory", "--data-dir", filepath.Join(dir, "data"),
		"--amqp-listen", "127.0.0.1:0", "--http-listen", "", "--prometheus-listen", "",
		"--cluster-listen", host+":0", "--cluster-rpc-listen", host+":0", "--cluster-join", c.Node(1).Args.Gossip,
		"--cluster-key-file", key)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(5 * time.Second)
	code, body := api(t, c, 1, "GET", "/api/cluster", nil)
	if code != 200 {
		t.Fatalf("/api/cluster: %d %s", code, body)
	}
	if strings.Contains(string(body), "mallory") {
		t.Fatalf("a node with another key joined:\n%s\nits log:\n%s", body, out.String())
	}
}

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// queueLeader returns the index of the node leading a replicated queue, as node i reports it.
func queueLeader(t *testing.T, c *Cluster, i int, q string) int {
	code, body := api(t, c, i, "GET", "/api/queues/%2F/"+q, nil)
	if code != 200 {
		return 0
	}
	var o struct{ Leader string }
	json.Unmarshal(body, &o)
	for _, nd := range c.Nodes {
		if nd.Args.Name == o.Leader {
			return nd.Args.Index
		}
	}
	return 0
}

// Issue 13's promise on real processes: confirmed messages of a quorum queue survive kill -9
// of its leader's node; another replica leads within a bound and has every one of them.
func TestCluster_QuorumQueueSurvivesLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	_, ch := channel(t, c, 1)
	if _, err := ch.QueueDeclare("qq", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	l := queueLeader(t, c, 1, "qq")
	if l != 1 {
		t.Fatalf("leader of a queue declared on node 1: %d", l)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for i := range n {
		if err := ch.Publish("", "qq", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	acked := 0
	for range n {
		select {
		case cf := <-confirms:
			if cf.Ack {
				acked++
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d confirms", acked, n)
		}
	}
	if acked != n {
		t.Fatalf("%d of %d publishes acked", acked, n)
	}
	killed := time.Now()
	c.Node(1).Kill()
	var nl int
	eventually(t, 15*time.Second, func() error {
		for _, i := range []int{2, 3} {
			if x := queueLeader(t, c, i, "qq"); x == 2 || x == 3 {
				nl = x
				return nil
			}
		}
		return errors.New("no new leader")
	})
	t.Logf("quorum queue leader node 1 killed: node %d leads %v later", nl, time.Since(killed).Round(time.Millisecond))
	_, ch2 := channel(t, c, nl)
	q, err := ch2.QueueDeclarePassive("qq", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != n {
		t.Fatalf("new leader holds %d messages, %d were confirmed", q.Messages, n)
	}
	seen := map[string]bool{}
	for range n {
		d, ok, err := ch2.Get("qq", true)
		if err != nil || !ok {
			t.Fatalf("get: %v %v after %d", ok, err, len(seen))
		}
		seen[string(d.Body)] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages", len(seen))
	}
	// The old leader comes back and follows.
	if err := c.Node(1).Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		if x := queueLeader(t, c, 1, "qq"); x != nl {
			return fmt.Errorf("node 1 sees leader %d", x)
		}
		return nil
	})
}

// A silent failure: the queue leader's node is paused (SIGSTOP). Another replica leads once
// gossip declares the node failed; when the paused node wakes up it must not confirm anything
// as the leader it no longer is (the zombie-leader case), and it follows the new leader.
func TestCluster_QuorumQueuePausedLeader(t *testing.T) {
	c := startCluster(t, 3)
	_, ch := channel(t, c, 1)
	if _, err := ch.QueueDeclare("qp", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1000))
	for i := range 100 {
		ch.Publish("", "qp", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprint("before-", i))})
	}
	for range 100 {
		if cf := <-confirms; !cf.Ack {
			t.Fatal("nack before the pause")
		}
	}
	if err := c.Node(1).Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	var nl int
	eventually(t, 20*time.Second, func() error {
		for _, i := range []int{2, 3} {
			if x := queueLeader(t, c, i, "qp"); x == 2 || x == 3 {
				nl = x
				return nil
			}
		}
		return errors.New("no new leader")
	})
	took := time.Since(paused)
	t.Logf("quorum queue leader node 1 paused: node %d leads %v later", nl, took.Round(time.Millisecond))
	// Publishes on the paused node's connection wait; when it wakes, none may be confirmed
	// unless the new leader has it.
	for i := range 20 {
		ch.Publish("", "qp", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprint("zombie-", i))})
	}
	if err := c.Node(1).Resume(); err != nil {
		t.Fatal(err)
	}
	zombieAcked := 0
	deadline := time.After(15 * time.Second)
collect:
	for range 20 {
		select {
		case cf := <-confirms:
			if cf.Ack {
				zombieAcked++
			}
		case <-deadline:
			break collect
		}
	}
	_, ch2 := channel(t, c, nl)
	got := map[string]bool{}
	for {
		d, ok, err := ch2.Get("qp", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got[string(d.Body)] = true
	}
	for i := range 100 {
		if !got[fmt.Sprint("before-", i)] {
			t.Fatalf("confirmed before-%d lost", i)
		}
	}
	zombieHeld := 0
	for k := range got {
		if strings.HasPrefix(k, "zombie-") {
			zombieHeld++
		}
	}
	if zombieAcked > zombieHeld {
		t.Fatalf("the woken leader confirmed %d publishes, the new leader holds %d of them", zombieAcked, zombieHeld)
	}
	t.Logf("after waking: %d of 20 publishes through the old leader confirmed, %d on the new leader", zombieAcked, zombieHeld)
}

func members(t *testing.T, c *Cluster, i int, q string) []string {
	code, body := api(t, c, i, "GET", "/api/queues/%2F/"+q, nil)
	if code != 200 {
		return nil
	}
	var o struct{ Members []string }
	json.Unmarshal(body, &o)
	return o.Members
}

func publishConfirmed(t *testing.T, ch *amqp.Channel, confirms chan amqp.Confirmation, q, prefix string, n int) {
	t.Helper()
	for i := range n {
		if err := ch.Publish("", q, false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprint(prefix, i))}); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case cf := <-confirms:
			if !cf.Ack {
				t.Fatalf("%s: nack", prefix)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: confirms stopped", prefix)
		}
	}
}

// A member added to a quorum queue catches up and counts in the majority: with the original
// follower dead, leader + new member still commit, and the new member has everything.
func TestCluster_QuorumQueueAddAndDeleteMember(t *testing.T) {
	c := startCluster(t, 3)
	_, ch := channel(t, c, 1)
	if _, err := ch.QueueDeclare("qm", true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-quorum-initial-group-size": 2}); err != nil {
		t.Fatal(err)
	}
	ms := members(t, c, 1, "qm")
	if len(ms) != 2 || ms[0] != c.Node(1).Args.Name {
		t.Fatalf("members %v", ms)
	}
	var b, added int
	for _, nd := range c.Nodes {
		if nd.Args.Name == ms[1] {
			b = nd.Args.Index
		}
	}
	added = 6 - 1 - b
	ch.Confirm(false)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1000))
	publishConfirmed(t, ch, confirms, "qm", "a-", 100)
	if code, body := api(t, c, 2, "POST", "/api/queues/%2F/qm/members", map[string]any{"node": c.Node(added).Args.Name}); code != 204 {
		t.Fatalf("add member: %d %s", code, body)
	}
	eventually(t, 5*time.Second, func() error {
		if m := members(t, c, 3, "qm"); len(m) != 3 {
			return fmt.Errorf("members %v", m)
		}
		return nil
	})
	c.Node(b).Kill()
	publishConfirmed(t, ch, confirms, "qm", "b-", 100) // leader + the new member: 2 of 3
	c.Node(1).Kill()
	if err := c.Node(b).Start(); err != nil {
		t.Fatal(err)
	}
	var nl int
	eventually(t, 20*time.Second, func() error {
		if x := queueLeader(t, c, added, "qm"); x == added || x == b {
			nl = x
			return nil
		}
		return errors.New("no new leader")
	})
	_, ch2 := channel(t, c, nl)
	q, err := ch2.QueueDeclarePassive("qm", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	if err != nil || q.Messages != 200 {
		t.Fatalf("new leader (node %d) holds %d messages (%v), 200 were confirmed", nl, q.Messages, err)
	}
	// Removing the leader's replica is refused; removing another is not.
	if code, _ := api(t, c, nl, "DELETE", "/api/queues/%2F/qm/members/"+c.Node(nl).Args.Name, nil); code != 400 {
		t.Fatalf("delete the leader's member: %d", code)
	}
	if code, body := api(t, c, nl, "DELETE", "/api/queues/%2F/qm/members/"+c.Node(1).Args.Name, nil); code != 204 {
		t.Fatalf("delete member: %d %s", code, body)
	}
	if m := members(t, c, nl, "qm"); len(m) != 2 {
		t.Fatalf("members after delete: %v", m)
	}
}

// Issue 16's rolling restart: every node in turn is drained (its quorum-queue leaderships move
// to in-sync replicas, its clients are sent away), stopped, restarted and revived, while a
// publisher with confirms follows the queue's leader. No confirmed message is lost.
func TestCluster_RollingRestartLosesNothing(t *testing.T) {
	c := startCluster(t, 3)
	_, ch := channel(t, c, 1)
	if _, err := ch.QueueDeclare("rr", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	confirmed := map[string]bool{}
	confirmedBy := map[string]string{}
	var lastConfirm time.Time
	var worstStall time.Duration
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the publisher: to the leader's node, reconnecting when sent away
		defer wg.Done()
		seq := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			l := 0
			for i := 1; i <= 3 && l == 0; i++ {
				if c.Node(i).Running() {
					l = queueLeader(t, c, i, "rr")
				}
			}
			if l == 0 {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			conn, err := amqp.Dial(c.Node(l).URL())
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			pch, _ := conn.Channel()
			pch.Confirm(false)
			confirms := pch.NotifyPublish(make(chan amqp.Confirmation, 64))
			for {
				select {
				case <-stop:
					conn.Close()
					return
				default:
				}
				seq++
				body := fmt.Sprint("m-", seq)
				if err := pch.Publish("", "rr", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(body)}); err != nil {
					break
				}
				cf, ok := <-confirms
				if !ok {
					break
				}
				if cf.Ack {
					mu.Lock()
					now := time.Now()
					if !lastConfirm.IsZero() && now.Sub(lastConfirm) > worstStall {
						worstStall = now.Sub(lastConfirm)
					}
					lastConfirm = now
					confirmed[body] = true
					confirmedBy[body] = fmt.Sprintf("node %d at %s", l, now.Format("15:04:05.000"))
					mu.Unlock()
				}
			}
			conn.Close()
		}
	}()
	time.Sleep(500 * time.Millisecond)
	for i := 1; i <= 3; i++ {
		var other int
		for j := 1; j <= 3; j++ {
			if j != i && c.Node(j).Running() {
				other = j
			}
		}
		code, body := api(t, c, other, "POST", fmt.Sprintf("/api/cluster/nodes/%s/drain", c.Node(i).Args.Name), map[string]any{})
		if code != 200 || !strings.Contains(string(body), `"safe_to_stop":true`) {
			t.Fatalf("drain node %d: %d %s", i, code, body)
		}
		eventually(t, 5*time.Second, func() error {
			if l := queueLeader(t, c, other, "rr"); l == i {
				return fmt.Errorf("node %d still leads after its drain", i)
			}
			return nil
		})
		mu.Lock()
		t.Logf("node %d drained at %d confirmed: %s", i, len(confirmed), body)
		mu.Unlock()
		if err := c.Node(i).Stop(); err != nil {
			t.Fatal(err)
		}
		if err := c.Node(i).Start(); err != nil {
			t.Fatal(err)
		}
		if code, body := api(t, c, i, "POST", fmt.Sprintf("/api/cluster/nodes/%s/revive", c.Node(i).Args.Name), map[string]any{}); code != 200 {
			t.Fatalf("revive node %d: %d %s", i, code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	l := queueLeader(t, c, 1, "rr")
	_, ch2 := channel(t, c, l)
	got := map[string]bool{}
	for {
		d, ok, err := ch2.Get("rr", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got[string(d.Body)] = true
	}
	lost := 0
	var lostSeqs []int
	for b := range confirmed {
		if !got[b] {
			lost++
			var n int
			fmt.Sscanf(b, "m-%d", &n)
			lostSeqs = append(lostSeqs, n)
			t.Logf("lost %s: confirmed by %s", b, confirmedBy[b])
		}
	}
	slices.Sort(lostSeqs)
	if len(lostSeqs) > 0 {
		t.Logf("lost: %v; got %d distinct", lostSeqs, len(got))
	}
	t.Logf("rolling restart of 3 nodes: %d messages confirmed, %d lost, longest pause between confirms %v", len(confirmed), lost, worstStall.Round(time.Millisecond))
	if lost != 0 || len(confirmed) == 0 {
		t.Fatalf("%d of %d confirmed messages lost", lost, len(confirmed))
	}
}

// The queue's leader is also the Raft leader (the controller): its kill -9 needs a new Raft
// leader before the queue can fail over. Followers see the process gone (links broken,
// connections refused) and shorten their election timeout, so this takes about the Raft leader
// lease (0.5 s) plus the failover, not Raft's 1-2 s heartbeat timeout plus the failover.
func TestCluster_QuorumQueueOnRaftLeaderKilled(t *testing.T) {
	c := startCluster(t, 3)
	var rl int
	eventually(t, 10*time.Second, func() error {
		if rl = leader(t, c, 1); rl == 0 {
			return errors.New("no raft leader")
		}
		return nil
	})
	_, ch := channel(t, c, rl)
	if _, err := ch.QueueDeclare("qr", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if l := queueLeader(t, c, rl, "qr"); l != rl {
		t.Fatalf("leader of a queue declared on node %d: %d", rl, l)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 200
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for i := range n {
		if err := ch.Publish("", "qr", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case cf := <-confirms:
			if !cf.Ack {
				t.Fatal("nack before the kill")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("confirms before the kill")
		}
	}
	others := []int{}
	for i := 1; i <= 3; i++ {
		if i != rl {
			others = append(others, i)
		}
	}
	killed := time.Now()
	c.Node(rl).Kill()
	var nl int
	var took time.Duration
	end := time.Now().Add(20 * time.Second)
	for nl == 0 && time.Now().Before(end) {
		for _, i := range others {
			if x := queueLeader(t, c, i, "qr"); x != 0 && x != rl {
				nl, took = x, time.Since(killed)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if nl == 0 {
		t.Fatal("no new queue leader within 20 s")
	}
	_, ch2 := channel(t, c, nl)
	if err := ch2.Confirm(false); err != nil {
		t.Fatal(err)
	}
	c2 := ch2.NotifyPublish(make(chan amqp.Confirmation, 1))
	if err := ch2.Publish("", "qr", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	select {
	case cf := <-c2:
		if !cf.Ack {
			t.Fatal("publish to the new leader nacked")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no confirm from the new leader")
	}
	t.Logf("raft and queue leader node %d killed: node %d leads the queue %v later, first confirm %v after the kill",
		rl, nl, took.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	q, err := ch2.QueueDeclarePassive("qr", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != n+1 {
		t.Fatalf("new leader holds %d messages, %d were confirmed", q.Messages, n+1)
	}
	// Bound: the lease, an election, the failover, with room for a loaded machine. Without the
	// shortened timeout this took 2.1 s here (Raft's 1-2 s heartbeat timeout first).
	if took > 4*time.Second {
		t.Fatalf("failover took %v", took)
	}
}

// A quorum queue's leader node loses its disk while no failover can happen (two of three
// nodes down): it comes back with an empty data folder, still named leader by the placement.
// It must not lead (its followers would take its empty log, or refuse it and the queue would
// stay stuck): the controller sees its new data folder id and moves the leader to a replica
// that holds the log, and every confirmed message is there.
func TestCluster_WipedLeaderHandsItsQueueToAReplicaWithTheLog(t *testing.T) {
	c := startCluster(t, 3)
	_, ch := channel(t, c, 1)
	if _, err := ch.QueueDeclare("qw", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if l := queueLeader(t, c, 1, "qw"); l != 1 {
		t.Fatalf("leader of a queue declared on node 1: %d", l)
	}
	const n = 500
	publishConfirmedTo(t, ch, "qw", n, "")
	// Nodes 2 and 1 die together: node 3 alone has no majority, so nothing moves.
	c.Node(2).Kill()
	c.Node(1).Kill()
	if err := c.Node(1).Wipe(); err != nil {
		t.Fatal(err)
	}
	// Node 1 comes back first, empty; once it is in, node 2 returns and the majority with it.
	started := make(chan error, 1)
	go func() { started <- c.Node(1).Start() }()
	time.Sleep(2 * time.Second)
	if err := c.Node(2).Start(); err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	var nl int
	eventually(t, 30*time.Second, func() error {
		if x := queueLeader(t, c, 3, "qw"); x == 2 || x == 3 {
			nl = x
			return nil
		}
		return errors.New("the wiped node still leads")
	})
	eventually(t, 30*time.Second, func() error {
		q, err := passive(t, c, nl, "qw")
		if err != nil {
			return err
		}
		if q.Messages != n {
			return fmt.Errorf("new leader node %d holds %d messages, %d were confirmed", nl, q.Messages, n)
		}
		return nil
	})
	// The queue works through the wiped node too, and it is a replica again.
	_, ch1 := channel(t, c, 1)
	publishConfirmedTo(t, ch1, "qw", 1, "after-")
	q, err := passive(t, c, 1, "qw")
	if err != nil || q.Messages != n+1 {
		t.Fatalf("through node 1: %d messages (%v), want %d", q.Messages, err, n+1)
	}
}

// Nowait queue.declares from one channel are committed together (pipelined): a method after
// them waits until they are all in, and a failed one closes the channel at that method with
// its own error (queue.declare's 406 here), as a nowait error arrives late on RabbitMQ too.
func TestCluster_NowaitDeclaresArePipelined(t *testing.T) {
	c := startCluster(t, 3)
	conn, ch := channel(t, c, 2)
	const n = 500
	start := time.Now()
	for i := range n {
		if _, err := ch.QueueDeclare(fmt.Sprint("nw-", i), true, false, false, true, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ch.QueueDeclarePassive(fmt.Sprint("nw-", n-1), true, false, false, false, nil); err != nil {
		t.Fatalf("passive declare after the nowait ones: %v", err)
	}
	t.Logf("%d nowait declares through a follower: %v", n, time.Since(start).Round(time.Millisecond))
	_, ch1 := channel(t, c, 1)
	for _, i := range []int{0, n / 2, n - 1} {
		if _, err := ch1.QueueDeclarePassive(fmt.Sprint("nw-", i), true, false, false, false, nil); err != nil {
			t.Fatalf("nw-%d on node 1: %v", i, err)
		}
	}
	// An inequivalent redeclare among nowait ones: the next waiting method closes the channel
	// with the declare's 406.
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ch.QueueDeclare("nw-1", false, false, false, true, nil) // durable before: inequivalent
	ch.QueueDeclare("nw-extra", true, false, false, true, nil)
	_, err := ch.QueueDeclarePassive("nw-0", true, false, false, false, nil)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		select {
		case e := <-closed:
			ae = e
		case <-time.After(5 * time.Second):
		}
	}
	if ae == nil || ae.Code != amqp.PreconditionFailed || !strings.Contains(ae.Reason, "nw-1") {
		t.Fatalf("after an inequivalent nowait declare: %v / %v, want 406 naming nw-1", err, ae)
	}
	if conn.IsClosed() {
		t.Fatal("the connection closed: a channel error was expected")
	}
}
