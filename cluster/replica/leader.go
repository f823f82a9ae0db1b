package replica

import "sort"

type peerState int

const (
	probing     peerState = iota // waiting for the follower's Ack after its truncation
	replicating                  // streaming records
)

type peer struct {
	name  string
	state peerState
	match uint64 // held durably by the follower
	next  uint64 // next offset to send
}

// Leader is the leader side of one queue log's replication.
type Leader struct {
	epoch   uint64
	hist    History
	first   uint64 // first offset still in the local log
	end     uint64 // last offset written here
	durable uint64 // last offset durable here
	commit  uint64
	async   bool
	window  uint64 // most offsets sent and not acknowledged, per follower
	batch   uint64 // most offsets per Append
	peers   []*peer
}

// LeaderConfig starts a leader.
type LeaderConfig struct {
	Epoch     uint64
	History   History // the local log's epochs (the new epoch is added)
	First     uint64  // first offset in the local log (1 for a log that reclaimed nothing)
	End       uint64  // last offset in the local log (0 when empty)
	Durable   uint64  // last offset durable locally
	Commit    uint64  // a commit offset known from before (0 if none)
	Followers []string
	// Async commits what is durable here, without waiting for followers (they still get
	// every record).
	Async bool
	// Window bounds the offsets in flight per follower (default 4096); Batch the offsets per
	// Append (default 512).
	Window, Batch uint64
}

// NewLeader returns a leader; its epoch starts at End+1.
func NewLeader(c LeaderConfig) *Leader {
	l := &Leader{epoch: c.Epoch, hist: c.History.TruncateTo(c.End).Begin(c.Epoch, c.End+1), first: max(c.First, 1), end: c.End,
		durable: c.Durable, commit: c.Commit, async: c.Async, window: c.Window, batch: c.Batch}
	if l.window == 0 {
		l.window = 4096
	}
	if l.batch == 0 {
		l.batch = 512
	}
	for _, f := range c.Followers {
		l.peers = append(l.peers, &peer{name: f, next: c.End + 1})
	}
	return l
}

// Epoch is the leader's epoch.
func (l *Leader) Epoch() uint64 { return l.epoch }

// Commit is the commit offset: every record up to it is durable on a majority of replicas.
func (l *Leader) Commit() uint64 { return l.commit }

// History is the leader's epoch history.
func (l *Leader) History() History { return l.hist }

// Appended reports that the local log now ends at end (written, maybe not yet durable): it
// returns the Appends that followers may take now.
func (l *Leader) Appended(end uint64) Ready {
	if end > l.end {
		l.end = end
	}
	var r Ready
	for _, p := range l.peers {
		r.Msgs = l.send(p, r.Msgs)
	}
	return r
}

// Durable reports that the local log is durable up to off.
func (l *Leader) Durable(off uint64) Ready {
	if off > l.durable {
		l.durable = min(off, l.end)
	}
	return Ready{CommitMoved: l.advance()}
}

// Reclaimed reports that the local log no longer has the offsets before first.
func (l *Leader) Reclaimed(first uint64) { l.first = max(l.first, first) }

// Step takes a follower's message.
func (l *Leader) Step(m Msg) Ready {
	if m.Epoch > l.epoch {
		return Ready{StepDown: true}
	}
	p := l.peer(m.Peer)
	if p == nil {
		return Ready{}
	}
	if m.Epoch < l.epoch {
		return Ready{Msgs: []Msg{{Kind: Stale, Peer: p.name, Epoch: l.epoch}}}
	}
	var r Ready
	switch m.Kind {
	case EpochQuery:
		// A follower (re)starting: what it acknowledged before counts no more until it says
		// what it holds after its truncation.
		p.state, p.match, p.next = probing, 0, l.end+1
		e, end := l.hist.EndOf(m.LastEpoch, l.end)
		r.Msgs = append(r.Msgs, Msg{Kind: EpochEnd, Peer: p.name, Epoch: l.epoch, QEpoch: e, End: end})
	case Ack:
		if m.Held > l.end || m.End > l.end {
			// Holds what this leader never wrote: it did not truncate. Make it ask again.
			p.state, p.match = probing, 0
			return Ready{Msgs: []Msg{{Kind: Stale, Peer: p.name, Epoch: l.epoch}}}
		}
		if m.Rewind {
			if p.state == probing {
				p.match = m.Held
			} else {
				p.match = max(p.match, m.Held) // a late repeat never lowers what was held
			}
			p.state, p.next = replicating, m.End+1
			if p.next < l.first {
				// What it needs was reclaimed here: it starts over at our first offset.
				p.match, p.next = l.first-1, l.first
				r.Msgs = append(r.Msgs, Msg{Kind: Rebuild, Peer: p.name, Epoch: l.epoch, From: l.first})
			}
		} else if p.state == replicating && m.Held > p.match {
			p.match = m.Held
		}
		r.CommitMoved = l.advance()
		r.Msgs = l.send(p, r.Msgs)
	}
	return r
}

