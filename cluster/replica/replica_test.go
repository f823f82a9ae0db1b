package replica

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

func TestHistory_EndOf(t *testing.T) {
	h := History{{1, 1}, {2, 3}, {5, 7}}
	for _, c := range []struct{ ask, end, wantE, wantEnd uint64 }{
		{0, 10, 0, 0},
		{1, 10, 1, 2},
		{2, 10, 2, 6},
		{3, 10, 2, 6},
		{4, 10, 2, 6},
		{5, 10, 5, 10},
		{9, 10, 5, 10},
		{2, 4, 2, 4}, // the log ends inside epoch 2
	} {
		e, end := h.EndOf(c.ask, c.end)
		if e != c.wantE || end != c.wantEnd {
			t.Errorf("EndOf(%d, %d) = %d, %d; want %d, %d", c.ask, c.end, e, end, c.wantE, c.wantEnd)
		}
	}
	if got := h.TruncateTo(6); !slices.Equal(got, History{{1, 1}, {2, 3}}) {
		t.Errorf("TruncateTo(6) = %v", got)
	}
	if got := h.TruncateTo(7); len(got) != 3 {
		t.Errorf("TruncateTo(7) = %v", got)
	}
	if got := (History{{3, 5}}).Begin(2, 9); len(got) != 1 {
		t.Errorf("an older epoch was added: %v", got)
	}
}

// rec is a record in a simulated log: the epoch that wrote it and a value.
type rec struct {
	epoch uint64
	val   string
}

// node is a simulated replica: its log (offset i+first), its history, what is durable.
type node struct {
	name    string
	first   uint64
	log     []rec
	hist    History
	durable uint64
}

func (n *node) end() uint64 { return n.first + uint64(len(n.log)) - 1 }

func (n *node) at(off uint64) rec { return n.log[off-n.first] }

// cluster drives one leader and its followers over a simulated network.
type sim struct {
	t        *testing.T
	nodes    map[string]*node
	leader   *Leader
	lname    string
	follow   map[string]*Follower
	net      []Msg // in flight
	rnd      *rand.Rand
	drop     float64
	dup      float64
	reorder  bool
	commits  []uint64
	acked    map[uint64]string // offset → value the leader's commit covered
	syncLazy bool              // durability lags behind writes
}

func newNode(name string, vals ...rec) *node {
	return &node{name: name, first: 1, log: vals}
}

func (s *sim) startLeader(name string, epoch uint64, followers ...string) {
	n := s.nodes[name]
	s.lname = name
	s.leader = NewLeader(LeaderConfig{Epoch: epoch, History: n.hist, First: n.first, End: n.end(), Durable: n.durable, Followers: followers, Window: 8, Batch: 3})
	n.hist = s.leader.History()
	s.follow = map[string]*Follower{}
	for _, f := range followers {
		fn := s.nodes[f]
		fl, r := NewFollower(FollowerConfig{Epoch: epoch, Leader: name, History: fn.hist, First: fn.first, End: fn.end(), Durable: fn.durable})
		s.follow[f] = fl
		s.do(f, r)
	}
}

// write appends a value at the leader.
func (s *sim) write(val string) {
	n := s.nodes[s.lname]
	n.log = append(n.log, rec{s.leader.Epoch(), val})
	s.do(s.lname, s.leader.Appended(n.end()))
}

