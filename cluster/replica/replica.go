// Package replica is the replication state machine of one queue's log, without sockets,
// disks or clocks: the leader and follower sides take events (records appended or made durable
// here, messages from the other side) and return what to do (messages to send, a truncation,
// records to write), so that table tests cover every case (etcd/raft's Step/Ready idea).
//
// The protocol mirrors a queue's write-ahead log, record by record at the same offsets:
//
//   - Every replica keeps its epoch History: the first offset written in each leader epoch.
//   - A follower that starts following a leader of epoch E asks where its last epoch ends in the
//     leader's log (EpochQuery); the leader answers with the largest epoch it has not above the
//     asked one and where that epoch ends (EpochEnd). The follower cuts its log back to the
//     smaller of that end and its own end of that epoch, asks again if it cut into an earlier
//     epoch, and then reports what it holds (Ack). So a deposed leader's unconfirmed tail never
//     comes back (Kafka's leader-epoch truncation, KIP-101 and KIP-279).
//   - The leader sends records in order (Append: from, to, and its commit offset), pipelined
//     up to a window of unacknowledged offsets per follower; a follower reports the offset it
//     holds durably (Ack). A follower that needs what the leader no longer has (reclaimed) is
//     rebuilt (Rebuild: the follower starts a new log at the leader's first offset).
//   - The commit offset is the highest offset that a majority of the replicas (the leader
//     included) hold durably, and it only moves once a record of the leader's own epoch is in
//     that majority (Raft's rule: an older epoch's records are committed by a later one's).
//   - Every message carries the leader's epoch; a replica refuses an older epoch (Stale), and a
//     leader that hears of a newer one steps down.
package replica

import "sort"

// EpochStart is the first offset written in a leader epoch.
type EpochStart struct {
	Epoch uint64
	Start uint64
}

// History is a replica's epochs in ascending order.
type History []EpochStart

// Last returns the latest epoch (0 for none).
func (h History) Last() uint64 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].Epoch
}

// EndOf returns the largest epoch in h that is not above epoch, and the last offset of that
// epoch in a log that ends at end (0, 0 when h has none).
func (h History) EndOf(epoch, end uint64) (uint64, uint64) {
	i := sort.Search(len(h), func(i int) bool { return h[i].Epoch > epoch }) - 1
	if i < 0 {
		return 0, 0
	}
	if i+1 < len(h) {
		return h[i].Epoch, min(h[i+1].Start-1, end)
	}
	return h[i].Epoch, end
}

// Begin records that epoch starts at offset start (its first record), unless it is known.
func (h History) Begin(epoch, start uint64) History {
	if len(h) > 0 && h[len(h)-1].Epoch >= epoch {
		return h
	}
	return append(h, EpochStart{epoch, start})
}

// TruncateTo drops the epochs that start after offset end (the log was cut back to end).
func (h History) TruncateTo(end uint64) History {
	i := len(h)
	for i > 0 && h[i-1].Start > end {
		i--
	}
	return h[:i]
}

// Kind is a message's kind.
type Kind int

const (
	// EpochQuery (follower → leader): where does epoch Epoch end in your log? LastEpoch is
	// the follower's last epoch.
	EpochQuery Kind = iota + 1
	// EpochEnd (leader → follower): epoch QEpoch (the largest not above the asked one) ends at
	// offset End in the leader's log.
	EpochEnd
	// Append (leader → follower): the records at offsets From..To, and the leader's commit.
	Append
	// Ack (follower → leader): the follower holds every record up to Held durably (and with
	// Rewind, its log ends at End: send what follows).
	Ack
	// Rebuild (leader → follower): the follower must start over at offset From (the leader
	// reclaimed what it is missing) and take the live messages from the leader.
	Rebuild
	// Stale (either way): the sender of the refused message is behind: epoch Epoch is current.
	Stale
)

// Msg is one replication message. The driver adds the records of an Append (read from the
// leader's log) and carries the message to its peer.
type Msg struct {
	Kind      Kind
	Peer      string  // the other side: destination of outgoing, source of incoming messages
	Epoch     uint64  // the leader epoch the sender knows
	LastEpoch uint64  // EpochQuery
	QEpoch    uint64  // EpochEnd
	End       uint64  // EpochEnd
	From, To  uint64  // Append, Rebuild (From)
	Commit    uint64  // Append
	Hist      History // Append: the leader's epochs that the records From..To belong to
	Held      uint64  // Ack: held durably
	// Ack after a truncation, a rebuild or a gap (Rewind): the follower's log ends at End, and
	// the leader resends what comes after it.
	Rewind bool
}

// Ready is what a step asks the driver to do, in this order: cut the local log back to
// Truncate (when set), start a new local log at RebuildAt (when set), write the records
// Write.From..Write.To taken from the leader (when set), then send Msgs.
type Ready struct {
	Msgs      []Msg
	Truncate  *uint64
	RebuildAt uint64
	Write     *Span
	// CommitMoved: the commit offset advanced (the leader answers publishers, a follower may
	// drop what the commit made safe).
	CommitMoved bool
	// StepDown: a newer epoch exists; this leader must stop writing and follow.
	StepDown bool
	// LeaderLostData: the leader holds fewer records of its own epoch than this follower, which
	// only a leader that lost its disk can (records are shipped once durable on the leader).
	// The follower keeps its log and takes nothing from that leader.
	LeaderLostData bool
}

// Span is a range of offsets, both ends included.
type Span struct{ From, To uint64 }
