package cluster

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenmq/warren/cluster/replica"
	"github.com/warrenmq/warren/wal"
)

// replNode is a test node with a queue-log manager and its replication.
type replNode struct {
	*testNode
	m   *wal.Manager
	rep *Replication
}

func startReplNode(t *testing.T, name string, expect int, join ...string) *replNode {
	t.Helper()
	return startReplNodeSeg(t, name, 0, expect, join...)
}

// startReplNodeSeg starts a replication test node whose queue logs have segments of seg bytes
// (0: the default).
func startReplNodeSeg(t *testing.T, name string, seg, expect int, join ...string) *replNode {
	t.Helper()
	return withReplication(t, startTestNode(t, name, t.TempDir(), nil, expect, join...), seg)
}

// withReplication gives a test node a queue-log manager (segments of seg bytes, 0: the
// default) wired to its replication.
func withReplication(tb testing.TB, tn *testNode, seg int) *replNode {
	tb.Helper()
	rn := &replNode{testNode: tn}
	var mu sync.Mutex
	m, err := wal.Open(wal.Config{Dir: tb.TempDir(), SegmentSize: seg, OnAppend: func(n string, rec wal.Record) {
		mu.Lock()
		r := rn.rep
		mu.Unlock()
		if r != nil {
			r.OnAppend(n, rec)
		}
	}})
	if err != nil {
		tb.Fatal(err)
	}
	rep, err := tn.NewReplication(m)
	if err != nil {
		tb.Fatal(err)
	}
	mu.Lock()
	rn.m, rn.rep = m, rep
	mu.Unlock()
	return rn
}

func (rn *replNode) stop() {
	rn.rep.Close()
	rn.m.Close()
	rn.Close()
}