func (s *sim) do(who string, r Ready) {
	n := s.nodes[who]
	if r.Truncate != nil {
		cut := *r.Truncate
		if cut+1 < n.first {
			n.first, n.log = cut+1, nil
		} else {
			n.log = n.log[:cut+1-n.first]
		}
		n.durable = min(n.durable, cut)
		n.hist = n.hist.TruncateTo(cut)
	}
	if r.RebuildAt != 0 {
		n.first, n.log, n.durable, n.hist = r.RebuildAt, nil, r.RebuildAt-1, nil
	}
	if r.Write != nil {
		ld := s.nodes[s.lname]
		if r.Write.From != n.end()+1 {
			s.t.Fatalf("%s: write %v after end %d", who, *r.Write, n.end())
		}
		for o := r.Write.From; o <= r.Write.To; o++ {
			n.log = append(n.log, ld.at(o))
		}
	}
	if f := s.follow[who]; f != nil {
		n.hist = f.History()
	}
	if who == s.lname && r.CommitMoved {
		c := s.leader.Commit()
		ld := s.nodes[s.lname]
		for o := uint64(1); o <= c; o++ {
			if o >= ld.first {
				if v, ok := s.acked[o]; ok && v != ld.at(o).val {
					s.t.Fatalf("committed offset %d changed: %q then %q", o, v, ld.at(o).val)
				}
				s.acked[o] = ld.at(o).val
			}
		}
	}
	for _, m := range r.Msgs {
		from := who
		to := m.Peer
		m.Peer = from
		s.send(to, m)
	}
}

func (s *sim) send(to string, m Msg) {
	if s.rnd.Float64() < s.drop {
		return
	}
	m2 := m
	s.net = append(s.net, Msg{Kind: m2.Kind, Peer: m2.Peer + ">" + to, Epoch: m2.Epoch, LastEpoch: m2.LastEpoch, QEpoch: m2.QEpoch, End: m2.End, From: m2.From, To: m2.To, Commit: m2.Commit, Hist: m2.Hist, Held: m2.Held, Rewind: m2.Rewind})
	if s.rnd.Float64() < s.dup {
		s.net = append(s.net, s.net[len(s.net)-1])
	}
}

// step delivers one message: the oldest, or with reordering the oldest of a random link (links
// are FIFO, as TCP connections are; only different links interleave); false when none.
func (s *sim) step() bool {
	if len(s.net) == 0 {
		return false
	}
	i := 0
	if s.reorder {
		pick := s.net[s.rnd.Intn(len(s.net))].Peer
		for i = 0; s.net[i].Peer != pick; i++ {
		}
	}
	m := s.net[i]
	s.net = append(s.net[:i], s.net[i+1:]...)
	var from, to string
	fmt.Sscanf(replaceGT(m.Peer), "%s %s", &from, &to)
	m.Peer = from
	if to == s.lname {
		s.do(to, s.leader.Step(m))
	} else if f := s.follow[to]; f != nil {
		s.do(to, f.Step(m))
	}
	return true
}

func replaceGT(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == '>' {
			b[i] = ' '
		}
	}
	return string(b)
}

// syncAll makes every node's log durable and tells its state machine.
func (s *sim) syncAll() {
	for name, n := range s.nodes {
		if s.syncLazy && s.rnd.Intn(2) == 0 {
			continue
		}
		n.durable = n.end()
		if name == s.lname {
			s.do(name, s.leader.Durable(n.durable))
		} else if f := s.follow[name]; f != nil {
			s.do(name, f.Durable(n.durable))
		}
	}
}

func (s *sim) settle() {
	for range 100000 {
		s.syncAll()
		if !s.step() {
			s.syncAll()
			if len(s.net) == 0 {
				return
			}
		}
	}
	s.t.Fatal("did not settle")
}

func (s *sim) checkSame() {
	ld := s.nodes[s.lname]
	for name := range s.follow {
		n := s.nodes[name]
		if n.end() != ld.end() {
			for _, p := range s.leader.peers {
				s.t.Logf("peer %+v", *p)
			}
			for n, f := range s.follow {
				s.t.Logf("%s %+v", n, *f)
			}
			s.t.Fatalf("%s ends at %d, leader at %d", name, n.end(), ld.end())
		}
		for o := max(n.first, ld.first); o <= ld.end(); o++ {
			if n.at(o) != ld.at(o) {
				s.t.Fatalf("%s offset %d: %v, leader %v", name, o, n.at(o), ld.at(o))
			}
		}
		if !slices.Equal(n.hist.TruncateTo(ld.end()), ld.hist.TruncateTo(ld.end())) && n.first <= 1 {
			s.t.Fatalf("%s history %v, leader %v", name, n.hist, ld.hist)
		}
	}
}

