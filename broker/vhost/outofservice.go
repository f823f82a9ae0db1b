package vhost

import "github.com/warrenmq/warren/broker/queue"

// spillError handles a queue's spill failure (queue.SpillError): logged; a queue that lost
// persistent messages goes out of service, as a queue with a damaged log does at start: its log
// still holds them (the spill is a cache), and a restart recovers them, while the queue in
// memory no longer matches its log. Called without the queue's lock, never during replay (only
// reading back loses messages, and a restore does not read back).
func (v *VHost) spillError(q *queue.Queue, err *queue.SpillError) {
	ev := v.Log.Error()
	if err.Lost == 0 {
		ev = v.Log.Warn() // nothing lost: the queue keeps its messages in memory
	}
	ev.Str("queue", q.Name).Int("lost", err.Lost).Bool("persistent", err.Persistent).Err(err.Err).Msg("queue spill failed")
	if err.Persistent {
		v.outOfService(q, err)
	}
}

// outOfService takes a durable queue out of service without touching its log or its
// definition records: lookups answer 404 with the reason until a restart recovers it from its
// log (or queue.delete drops it), as for a queue whose log is damaged at start. Its consumers
// are cancelled and its bindings leave the exchanges in memory only (their records stay, so
// they come back with the queue).
func (v *VHost) outOfService(q *queue.Queue, cause error) {
	v.mu.Lock()
	if v.queues[q.Name] != q || !isDurable(q) {
		v.mu.Unlock()
		return
	}
	delete(v.queues, q.Name)
	v.broken[q.Name] = cause
	delete(v.queuePolicy, q)
	for _, x := range v.exchanges {
		x.UnbindDest(q)
	}
	v.mu.Unlock()
	q.OutOfService()
	v.Log.Error().Str("queue", q.Name).Err(cause).Msg("queue out of service until restart")
	if v.store != nil {
		v.store.RemoveSpill(v.Name, q.Name)
	}
}
