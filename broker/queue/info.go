package queue

// Read-only accessors for management and metrics. Each takes q.mu briefly and copies.

// Info is a point-in-time view of a queue's state.
type Info struct {
	Ready         int    // messages ready for delivery, in memory and paged out
	Unacked       int    // delivered, awaiting ack
	Consumers     int    // attached consumers
	ReadyBytes    int64  // body bytes of ready messages, in memory and paged out
	PagedOut      int    // ready messages waiting in the spill on disk (counted in Ready)
	PagedOutBytes int64  // their body bytes (counted in ReadyBytes)
	Memory        int64  // estimated bytes of the ready messages held in memory
	SpillLost     uint64 // messages that could not be read back from the spill (ever)
	Deleted       bool
}

// Info returns the queue's counts under one lock.
func (q *Queue) Info() Info {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Info{
		Ready: q.ready.Len() + q.spill.count, Unacked: q.unacked, Consumers: len(q.consumers),
		ReadyBytes: q.readyBytes + q.spill.bytes, PagedOut: q.spill.count, PagedOutBytes: q.spill.bytes,
		Memory: q.memBytes, SpillLost: q.stats.SpillLost.Load(), Deleted: q.deleted,
	}
}

// ConsumerRef is an attached consumer and whether it asked for exclusive use.
type ConsumerRef struct {
	Consumer  Consumer
	Exclusive bool
}

// ConsumerList returns the attached consumers in round-robin order.
func (q *Queue) ConsumerList() []ConsumerRef {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]ConsumerRef, len(q.consumers))
	for i, s := range q.consumers {
		out[i] = ConsumerRef{Consumer: s.c, Exclusive: s.exclusive}
	}
	return out
}

// Figures are what management shows of a queue: its counts and its counters, gathered where
// the queue lives (Queue.Figures; a queue homed on another cluster node reports them from
// there).
type Figures struct {
	Info
	Published, Delivered, Redelivered, Acked, Gets, Duplicates uint64
	// StreamFirst, StreamNext and StreamBytes are a stream's bounds (StreamBounds).
	StreamFirst, StreamNext uint64
	StreamBytes             int64
}

// Figures returns the queue's figures.
func (q *Queue) Figures() Figures {
	f := Figures{Info: q.Info(), Published: q.stats.Published.Load(), Delivered: q.stats.Delivered.Load(),
		Redelivered: q.stats.Redelivered.Load(), Acked: q.stats.Acked.Load(), Gets: q.stats.Gets.Load(),
		Duplicates: q.stats.Duplicates.Load()}
	f.StreamFirst, f.StreamNext, f.StreamBytes = q.StreamBounds()
	return f
}