func newSim(t *testing.T, seed int64, nodes ...*node) *sim {
	s := &sim{t: t, nodes: map[string]*node{}, rnd: rand.New(rand.NewSource(seed)), acked: map[uint64]string{}}
	for _, n := range nodes {
		s.nodes[n.name] = n
	}
	return s
}

func TestReplica_StreamsAndCommitsOnMajority(t *testing.T) {
	s := newSim(t, 1, newNode("a"), newNode("b"), newNode("c"))
	s.startLeader("a", 1, "b", "c")
	s.settle()
	for i := range 20 {
		s.write(fmt.Sprint("m", i))
	}
	if s.leader.Commit() != 0 {
		t.Fatalf("committed before any follower acknowledged: %d", s.leader.Commit())
	}
	// Only the leader durable: nothing commits.
	ld := s.nodes["a"]
	ld.durable = ld.end()
	s.do("a", s.leader.Durable(ld.end()))
	if s.leader.Commit() != 0 {
		t.Fatalf("committed on the leader alone: %d", s.leader.Commit())
	}
	s.settle()
	if s.leader.Commit() != 20 {
		t.Fatalf("commit %d after every replica synced, want 20", s.leader.Commit())
	}
	s.checkSame()
}

func TestReplica_AsyncCommitsOnTheLeaderAlone(t *testing.T) {
	s := newSim(t, 1, newNode("a"), newNode("b"), newNode("c"))
	s.nodes["a"].hist = nil
	n := s.nodes["a"]
	s.lname = "a"
	s.leader = NewLeader(LeaderConfig{Epoch: 1, Followers: []string{"b", "c"}, Async: true})
	n.log = append(n.log, rec{1, "x"})
	s.leader.Appended(1)
	n.durable = 1
	if r := s.leader.Durable(1); !r.CommitMoved || s.leader.Commit() != 1 {
		t.Fatalf("async leader did not commit its durable record: %d", s.leader.Commit())
	}
}

// A deposed leader's unconfirmed tail is cut from its log when it follows the new leader, even
// where it holds more records than the new leader (KIP-101's divergence).
func TestReplica_DeposedLeaderTailIsTruncated(t *testing.T) {
	common := []rec{{1, "x1"}, {1, "x2"}}
	a := newNode("a", append(slices.Clone(common), rec{1, "lost-a3"}, rec{1, "lost-a4"})...)
	a.hist = History{{1, 1}}
	b := newNode("b", slices.Clone(common)...)
	b.hist = History{{1, 1}}
	c := newNode("c", slices.Clone(common)...)
	c.hist = History{{1, 1}}
	s := newSim(t, 2, a, b, c)
	s.startLeader("b", 2, "a", "c")
	s.write("y3")
	s.settle()
	s.checkSame()
	if got := s.nodes["a"].at(3).val; got != "y3" {
		t.Fatalf("a kept its old tail: offset 3 = %q", got)
	}
	if !slices.Equal(s.nodes["a"].hist, History{{1, 1}, {2, 3}}) {
		t.Fatalf("a's history %v", s.nodes["a"].hist)
	}
}

// KIP-279's case: one answer is not enough when the follower kept records of an earlier epoch
// at offsets where the leader has a later one.
func TestReplica_TruncationIterates(t *testing.T) {
	// Leader b: epoch 1 at 1..2, epoch 2 at 3..6, then its own epoch 5.
	b := newNode("b", rec{1, "1"}, rec{1, "2"}, rec{2, "3"}, rec{2, "4"}, rec{2, "5"}, rec{2, "6"})
	b.hist = History{{1, 1}, {2, 3}}
	// Follower a: epoch 1 at 1..4 (records the leader never had at 3..4), epoch 4 at 5..6.
	a := newNode("a", rec{1, "1"}, rec{1, "2"}, rec{1, "a3"}, rec{1, "a4"}, rec{4, "a5"}, rec{4, "a6"})
	a.hist = History{{1, 1}, {4, 5}}
	s := newSim(t, 3, a, b)
	s.startLeader("b", 5, "a")
	s.settle()
	s.checkSame()
	if got := s.nodes["a"].at(3); got != (rec{2, "3"}) {
		t.Fatalf("a offset 3 = %v", got)
	}
}

