package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

// kv is a test state machine: records "k=v" set keys; "fail:x" returns an error result.
type kv struct {
	mu sync.Mutex
	m  map[string]string
}

func newKV() *kv { return &kv{m: map[string]string{}} }

func (s *kv) Apply(_ uint64, rec []byte) []byte {
	if bytes.HasPrefix(rec, []byte("fail:")) {
		return append([]byte("error:"), rec[5:]...)
	}
	k, v, _ := strings.Cut(string(rec), "=")
	s.mu.Lock()
	s.m[k] = v
	s.mu.Unlock()
	return nil
}

func (s *kv) get(k string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k]
}

func (s *kv) Snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b bytes.Buffer
	for k, v := range s.m {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return b.Bytes(), nil
}

func (s *kv) Restore(snap []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = map[string]string{}
	for _, l := range strings.Split(string(snap), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			s.m[k] = v
		}
	}
	return nil
}

type testNode struct {
	*Node
	sm  *kv
	cfg Config
}

func startBenchNode(b *testing.B, name string, join ...string) *testNode {
	sm := newKV()
	cfg := Config{
		NodeName: name, GossipListen: "127.0.0.1:0", RPCListen: "127.0.0.1:0", Join: join, Expect: 3,
		DataDir: b.TempDir(), StateMachine: sm, FastFailureDetection: true,
	}
	benchOptions(&cfg)
	n, err := Start(cfg)
	if err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	return &testNode{n, sm, cfg}
}

