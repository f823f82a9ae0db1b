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