func TestReplica_FollowerBehindReclaimedIsRebuilt(t *testing.T) {
	var recs []rec
	for i := range 10 {
		recs = append(recs, rec{1, fmt.Sprint(i + 1)})
	}
	b := newNode("b", recs...)
	b.hist = History{{1, 1}}
	b.first, b.log = 6, recs[5:] // reclaimed 1..5
	a := newNode("a", recs[:2]...)
	a.hist = History{{1, 1}}
	s := newSim(t, 4, a, b)
	s.startLeader("b", 2, "a")
	s.settle()
	if s.nodes["a"].first != 6 || s.nodes["a"].end() != 10 {
		t.Fatalf("a after rebuild: first %d end %d", s.nodes["a"].first, s.nodes["a"].end())
	}
	s.write("11")
	s.settle()
	s.checkSame()
	if s.leader.Commit() != 11 {
		t.Fatalf("commit %d", s.leader.Commit())
	}
}

func TestReplica_StaleEpochRefusedAndOldLeaderStepsDown(t *testing.T) {
	l := NewLeader(LeaderConfig{Epoch: 3, Followers: []string{"f"}})
	r := l.Step(Msg{Kind: Ack, Peer: "f", Epoch: 2, Held: 5})
	if len(r.Msgs) != 1 || r.Msgs[0].Kind != Stale || r.Msgs[0].Epoch != 3 {
		t.Fatalf("old-epoch ack: %+v", r)
	}
	if r := l.Step(Msg{Kind: Stale, Peer: "f", Epoch: 4}); !r.StepDown {
		t.Fatalf("a leader that hears of epoch 4 did not step down: %+v", r)
	}
	f, _ := NewFollower(FollowerConfig{Epoch: 4, Leader: "new"})
	r = f.Step(Msg{Kind: Append, Peer: "old", Epoch: 3, From: 1, To: 1})
	if r.Write != nil || len(r.Msgs) != 1 || r.Msgs[0].Kind != Stale {
		t.Fatalf("follower took an old leader's append: %+v", r)
	}
}

// Random runs: lost messages (a broken connection: the driver then restarts the follower's
// session), interleaving between links, lazy fsyncs, a leader change with a divergent tail;
// committed records never change and everyone converges.
func TestReplica_RandomNetworks(t *testing.T) {
	for seed := int64(0); seed < 200; seed++ {
		s := newSim(t, seed, newNode("a"), newNode("b"), newNode("c"))
		s.drop, s.reorder, s.syncLazy = 0.1, seed%2 == 0, true
		s.startLeader("a", 1, "b", "c")
		for i := range 30 {
			s.write(fmt.Sprint("e1-", i))
			for range s.rnd.Intn(3) {
				s.step()
			}
			if s.rnd.Intn(4) == 0 {
				s.syncAll()
			}
		}
		// Lost messages are not retransmitted by the core: a driver restarts the follower
		// session (EpochQuery) when its stream breaks. Do that, then settle without loss.
		s.drop = 0
		s.net = nil
		for name := range s.follow {
			fn := s.nodes[name]
			fl, r := NewFollower(FollowerConfig{Epoch: 1, Leader: "a", History: fn.hist, First: fn.first, End: fn.end(), Durable: fn.durable})
			s.follow[name] = fl
			s.do(name, r)
		}
		s.syncLazy = false
		s.settle()
		s.checkSame()
		c1 := s.leader.Commit()
		// a writes a tail nobody gets, then b takes over at epoch 2 (b holds every committed
		// record: the controller picks the most up-to-date replica).
		for i := range 3 {
			s.nodes["a"].log = append(s.nodes["a"].log, rec{1, fmt.Sprint("tail-", i)})
		}
		s.startLeader("b", 2, "a", "c")
		s.drop = 0.05
		for i := range 20 {
			s.write(fmt.Sprint("e2-", i))
			if s.rnd.Intn(3) == 0 {
				s.syncAll()
			}
			s.step()
		}
		s.drop = 0
		s.net = nil
		for name := range s.follow {
			fn := s.nodes[name]
			fl, r := NewFollower(FollowerConfig{Epoch: 2, Leader: "b", History: fn.hist, First: fn.first, End: fn.end(), Durable: fn.durable})
			s.follow[name] = fl
			s.do(name, r)
		}
		s.settle()
		s.checkSame()
		if s.leader.Commit() < c1 || s.leader.Commit() != s.nodes["b"].end() {
			t.Fatalf("seed %d: commit %d (before %d), end %d", seed, s.leader.Commit(), c1, s.nodes["b"].end())
		}
		for _, n := range s.nodes {
			for _, r := range n.log {
				if len(r.val) > 5 && r.val[:5] == "tail-" {
					t.Fatalf("seed %d: %s kept the deposed leader's tail", seed, n.name)
				}
			}
		}
	}
}