func (l *Leader) peer(name string) *peer {
	for _, p := range l.peers {
		if p.name == name {
			return p
		}
	}
	return nil
}

// send appends the Appends p may take now: from p.next, within the window, in batches.
func (l *Leader) send(p *peer, out []Msg) []Msg {
	if p.state != replicating {
		return out
	}
	if p.next < l.first {
		// What it needs next was reclaimed here (acked and compacted while it lagged): it
		// starts over at our first offset.
		p.match, p.next = max(p.match, l.first-1), l.first
		out = append(out, Msg{Kind: Rebuild, Peer: p.name, Epoch: l.epoch, From: l.first})
	}
	for p.next <= l.end && p.next <= p.match+l.window {
		to := min(l.end, p.next+l.batch-1, p.match+l.window)
		out = append(out, Msg{Kind: Append, Peer: p.name, Epoch: l.epoch, From: p.next, To: to,
			Commit: l.commit, Hist: l.histFor(p.next, to)})
		p.next = to + 1
	}
	return out
}

// histFor returns the epochs that offsets from..to belong to.
func (l *Leader) histFor(from, to uint64) History {
	var h History
	for i, e := range l.hist {
		if e.Start > to {
			break
		}
		if i+1 < len(l.hist) && l.hist[i+1].Start <= from {
			continue
		}
		h = append(h, e)
	}
	return h
}

// advance moves the commit offset to what a majority holds durably, once that includes a
// record of this leader's epoch.
func (l *Leader) advance() bool {
	c := l.durable
	if !l.async {
		held := make([]uint64, 0, len(l.peers)+1)
		held = append(held, l.durable)
		for _, p := range l.peers {
			held = append(held, p.match)
		}
		sort.Slice(held, func(i, j int) bool { return held[i] > held[j] })
		c = held[len(held)/2]
		if start := l.hist[len(l.hist)-1].Start; c < start {
			return false // nothing of our epoch is on a majority yet
		}
	}
	if c > l.commit {
		l.commit = c
		return true
	}
	return false
}

// SetFollowers changes the replica set to this leader plus followers (one member added or
// removed at a time keeps every majority of the old set overlapping every majority of the new
// one). A new follower counts in the majority from now on, holding nothing until it reports;
// a removed one no longer counts.
func (l *Leader) SetFollowers(followers []string) Ready {
	var keep []*peer
	for _, f := range followers {
		if p := l.peer(f); p != nil {
			keep = append(keep, p)
		} else {
			keep = append(keep, &peer{name: f, next: l.end + 1})
		}
	}
	l.peers = keep
	return Ready{CommitMoved: l.advance()}
}

// Match is what a follower holds durably as far as this leader knows (0 for a stranger).
func (l *Leader) Match(follower string) uint64 {
	if p := l.peer(follower); p != nil {
		return p.match
	}
	return 0
}

// Followers names the followers.
func (l *Leader) Followers() []string {
	out := make([]string, len(l.peers))
	for i, p := range l.peers {
		out[i] = p.name
	}
	return out
}

// Floor is the lowest offset that a follower active reports as counting still needs (its
// match + 1): the leader keeps its log from there, so that a follower lagging a little takes
// the records instead of being rebuilt. 0 when no such follower needs anything.
func (l *Leader) Floor(active func(follower string) bool) uint64 {
	var f uint64
	for _, p := range l.peers {
		if !active(p.name) {
			continue
		}
		if need := p.match + 1; f == 0 || need < f {
			f = need
		}
	}
	return f
}
