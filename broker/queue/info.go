package queue

// Read-only accessors for management and metrics. Each takes q.mu briefly and copies.

// Info is a point-in-time view of a queue's state.
type Info struct {
	Ready      int   // messages ready for delivery
	Unacked    int   // delivered, awaiting ack
	Consumers  int   // attached consumers
	ReadyBytes int64 // body bytes of ready messages
	Deleted    bool
}

// Info returns the queue's counts under one lock.
func (q *Queue) Info() Info {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Info{Ready: q.ready.Len(), Unacked: q.unacked, Consumers: len(q.consumers), ReadyBytes: q.readyBytes, Deleted: q.deleted}
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
