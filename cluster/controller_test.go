package cluster

import (
	"sync"
	"testing"
	"time"
)

func TestChooseLeader(t *testing.T) {
	p := Placement{Queue: "q", Log: "q", Leader: "a", Replicas: []string{"a", "b", "c"}, Epoch: 3}
	st := func(e, last, end uint64) logStatus { return logStatus{e, last, end} }
	for _, c := range []struct {
		name     string
		statuses map[string]map[string]logStatus
		want     string
		ok       bool
	}{
		{"one answer of three is no majority", map[string]map[string]logStatus{"b": {"q": st(3, 3, 10)}}, "", false},
		{"highest offset", map[string]map[string]logStatus{"b": {"q": st(3, 3, 10)}, "c": {"q": st(3, 3, 12)}}, "c", true},
		{"highest last epoch wins over a longer log", map[string]map[string]logStatus{"b": {"q": st(3, 3, 10)}, "c": {"q": st(3, 2, 50)}}, "b", true},
		{"tie: smallest name", map[string]map[string]logStatus{"b": {"q": st(3, 3, 10)}, "c": {"q": st(3, 3, 10)}}, "b", true},
		{"the old leader's answer does not count", map[string]map[string]logStatus{"a": {"q": st(3, 3, 99)}, "b": {"q": st(3, 3, 10)}}, "", false},
	} {
		got, ok := ChooseLeader(p, c.statuses)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %q %v, want %q %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// fakePlacements is a PlacementStore shared by in-process nodes: Failover applies the new
// roles on every node, as applying the metadata record would.
type fakePlacements struct {
	mu    sync.Mutex
	p     Placement
	nodes map[string]*replNode
	moved chan time.Time
}

func (f *fakePlacements) Placements() []Placement {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []Placement{f.p}
}

func (f *fakePlacements) Failover(p Placement, leader string, epoch uint64) error {
	f.mu.Lock()
	if f.p.Epoch != p.Epoch {
		f.mu.Unlock()
		return nil
	}
	f.p.Leader, f.p.Epoch = leader, epoch
	np := f.p
	f.mu.Unlock()
	var followers []string
	for _, r := range np.Replicas {
		if r != leader {
			followers = append(followers, r)
		}
	}
	for name, n := range f.nodes {
		if name == leader {
			n.rep.Lead(np.Log, epoch, followers, false)
		} else if n.rep != nil {
			n.rep.Follow(np.Log, epoch, leader)
		}
	}
	f.moved <- time.Now()
	return nil
}

func TestController_KilledLeaderReplacedFast(t *testing.T) {
	a := startReplNode(t, "a", 3)
	b := startReplNode(t, "b", 3, a.GossipAddr())
	c := startReplNode(t, "c", 3, a.GossipAddr())
	ns := []*testNode{a.testNode, b.testNode, c.testNode}
	waitFor(t, 10*time.Second, "a metadata leader", func() bool { return leaderOf(ns...) != nil })
	// The queue's leader must not be the metadata leader (its controller acts).
	meta := leaderOf(ns...).Name()
	byName := map[string]*replNode{"a": a, "b": b, "c": c}
	var ql string
	for _, n := range []string{"a", "b", "c"} {
		if n != meta {
			ql = n
			break
		}
	}
	fp := &fakePlacements{p: Placement{VHost: "/", Queue: "q", Log: "q", Leader: ql, Replicas: []string{"a", "b", "c"}, Epoch: 1}, nodes: byName, moved: make(chan time.Time, 4)}
	var followers []string
	for _, n := range []string{"a", "b", "c"} {
		if n != ql {
			followers = append(followers, n)
		}
	}
	lq, _, err := byName[ql].rep.Lead("q", 1, followers, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range followers {
		byName[f].rep.Follow("q", 1, ql)
	}
	var ctls []*Controller
	for _, name := range []string{"a", "b", "c"} {
		n := byName[name]
		ctls = append(ctls, n.NewController(n.rep, fp))
	}
	defer func() {
		for i, c := range ctls {
			if []string{"a", "b", "c"}[i] != ql {
				c.Close()
			}
		}
		for _, n := range byName {
			n.stop()
		}
	}()
	if ok, _ := appendN(t, lq, "m", 100, 5*time.Second); ok != 100 {
		t.Fatalf("%d of 100 committed", ok)
	}
	// "Kill" the queue leader: its process stops listening and its links close.
	dead := byName[ql]
	for i, n := range []string{"a", "b", "c"} {
		if n == ql {
			ctls[i].Close()
		}
	}
	killed := time.Now()
	dead.rep.Close()
	dead.m.Close()
	dead.Close()
	delete(byName, ql)
	select {
	case at := <-fp.moved:
		t.Logf("queue leader %s stopped; new leader %s committed %v later", ql, fp.Placements()[0].Leader, at.Sub(killed).Round(time.Millisecond))
		if at.Sub(killed) > 3*time.Second {
			t.Fatalf("failover took %v", at.Sub(killed))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no failover")
	}
	nl := byName[fp.Placements()[0].Leader]
	// The new leader holds every committed record and takes appends (2 of 3 replicas live).
	l2, wl2, err := nl.rep.Lead("q", 2, nil, false) // already leading: same epoch again is a no-op for the test
	_ = l2
	if err != nil {
		t.Fatal(err)
	}
	if wl2.SyncedOffset() < 100 {
		t.Fatalf("new leader holds %d records, 100 were committed", wl2.SyncedOffset())
	}
}

func TestController_LostDataOnlyWithTwoKnownDifferentIDs(t *testing.T) {
	for _, c := range []struct {
		placed, now string
		want        bool
	}{
		{"", "x", false},  // a placement from before ids were recorded
		{"x", "", false},  // a leader that gossips no id (an older version)
		{"x", "x", false}, // same folder
		{"x", "y", true},  // back with another folder
	} {
		if got := lostData(Placement{LeaderData: c.placed}, Member{DataID: c.now}); got != c.want {
			t.Errorf("placed %q, now %q: %v, want %v", c.placed, c.now, got, c.want)
		}
	}
}
