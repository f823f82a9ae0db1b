package vhost

import (
	"sync/atomic"

	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
)

// Published is what Publish did with a message.
type Published struct {
	// Msg is what the queues got: the message published, without its BCC header when it had
	// one (RabbitMQ routes the BCC keys, then removes the header); a basic.return sends it.
	Msg *message.Message
	// Duplicate: the exchange deduplicates and let this message's key through before. The
	// message was dropped before routing, and nothing else below is set: the publisher gets its
	// confirm, no basic.return.
	Duplicate bool
	// Routed: the message reached at least one queue, a queue that refused it by overflow
	// included (nacked, not returned, as RabbitMQ). A mandatory publish that is not Routed is
	// returned; a queue deleted under the route does not count.
	Routed bool
	// Queued: some queue took the message (or will answer through the Wait).
	Queued bool
	// Rejected: some queue refused it at once (x-overflow reject-publish); the Wait records it.
	Rejected bool
	// Pending: some queue answers later, through the Wait, which its owner must then Release
	// (and may not Reset for another publish until it has been answered).
	Pending bool
}

// Publish routes m (published to the exchange m.Exchange with the key m.RoutingKey: its
// bindings, exchange-to-exchange bindings, alternate exchanges, the CC and BCC headers, and
// the exchange's deduplication window; see Route) and hands it to every queue it reaches. It
// is the one publish path of the node: AMQP publishes and transaction commits (the session),
// dead letters (deadletter.go) and the HTTP API's publish (mgmt) all go through it, and read
// from Published what their protocol answers.
//
// w, when not nil, is passed to every queue as the publish's queue.Completion: a publish
// that waits for queues (confirms, tx.commit-ok) is answered when w is (Wait). With w nil
// nobody waits: a queue may then make the caller wait for its log before it returns
// (backpressure for publishers without confirms).
//
// r is the caller's scratch space, reused across publishes; it is left empty. Publish takes
// no lock of its own: the vhost's only while it looks up names (Route), each queue's inside
// its Publish. It fails, having published nothing, with Route's errors (404 exchange, 403
// internal exchange) or when the BCC header cannot be removed.
func (v *VHost) Publish(r *Router, m *message.Message, w *Wait) (Published, error) {
	return v.publish(r, m, w, false)
}

// publish is Publish; deadLetter skips the queues where m would close a dead-letter cycle.
func (v *VHost) publish(r *Router, m *message.Message, w *Wait, deadLetter bool) (Published, error) {
	if err := v.Route(r, m.Exchange, m.RoutingKey, m); err != nil {
		return Published{}, err
	}
	if len(r.Queues) == 0 && !r.Duplicate && v.Meta != nil && v.caughtUpFor(r.Mandatory) {
		// Unroutable here: in a cluster, a binding or queue declared through another node a
		// moment ago may not be applied on this one yet. Route again once it is.
		if err := v.Route(r, m.Exchange, m.RoutingKey, m); err != nil {
			return Published{}, err
		}
	}
	p := Published{Msg: m}
	if r.Duplicate {
		p.Duplicate = true
		return p, nil
	}
	if r.BCC {
		var err error
		if p.Msg, err = message.WithoutHeader(m, "BCC"); err != nil {
			r.reset()
			return Published{}, err
		}
	}
	var c queue.Completion // nil unless w is: a typed nil would be a Completion
	if w != nil {
		c = w
	}
	for _, q := range r.Queues {
		if deadLetter && message.DeathCycle(p.Msg, q.Name()) {
			continue
		}
		if w != nil {
			w.n.Add(1) // before Publish: the queue may answer before it returns
		}
		var st queue.PubStatus
		if deadLetter {
			st = publishDead(q, p.Msg, c)
		} else {
			st = q.Publish(p.Msg, c)
		}
		switch st {
		case queue.PubPending:
			p.Pending, p.Queued, p.Routed = true, true, true
		case queue.PubQueued:
			p.Queued, p.Routed = true, true
		case queue.PubRejected:
			p.Rejected, p.Routed = true, true
			if w != nil {
				w.rejected.Store(true)
			}
		}
		if w != nil && st != queue.PubPending {
			w.n.Add(-1) // answered at once: nobody holds w for this queue
		}
	}
	r.reset()
	return p, nil
}

// unthrottled is a Ref whose Publish may wait for room on its way to another node (a queue
// homed elsewhere): dead letters skip that wait, as RabbitMQ does not flow-control them,
// because a queue dead-letters from the goroutine that serves another node's requests, which
// must not wait for that node.
type unthrottled interface {
	PublishUnthrottled(m *message.Message, c queue.Completion) queue.PubStatus
}

// publishDead publishes a dead letter (without waiting for room on the way to another node).
func publishDead(q queue.Ref, m *message.Message, c queue.Completion) queue.PubStatus {
	if u, ok := q.(unthrottled); ok {
		return u.PublishUnthrottled(m, c)
	}
	return q.Publish(m, c)
}

// reset empties r.Queues, keeping no queue alive.
func (r *Router) reset() {
	clear(r.Queues)
	r.Queues = r.Queues[:0]
}

// Wait gathers the answers of the queues a publish reached, or of every publish of a
// transaction: the same Wait is passed to each queue as its queue.Completion, so a publish
// allocates no callback. Its owner holds it from Reset to Release; each queue that answered
// Publish with PubPending holds it until it answers. When the last holder lets go, the
// Waiter given to Reset is told whether some queue refused the message by overflow
// (rejected: a confirm is a nack) or could not keep it (failed: not durable), on that
// holder's goroutine: a queue log's commit goroutine (it must not block, and takes no queue
// lock), or the owner's own in Release.
//
// A Wait that no queue held (Published.Pending false) may be Reset and used for the next
// publish: a publisher keeps one and needs a new one only after a publish that had to wait.
type Wait struct {
	n        atomic.Int32
	rejected atomic.Bool
	failed   atomic.Bool
	owner    Waiter
}

// Waiter is told when every queue a Wait counted has answered.
type Waiter interface {
	Answered(rejected, failed bool)
}

// Reset readies w for a publish, held by its owner, who is told the answer.
func (w *Wait) Reset(owner Waiter) {
	w.n.Store(1)
	w.rejected.Store(false)
	w.failed.Store(false)
	w.owner = owner
}

// Release drops the owner's hold: the owner is told once the queues have answered (now, on
// this goroutine, when they all answered already).
func (w *Wait) Release() { w.done() }

// Completed is a queue's answer (queue.Completion).
func (w *Wait) Completed(st queue.PubStatus, err error) {
	if err != nil {
		w.failed.Store(true)
	}
	if st == queue.PubRejected {
		w.rejected.Store(true)
	}
	w.done()
}

func (w *Wait) done() {
	if w.n.Add(-1) == 0 {
		w.owner.Answered(w.rejected.Load(), w.failed.Load())
	}
}