func startTestNode(t *testing.T, name, dir string, key []byte, expect int, join ...string) *testNode {
	t.Helper()
	sm := newKV()
	cfg := Config{
		NodeName: name, GossipListen: "127.0.0.1:0", RPCListen: "127.0.0.1:0", Join: join, Expect: expect,
		Key: key, DataDir: dir, StateMachine: sm, FastFailureDetection: true,
		HeartbeatTimeout: 500 * time.Millisecond, ProposeTimeout: 3 * time.Second,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return &testNode{n, sm, cfg}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(ns ...*testNode) *testNode {
	for _, n := range ns {
		if n.Node != nil && n.IsLeader() {
			return n
		}
	}
	return nil
}

func TestCluster_ThreeNodesAgreeAndForward(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeyLen)
	a := startTestNode(t, "a", t.TempDir(), key, 3)
	b := startTestNode(t, "b", t.TempDir(), key, 3, a.GossipAddr())
	c := startTestNode(t, "c", t.TempDir(), key, 3, b.GossipAddr())
	defer a.Close()
	defer b.Close()
	defer c.Close()
	waitFor(t, 10*time.Second, "a leader", func() bool { return leaderOf(a, b, c) != nil })
	l := leaderOf(a, b, c)
	var f *testNode
	for _, n := range []*testNode{a, b, c} {
		if n != l {
			f = n
			break
		}
	}
	ctx := context.Background()
	// From a follower: forwarded, and applied on the follower before Propose returns.
	if _, err := f.Propose(ctx, []byte("x=1")); err != nil {
		t.Fatal(err)
	}
	if got := f.sm.get("x"); got != "1" {
		t.Fatalf("follower did not apply its own change before the answer: %q", got)
	}
	res, err := f.Propose(ctx, []byte("fail:nope"))
	if err != nil || string(res) != "error:nope" {
		t.Fatalf("result not carried back: %q %v", res, err)
	}
	waitFor(t, 5*time.Second, "every node applied x", func() bool {
		return a.sm.get("x") == "1" && b.sm.get("x") == "1" && c.sm.get("x") == "1"
	})
	st := f.Status()
	if len(st.Voters) != 3 || st.Leader != l.Name() {
		t.Fatalf("status: %+v (leader %s)", st, l.Name())
	}
}

func TestCluster_LeaderKilledNewLeaderTakesChanges(t *testing.T) {
	ns := make([]*testNode, 3)
	ns[0] = startTestNode(t, "n1", t.TempDir(), nil, 3)
	ns[1] = startTestNode(t, "n2", t.TempDir(), nil, 3, ns[0].GossipAddr())
	ns[2] = startTestNode(t, "n3", t.TempDir(), nil, 3, ns[0].GossipAddr())
	defer func() {
		for _, n := range ns {
			if n.Node != nil {
				n.Close()
			}
		}
	}()
	waitFor(t, 10*time.Second, "a leader", func() bool { return leaderOf(ns...) != nil })
	l := leaderOf(ns...)
	if _, err := l.Propose(context.Background(), []byte("before=1")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l.Node = nil
	start := time.Now()
	var rest []*testNode
	for _, n := range ns {
		if n.Node != nil {
			rest = append(rest, n)
		}
	}
	if _, err := rest[0].Propose(context.Background(), []byte("after=1")); err != nil {
		t.Fatalf("no change accepted after the leader stopped: %v", err)
	}
	t.Logf("a change committed %v after the leader stopped", time.Since(start))
	for _, n := range rest {
		waitFor(t, 5*time.Second, "apply", func() bool { return n.sm.get("after") == "1" && n.sm.get("before") == "1" })
	}
}

func TestCluster_MinorityRefusesWithinTimeout(t *testing.T) {
	a := startTestNode(t, "a", t.TempDir(), nil, 3)
	b := startTestNode(t, "b", t.TempDir(), nil, 3, a.GossipAddr())
	c := startTestNode(t, "c", t.TempDir(), nil, 3, a.GossipAddr())
	defer a.Close()
	waitFor(t, 10*time.Second, "a leader", func() bool { return leaderOf(a, b, c) != nil })
	b.Close()
	c.Close()
	start := time.Now()
	_, err := a.Propose(context.Background(), []byte("x=1"))
	if !errors.Is(err, ErrNoQuorum) && !errors.Is(err, ErrUncertain) {
		t.Fatalf("a node alone accepted a change or failed oddly: %v", err)
	}
	if d := time.Since(start); d > a.cfg.ProposeTimeout+2*time.Second {
		t.Fatalf("refusal took %v", d)
	}
}

func TestCluster_WrongKeyCannotJoinOrWrite(t *testing.T) {
	key := bytes.Repeat([]byte{1}, KeyLen)
	a := startTestNode(t, "a", t.TempDir(), key, 1)
	defer a.Close()
	waitFor(t, 10*time.Second, "a leads alone", func() bool { return a.IsLeader() })
	bad := startTestNode(t, "mallory", t.TempDir(), bytes.Repeat([]byte{2}, KeyLen), 0, a.GossipAddr())
	defer bad.Close()
	time.Sleep(2 * time.Second)
	for _, m := range a.Members() {
		if m.Name == "mallory" {
			t.Fatalf("a node with another key joined gossip: %+v", m)
		}
	}
	if st := a.Status(); len(st.Voters)+len(st.NonVoters) != 1 {
		t.Fatalf("raft configuration grew: %+v", st)
	}
	// Straight to the transport: the handshake fails, so no raft or forward stream opens.
	if _, _, err := bad.tr.dial(a.RPCAddr(), KindPropose, time.Second); !errors.Is(err, ErrAuth) {
		t.Fatalf("dial with the wrong key: %v", err)
	}
	// And without any key.
	nokey := &transport{name: "anon"}
	if _, _, err := nokey.dial(a.RPCAddr(), KindRaft, time.Second); !errors.Is(err, ErrAuth) {
		t.Fatalf("dial without a key: %v", err)
	}
}

func TestDataID_KeptAcrossRestartsNewWithANewFolder(t *testing.T) {
	dir := t.TempDir()
	a, err := loadDataID(dir)
	if err != nil || len(a) != 24 {
		t.Fatalf("%q %v", a, err)
	}
	b, err := loadDataID(dir)
	if err != nil || b != a {
		t.Fatalf("second start: %q %v, want %q", b, err, a)
	}
	c, err := loadDataID(t.TempDir())
	if err != nil || c == a {
		t.Fatalf("another folder: %q %v", c, err)
	}
}

// A refused Raft connection is tried again for a while before it fails (see raftDialer), and
// no longer than that; a stopping node gives up at once.
func TestRaftDialer_RefusedIsTriedAgainThenFails(t *testing.T) {
	old := refusedPatience
	refusedPatience = 300 * time.Millisecond
	defer func() { refusedPatience = old }()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nobody listens there now: refused
	tr, err := listenTransport("127.0.0.1:0", "a", nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	d := raftDialer{streamLayer: newStreamLayer(tr, nil), stop: make(chan struct{})}
	start := time.Now()
	if _, err := d.Dial(raft.ServerAddress(addr), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v, want refused", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 2*time.Second {
		t.Fatalf("a refused dial failed after %v, want about 300 ms", took)
	}
	close(d.stop)
	start = time.Now()
	d.Dial(raft.ServerAddress(addr), 5*time.Second)
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Fatalf("a stopping node's dial took %v", took)
	}
}