// A lost Append inside a session: the next one leaves a gap, the follower asks for a resend
// after what it holds, and the leader goes back.
func TestReplica_GapIsResent(t *testing.T) {
	s := newSim(t, 5, newNode("a"), newNode("b"))
	s.startLeader("a", 1, "b")
	s.settle()
	s.write("1")
	s.net = nil // that Append is lost
	s.write("2")
	s.settle()
	s.checkSame()
	if s.leader.Commit() != 2 {
		t.Fatalf("commit %d", s.leader.Commit())
	}
}

// The same query twice (a follower that reconnected while its first query was in flight):
// the leader starts over with it, and the follower's answer puts it back to streaming.
func TestReplica_RepeatedQuery(t *testing.T) {
	s := newSim(t, 6, newNode("a"), newNode("b"))
	s.startLeader("a", 1, "b")
	s.settle()
	s.write("1")
	s.settle()
	s.send("a", Msg{Kind: EpochQuery, Peer: "b", Epoch: 1, LastEpoch: 1})
	s.settle()
	s.write("2")
	s.settle()
	s.checkSame()
	if s.leader.Commit() != 2 {
		t.Fatalf("commit %d", s.leader.Commit())
	}
}

func TestReplica_AddedFollowerCountsOnceItReports(t *testing.T) {
	s := newSim(t, 7, newNode("a"), newNode("b"), newNode("c"), newNode("d"))
	s.startLeader("a", 1, "b")
	s.settle()
	for i := range 5 {
		s.write(fmt.Sprint(i))
	}
	s.settle()
	if s.leader.Commit() != 5 {
		t.Fatalf("commit %d", s.leader.Commit())
	}
	// Grow to a, b, c, d: a majority is now 3 of 4.
	s.do("a", s.leader.SetFollowers([]string{"b", "c", "d"}))
	for _, f := range []string{"c", "d"} {
		fn := s.nodes[f]
		fl, r := NewFollower(FollowerConfig{Epoch: 1, Leader: "a", History: fn.hist, First: fn.first, End: fn.end(), Durable: fn.durable})
		s.follow[f] = fl
		s.do(f, r)
	}
	s.write("5")
	// Only the leader and b durable: 2 of 4 is no majority.
	ld := s.nodes["a"]
	ld.durable = ld.end()
	s.do("a", s.leader.Durable(ld.end()))
	if s.leader.Commit() != 5 {
		t.Fatalf("committed on 2 of 4: %d", s.leader.Commit())
	}
	s.settle()
	if s.leader.Commit() != 6 {
		t.Fatalf("commit %d after the new members caught up", s.leader.Commit())
	}
	s.checkSame()
	// Shrink back to a, b: d's state no longer counts.
	s.do("a", s.leader.SetFollowers([]string{"b"}))
	delete(s.follow, "c")
	delete(s.follow, "d")
	s.write("6")
	s.settle()
	if s.leader.Commit() != 7 {
		t.Fatalf("commit %d after the shrink", s.leader.Commit())
	}
}

