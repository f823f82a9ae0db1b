package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestCluster_ForwardedChangeDoesNotWaitForCommitTimeout: a follower learns that its
// forwarded change committed from the barrier the leader appends after it, not from the
// leader's next CommitTimeout tick (here 3 s, so waiting for it would show).
func TestCluster_ForwardedChangeDoesNotWaitForCommitTimeout(t *testing.T) {
	var ns []*testNode
	for i := range 3 {
		var join []string
		if i > 0 {
			join = []string{ns[0].GossipAddr()}
		}
		sm := newKV()
		cfg := Config{
			NodeName: fmt.Sprintf("n%d", i), GossipListen: "127.0.0.1:0", RPCListen: "127.0.0.1:0", Join: join, Expect: 3,
			DataDir: t.TempDir(), StateMachine: sm, FastFailureDetection: true,
			HeartbeatTimeout: 500 * time.Millisecond, ProposeTimeout: 10 * time.Second,
			Logger:        zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			commitTimeout: 3 * time.Second,
		}
		n, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		ns = append(ns, &testNode{n, sm, cfg})
	}
	waitFor(t, 15*time.Second, "a leader", func() bool { return leaderOf(ns...) != nil })
	l := leaderOf(ns...)
	f := ns[0]
	if f == l {
		f = ns[1]
	}
	for i := range 5 {
		start := time.Now()
		if _, err := f.Propose(context.Background(), []byte(fmt.Sprintf("k%d=v", i))); err != nil {
			t.Fatal(err)
		}
		// Generous: a loaded machine commits in milliseconds; the timer would take 3-6 s.
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("change %d from a follower took %v: it waited for the commit timeout", i, d)
		}
		if got := f.sm.get(fmt.Sprintf("k%d", i)); got != "v" {
			t.Fatalf("change %d not applied on the follower that sent it", i)
		}
	}
}