// appendN appends n records through the leader's log and waits for every answer.
func appendN(t *testing.T, l *ReplicatedLog, prefix string, n int, wait time.Duration) (ok, failed int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(n)
	for i := range n {
		l.Append([]byte(fmt.Sprintf("%s-%d", prefix, i)), func(_ uint64, err error) {
			mu.Lock()
			if err == nil {
				ok++
			} else {
				failed++
			}
			mu.Unlock()
			wg.Done()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
	}
	mu.Lock()
	defer mu.Unlock()
	return ok, failed
}

// leadAndFollow makes leader lead log at epoch with followers, and each of them follow it.
func leadAndFollow(t *testing.T, leader *replNode, log string, epoch uint64, async bool, followers ...*replNode) (*ReplicatedLog, *wal.Log) {
	t.Helper()
	names := make([]string, len(followers))
	for i, f := range followers {
		names[i] = f.Name()
	}
	l, wl, err := leader.rep.Lead(log, epoch, names, async)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range followers {
		if err := f.rep.Follow(log, epoch, leader.Name()); err != nil {
			t.Fatal(err)
		}
	}
	return l, wl
}

// sameLog checks that b's log holds exactly a's records (kinds, offsets, bodies).
func sameQueueLog(t *testing.T, a, b *wal.Log) {
	t.Helper()
	ra, err := a.ReadRaw(a.FirstOffset(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.ReadRaw(b.FirstOffset(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(ra) != len(rb) {
		t.Fatalf("%d records, follower %d", len(ra), len(rb))
	}
	for i := range ra {
		if ra[i].Offset != rb[i].Offset || ra[i].Kind != rb[i].Kind || !bytes.Equal(ra[i].Body, rb[i].Body) {
			t.Fatalf("record %d differs: %+v vs %+v", i, ra[i], rb[i])
		}
	}
}

func waitMembers(t *testing.T, n *replNode, k int) {
	waitFor(t, 10*time.Second, "members", func() bool {
		c := 0
		for _, m := range n.Members() {
			if m.Status == "alive" && m.RPC != "" {
				c++
			}
		}
		return c >= k
	})
}

func TestReplication_MajorityCommitFailoverAndTruncation(t *testing.T) {
	a := startReplNode(t, "a", 1)
	b := startReplNode(t, "b", 0, a.GossipAddr())
	c := startReplNode(t, "c", 0, a.GossipAddr())
	defer a.stop()
	waitMembers(t, a, 3)
	waitMembers(t, b, 3)
	waitMembers(t, c, 3)

	la, wla := leadAndFollow(t, a, "q", 1, false, b, c)
	if ok, _ := appendN(t, la, "e1", 1000, 10*time.Second); ok != 1000 {
		t.Fatalf("%d of 1000 appends committed", ok)
	}
	wla.Retire(1, 2, 3) // a retire record replicates like any other
	if ok, _ := appendN(t, la, "e1b", 1, 5*time.Second); ok != 1 {
		t.Fatal("append after a retire not committed")
	}
	wlb, _ := b.m.Log("q")
	wlc, _ := c.m.Log("q")
	waitFor(t, 5*time.Second, "followers hold everything", func() bool {
		return wlb.SyncedOffset() == wla.SyncedOffset() && wlc.SyncedOffset() == wla.SyncedOffset()
	})
	sameQueueLog(t, wla, wlb)
	sameQueueLog(t, wla, wlc)

	// c stops following: a and b are a majority, appends still commit.
	c.rep.Stop("q", false)
	if ok, _ := appendN(t, la, "e1c", 100, 10*time.Second); ok != 100 {
		t.Fatalf("with one follower gone: %d of 100 committed", ok)
	}
	// b stops too: nothing commits (a alone is no majority), but a writes the records: the
	// tail that a new leader must not keep.
	b.rep.Stop("q", false)
	if ok, failed := appendN(t, la, "lost", 5, time.Second); ok != 0 || failed != 0 {
		t.Fatalf("without a majority: %d committed, %d failed", ok, failed)
	}
	tail := wla.SyncedOffset()

	// b leads epoch 2 (it holds every committed record); a and c follow it. a must cut its
	// tail, c catches up.
	lb, wlb2 := leadAndFollow(t, b, "q", 2, false, a, c)
	if ok, _ := appendN(t, lb, "e2", 200, 10*time.Second); ok != 200 {
		t.Fatalf("new leader: %d of 200 committed", ok)
	}
	wla2, _ := a.m.Log("q")
	wlc2, _ := c.m.Log("q")
	waitFor(t, 10*time.Second, "followers of the new leader hold everything", func() bool {
		return wla2.SyncedOffset() == wlb2.SyncedOffset() && wlc2.SyncedOffset() == wlb2.SyncedOffset()
	})
	sameQueueLog(t, wlb2, wla2)
	sameQueueLog(t, wlb2, wlc2)
	recs, _ := wla2.ReadRaw(wla2.FirstOffset(), 1<<20)
	for _, r := range recs {
		if bytes.HasPrefix(r.Body, []byte("lost-")) {
			t.Fatalf("the deposed leader kept its uncommitted record %q (its log ended at %d)", r.Body, tail)
		}
	}
	// The old leader's log object answers no more appends.
	if ok, failed := appendN(t, la, "zombie", 1, 2*time.Second); ok != 0 || failed != 1 {
		t.Fatalf("deposed leader: %d committed, %d failed", ok, failed)
	}
	time.Sleep(100 * time.Millisecond)
	sameQueueLog(t, wlb2, wla2) // and it wrote nothing into the log it follows
	b.stop()
	c.stop()
}

// BenchmarkReplicatedAppend: 1 KiB records through a 3-replica log on loopback, 256 in flight
// (a publisher's confirm window), each answered once a majority holds it durably.
func BenchmarkReplicatedAppend(b *testing.B) {
	for _, mode := range []string{"sync", "async"} {
		b.Run("mode="+mode, func(b *testing.B) {
			ns := make([]*replNode, 3)
			for i := range ns {
				var join []string
				if i > 0 {
					join = []string{ns[0].GossipAddr()}
				}
				ns[i] = startReplBench(b, fmt.Sprintf("r%d", i), join...)
			}
			defer func() {
				for _, n := range ns {
					n.stop()
				}
			}()
			for {
				c := 0
				for _, m := range ns[0].Members() {
					if m.RPC != "" && m.Status == "alive" {
						c++
					}
				}
				if c == 3 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			l, _, err := ns[0].rep.Lead("q", 1, []string{"r1", "r2"}, mode == "async")
			if err != nil {
				b.Fatal(err)
			}
			ns[1].rep.Follow("q", 1, "r0")
			ns[2].rep.Follow("q", 1, "r0")
			payload := make([]byte, 1024)
			sem := make(chan struct{}, 256)
			b.SetBytes(1024)
			b.ResetTimer()
			for b.Loop() {
				sem <- struct{}{}
				l.Append(payload, func(uint64, error) { <-sem })
			}
			for range 256 {
				sem <- struct{}{}
			}
		})
	}
}

func startReplBench(b *testing.B, name string, join ...string) *replNode {
	return withReplication(b, startBenchNode(b, name, join...), 0)
}

// A worker pass that runs while OnAppend is halfway (the offset noted, the log not yet marked,
// or the other way round) must not leave the record unstreamed: each append here is the last
// of its burst, so nothing later would carry it, and it must commit at once (not after a
// follower's 2 s re-probe, nor never, as happened when the mark came first).
func TestReplication_WorkerPassInsideOnAppend(t *testing.T) {
	a := startReplNode(t, "a", 1)
	b := startReplNode(t, "b", 0, a.GossipAddr())
	c := startReplNode(t, "c", 0, a.GossipAddr())
	defer a.stop()
	defer b.stop()
	defer c.stop()
	waitMembers(t, a, 3)
	la, _ := leadAndFollow(t, a, "q", 1, false, b, c)
	if ok, _ := appendN(t, la, "warm", 1, 10*time.Second); ok != 1 {
		t.Fatal("first append not committed")
	}
	var pmu sync.Mutex
	passes := map[*Replication]chan struct{}{}
	passCh := func(r *Replication) chan struct{} {
		pmu.Lock()
		defer pmu.Unlock()
		if passes[r] == nil {
			passes[r] = make(chan struct{}, 1)
		}
		return passes[r]
	}
	workPass := func(r *Replication) {
		select {
		case passCh(r) <- struct{}{}:
		default:
		}
	}
	onAppend := func(r *Replication) {
		ch := passCh(r)
		select {
		case <-ch:
		default:
		}
		select {
		case r.kick <- struct{}{}:
		default:
		}
		// Up to two passes: one that may have been running, and the one the kick started.
		for range 2 {
			select {
			case <-ch:
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	testHookWorkPass.Store(&workPass)
	testHookOnAppend.Store(&onAppend)
	defer func() { testHookOnAppend.Store(nil); testHookWorkPass.Store(nil) }()
	for i := range 10 {
		if ok, _ := appendN(t, la, fmt.Sprint("lone-", i), 1, 1500*time.Millisecond); ok != 1 {
			t.Fatalf("append %d, the last of its burst, not committed within 1.5 s", i)
		}
	}
}

// A follower that was away while the leader's consumers acked and the leader reclaimed the
// records it would need next is rebuilt from the leader's first offset (before, the leader,
// unaware of its own reclamation, tried to send records it no longer had, failed to read them,
// and the follower never caught up).
func TestReplication_FollowerBehindReclaimedCatchesUp(t *testing.T) {
	a := startReplNodeSeg(t, "a", 4096, 1)
	b := startReplNodeSeg(t, "b", 4096, 0, a.GossipAddr())
	c := startReplNodeSeg(t, "c", 4096, 0, a.GossipAddr())
	defer a.stop()
	defer b.stop()
	defer c.stop()
	waitMembers(t, a, 3)
	la, wla := leadAndFollow(t, a, "q", 1, false, b, c)
	if ok, _ := appendN(t, la, "before", 10, 10*time.Second); ok != 10 {
		t.Fatal("appends before the gap")
	}
	a.rep.keepFor.Store(int64(500 * time.Millisecond)) // c, silent from now on, soon stops holding a's log back
	c.rep.Stop("q", false)
	pad := strings.Repeat("x", 200)
	if ok, _ := appendN(t, la, "gap"+pad, 400, 20*time.Second); ok != 400 {
		t.Fatalf("%d of 400 appends committed with a and b", ok)
	}
	var offs []uint64
	for o := wla.FirstOffset(); o <= wla.SyncedOffset(); o++ {
		offs = append(offs, o)
	}
	la.Retire(offs...)
	waitFor(t, 10*time.Second, "the leader reclaims its acked records", func() bool {
		appendN(t, la, "push", 1, 5*time.Second) // commits drive reclamation
		return wla.FirstOffset() > 20
	})
	if err := c.rep.Follow("q", 1, "a"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := appendN(t, la, "after", 5, 10*time.Second); ok != 5 {
		t.Fatal("appends after the follower came back")
	}
	// The follower's current log, as its replication holds it (wal.Manager.Log would create one
	// of that name while the follower removes and rebuilds it).
	current := func() *wal.Log {
		c.rep.mu.Lock()
		rl := c.rep.logs["q"]
		c.rep.mu.Unlock()
		rl.mu.Lock()
		defer rl.mu.Unlock()
		return rl.wl
	}
	var wlc *wal.Log
	waitFor(t, 10*time.Second, "the returning follower holds what the leader holds", func() bool {
		wlc = current()
		return wlc.SyncedOffset() == wla.SyncedOffset()
	})
	if wlc.FirstOffset() < wla.FirstOffset() {
		t.Logf("follower first %d, leader first %d", wlc.FirstOffset(), wla.FirstOffset())
	}
	sameQueueLog(t, wla, wlc)
}

// The wal's commit goroutine reports durable records through OnAppend; it must never wait for a
// replicated log's lock, which is held while a follower's log is removed and rebuilt (and
// wal.Manager.Remove waits for that goroutine). Here the lock is held while a write to the same
// log must become durable: before, OnAppend took the lock and the two waited on each other.
func TestReplication_OnAppendNeverWaitsForTheLogLock(t *testing.T) {
	a := startReplNode(t, "a", 1)
	defer a.stop()
	if _, _, err := a.rep.Lead("q", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	a.rep.mu.Lock()
	rl := a.rep.logs["q"]
	a.rep.mu.Unlock()
	rl.mu.Lock()
	done := make(chan error, 1)
	go func() {
		rl.wl.Append([]byte("x"), nil)
		done <- rl.wl.Sync()
	}()
	select {
	case err := <-done:
		rl.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		rl.mu.Unlock()
		t.Fatal("a write did not become durable while the replicated log's lock was held")
	}
}

// TestReplication_StatusClaimsOnlyEpochsItHoldsDurably: a follower saves a new epoch before
// that epoch's records are durable; killed in between, it restarts with a history naming an
// epoch it holds nothing of. Its status (what the controller compares to pick a new leader)
// must give the epoch of its last durable record, or it would beat a replica that holds more
// committed records of the older epoch, and the followers would cut those to match it.
func TestReplication_StatusClaimsOnlyEpochsItHoldsDurably(t *testing.T) {
	a := startReplNode(t, "a", 1)
	defer a.stop()
	waitMembers(t, a, 1)
	l, _, err := a.rep.Lead("q", 3, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := appendN(t, l, "m", 10, 10*time.Second); ok != 10 {
		t.Fatalf("%d of 10 appends answered", ok)
	}
	if _, last, end, _ := a.rep.Status("q"); last != 3 || end != 10 {
		t.Fatalf("status: last epoch %d, end %d; want 3, 10", last, end)
	}
	// As a crash would leave it: epoch 4 saved as starting at 11, nothing of it written; the
	// node restarts (the log is opened again).
	a.rep.mu.Lock()
	delete(a.rep.logs, "q")
	a.rep.mu.Unlock()
	if err := a.rep.saveHistory("q", replica.History{{Epoch: 3, Start: 1}, {Epoch: 4, Start: 11}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.rep.open("q"); err != nil {
		t.Fatal(err)
	}
	if _, last, end, _ := a.rep.Status("q"); last != 3 || end != 10 {
		t.Fatalf("status after restart: last epoch %d, end %d; want 3, 10 (it holds nothing of epoch 4)", last, end)
	}
	// Leading again at epoch 5: the history must not keep the empty epoch 4 either (an
	// EpochQuery for epoch 4 would be answered with a range holding no epoch-4 record).
	if _, _, err := a.rep.Lead("q", 5, nil, false); err != nil {
		t.Fatal(err)
	}
	a.rep.mu.Lock()
	rl := a.rep.logs["q"]
	a.rep.mu.Unlock()
	rl.mu.Lock()
	h := rl.hist
	rl.mu.Unlock()
	if want := (replica.History{{Epoch: 3, Start: 1}, {Epoch: 5, Start: 11}}); !slicesEqual(h, want) {
		t.Fatalf("history when leading again: %v, want %v", h, want)
	}
}

// A leader that handed its log over (PrepareTransfer, then the move) and is made leader again
// later takes appends: the transfer's stop ended with that leadership. Moving a quorum queue's
// leader away and back (warrenctl queues transfer-leader) nacked every publish after.
func TestReplication_LeaderAgainAfterATransferTakesAppends(t *testing.T) {
	a := startReplNode(t, "a", 1)
	defer a.stop()
	b := startReplNode(t, "b", 0, a.GossipAddr())
	defer b.stop()
	waitMembers(t, a, 2)
	waitMembers(t, b, 2)
	l, _ := leadAndFollow(t, a, "q", 1, false, b)
	if ok, _ := appendN(t, l, "e1", 5, 10*time.Second); ok != 5 {
		t.Fatalf("epoch 1: %d of 5 appends answered", ok)
	}
	if _, err := a.rep.PrepareTransfer("q", b.Name(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	lb, _ := leadAndFollow(t, b, "q", 2, false, a)
	if ok, _ := appendN(t, lb, "e2", 5, 10*time.Second); ok != 5 {
		t.Fatalf("epoch 2: %d of 5 appends answered", ok)
	}
	l3, _ := leadAndFollow(t, a, "q", 3, false, b)
	if ok, failed := appendN(t, l3, "e3", 5, 10*time.Second); ok != 5 {
		t.Fatalf("epoch 3, led by a again: %d of 5 appends answered, %d failed", ok, failed)
	}
}

// An async leader confirms what is durable here without waiting for the followers, but only
// while a majority of the replicas answered within the lease: one cut off from its followers
// (maybe already replaced) holds its answers instead of confirming what it may lose.
func TestReplication_AsyncLeaderWithoutItsFollowersHoldsConfirms(t *testing.T) {
	old := asyncLease
	asyncLease = 300 * time.Millisecond
	defer func() { asyncLease = old }()
	a := startReplNode(t, "a", 1)
	b := startReplNode(t, "b", 0, a.GossipAddr())
	c := startReplNode(t, "c", 0, a.GossipAddr())
	defer a.stop()
	waitMembers(t, a, 3)
	la, _ := leadAndFollow(t, a, "qa", 1, true, b, c)
	if ok, _ := appendN(t, la, "with", 50, 10*time.Second); ok != 50 {
		t.Fatalf("%d of 50 async appends answered with the followers there", ok)
	}
	b.stop()
	c.stop()
	time.Sleep(2 * asyncLease)
	if ok, failed := appendN(t, la, "alone", 5, time.Second); ok != 0 {
		t.Fatalf("an async leader without its followers confirmed %d appends (%d failed)", ok, failed)
	}
}