// A follower that fell silent while replicating (its window full, nothing acknowledged) and
// whose next offsets the leader then reclaimed is rebuilt on the leader's next send, without
// waiting for it to ask again.
func TestReplica_SilentFollowerBehindReclaimedIsRebuiltOnSend(t *testing.T) {
	s := newSim(t, 5, newNode("a"), newNode("b"), newNode("c"))
	s.startLeader("a", 1, "b", "c")
	s.settle()
	fc := s.follow["c"]
	delete(s.follow, "c") // c hears nothing and says nothing
	for i := range 20 {
		s.write(fmt.Sprint("m", i+1))
		s.settle()
	}
	if s.leader.Commit() != 20 {
		t.Fatalf("commit %d with a and b", s.leader.Commit())
	}
	a := s.nodes["a"]
	a.first, a.log = 16, a.log[15:] // 1..15 acked and reclaimed
	s.leader.Reclaimed(16)
	s.follow["c"] = fc
	s.write("m21")
	s.settle()
	s.checkSame()
	if c := s.nodes["c"]; c.first != 16 || c.end() != 21 {
		t.Fatalf("c after rebuild: first %d end %d", c.first, c.end())
	}
}

// Floor: the lowest offset an active follower still needs; inactive ones do not count.
func TestLeader_Floor(t *testing.T) {
	l := NewLeader(LeaderConfig{Epoch: 1, End: 50, Durable: 50, Followers: []string{"b", "c"}})
	all := func(string) bool { return true }
	for _, f := range []string{"b", "c"} {
		l.Step(Msg{Kind: EpochQuery, Peer: f, Epoch: 1})
	}
	l.Step(Msg{Kind: Ack, Peer: "b", Epoch: 1, Held: 40, End: 40, Rewind: true})
	l.Step(Msg{Kind: Ack, Peer: "c", Epoch: 1, Held: 10, End: 10, Rewind: true})
	if f := l.Floor(all); f != 11 {
		t.Fatalf("floor %d, want 11 (c holds up to 10)", f)
	}
	if f := l.Floor(func(n string) bool { return n == "b" }); f != 41 {
		t.Fatalf("floor without c %d, want 41", f)
	}
	if f := l.Floor(func(string) bool { return false }); f != 0 {
		t.Fatalf("floor with no active follower %d, want 0", f)
	}
}

// A leader that lost its disk and leads again at the same epoch (its placement still names
// it) answers that its epoch ends before what the followers hold of it: the followers keep
// their records instead of truncating to its empty log (which would drop committed messages).
func TestReplica_FollowerKeepsRecordsTheLeaderLost(t *testing.T) {
	recs := []rec{{1, "a"}, {1, "b"}, {1, "c"}}
	wiped := newNode("a") // the leader, its data folder wiped
	b := newNode("b", recs...)
	b.hist = History{{1, 1}}
	b.durable = 3
	c := newNode("c", recs...)
	c.hist = History{{1, 1}}
	c.durable = 3
	s := newSim(t, 6, wiped, b, c)
	s.lname = "a"
	s.leader = NewLeader(LeaderConfig{Epoch: 1, Followers: []string{"b", "c"}})
	s.follow = map[string]*Follower{}
	lost := 0
	for _, name := range []string{"b", "c"} {
		fn := s.nodes[name]
		f, r := NewFollower(FollowerConfig{Epoch: 1, Leader: "a", History: fn.hist, First: fn.first, End: fn.end(), Durable: fn.durable})
		s.follow[name] = f
		rd := s.leader.Step(Msg{Kind: r.Msgs[0].Kind, Peer: name, Epoch: r.Msgs[0].Epoch, LastEpoch: r.Msgs[0].LastEpoch})
		for _, m := range rd.Msgs {
			got := f.Step(Msg{Kind: m.Kind, Peer: "a", Epoch: m.Epoch, QEpoch: m.QEpoch, End: m.End})
			if got.Truncate != nil {
				t.Fatalf("%s truncated to %d, to a leader that lost its records", name, *got.Truncate)
			}
			if got.LeaderLostData {
				lost++
			}
		}
	}
	if lost != 2 {
		t.Fatalf("%d followers saw the leader's loss, want 2", lost)
	}
	for _, name := range []string{"b", "c"} {
		if n := s.nodes[name]; n.end() != 3 {
			t.Fatalf("%s holds %d records, want 3", name, n.end())
		}
	}
}
