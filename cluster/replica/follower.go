package replica

type followerState int

const (
	querying  followerState = iota // truncating: waiting for EpochEnd
	following                      // taking Appends
)

// Follower is the follower side of one queue log's replication.
type Follower struct {
	epoch   uint64 // the leader's epoch
	leader  string
	hist    History
	first   uint64
	end     uint64
	durable uint64
	commit  uint64
	state   followerState
}

// FollowerConfig starts a follower of a leader.
type FollowerConfig struct {
	Epoch   uint64 // the leader's epoch (from the placement)
	Leader  string
	History History
	First   uint64
	End     uint64
	Durable uint64
}

// NewFollower returns a follower and its first message: the EpochQuery that starts the
// truncation.
func NewFollower(c FollowerConfig) (*Follower, Ready) {
	f := &Follower{epoch: c.Epoch, leader: c.Leader, hist: c.History.TruncateTo(c.End), first: max(c.First, 1),
		end: c.End, durable: min(c.Durable, c.End)}
	return f, Ready{Msgs: []Msg{f.query()}}
}

func (f *Follower) query() Msg {
	f.state = querying
	return Msg{Kind: EpochQuery, Peer: f.leader, Epoch: f.epoch, LastEpoch: f.hist.Last()}
}

// History is the follower's epoch history (to persist with its log).
func (f *Follower) History() History { return f.hist }

// End is the last offset the follower holds (written).
func (f *Follower) End() uint64 { return f.end }

// Commit is the leader's commit offset as far as the follower knows it.
func (f *Follower) Commit() uint64 { return f.commit }

// Durable reports that the local log is durable up to off; the leader hears of it.
func (f *Follower) Durable(off uint64) Ready {
	if off <= f.durable || f.state != following {
		return Ready{}
	}
	f.durable = min(off, f.end)
	return Ready{Msgs: []Msg{{Kind: Ack, Peer: f.leader, Epoch: f.epoch, Held: f.durable}}}
}

// Step takes the leader's message.
func (f *Follower) Step(m Msg) Ready {
	if m.Epoch < f.epoch {
		return Ready{Msgs: []Msg{{Kind: Stale, Peer: m.Peer, Epoch: f.epoch}}}
	}
	if m.Epoch > f.epoch || m.Peer != f.leader {
		// A newer leader: the placement will say so and the driver starts a new follower.
		return Ready{}
	}
	var r Ready
	switch m.Kind {
	case Stale:
		r.Msgs = append(r.Msgs, f.query())
	case EpochEnd:
		if f.state != querying {
			// An answer to a query this session already settled (a repeated query made the
			// leader start over with us): say again where we stand.
			r.Msgs = append(r.Msgs, Msg{Kind: Ack, Peer: f.leader, Epoch: f.epoch, Held: f.durable, End: f.end, Rewind: true})
			return r
		}
		if m.QEpoch == m.Epoch && f.hist.Last() == m.Epoch && m.End < f.end {
			// The leader says its own epoch ends before records of that epoch we hold: it
			// wrote them and lost them (a wiped or damaged disk). Truncating to it would throw
			// away committed records; keep them and stay out of its way.
			return Ready{LeaderLostData: true}
		}
		_, mine := f.hist.EndOf(m.QEpoch, f.end)
		cut := min(m.End, mine)
		if cut < f.end {
			f.end, f.durable = cut, min(f.durable, cut)
			f.hist = f.hist.TruncateTo(cut)
			r.Truncate = &cut
		}
		if f.hist.Last() > m.QEpoch {
			// Cannot happen: every epoch left starts at or before cut, and EndOf took the
			// largest epoch not above QEpoch. Ask again rather than trust it.
			r.Msgs = append(r.Msgs, f.query())
			return r
		}
		if f.hist.Last() != m.QEpoch {
			// We kept records of an earlier epoch than the leader's answer: they may differ
			// from the leader's at the same offsets. Ask where that epoch ends.
			if f.hist.Last() != 0 || f.end > 0 {
				r.Msgs = append(r.Msgs, f.query())
				return r
			}
		}
		f.state = following
		r.Msgs = append(r.Msgs, Msg{Kind: Ack, Peer: f.leader, Epoch: f.epoch, Held: f.durable, End: f.end, Rewind: true})
	case Rebuild:
		f.first, f.end, f.durable, f.hist = m.From, m.From-1, m.From-1, nil
		f.state = following
		r.RebuildAt = m.From
		r.Msgs = append(r.Msgs, Msg{Kind: Ack, Peer: f.leader, Epoch: f.epoch, Held: m.From - 1, End: m.From - 1, Rewind: true})
	case Append:
		if f.state != following || m.To <= f.end {
			return r // duplicate, or not yet truncated
		}
		if m.From > f.end+1 {
			// A gap (an Append was lost): make the leader resend after what we hold.
			r.Msgs = append(r.Msgs, Msg{Kind: Ack, Peer: f.leader, Epoch: f.epoch, Held: f.durable, End: f.end, Rewind: true})
			return r
		}
		from := f.end + 1
		for _, e := range m.Hist {
			f.hist = f.hist.Begin(e.Epoch, max(e.Start, from))
		}
		f.end = m.To
		r.Write = &Span{from, m.To}
		if c := min(m.Commit, f.end); c > f.commit {
			f.commit, r.CommitMoved = c, true
		}
	}
	return r
}
