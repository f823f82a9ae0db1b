package queue

import (
	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

// Ref is a queue as the session, management and dead-lettering see it. The vhost hands out
// Refs (VHost.LookupQueue, VHost.DeclareQueue, routing); nothing above the vhost holds a
// *Queue. A Ref is local (*Queue.Ref: calls into the queue on this node) or, in a cluster, may
// stand for a queue led by another node (requests and deliveries over a node-to-node stream),
// so every answer that needs the queue's leader can come later, and a caller must not assume
// that a call runs the queue's code on its own goroutine.
//
// Two Refs of the same queue from the same registry are equal (==): a Ref may be used as a map
// key, and the session groups its deliveries by Ref.
//
// # Goroutines and locks
//
// Every method may be called from any goroutine, concurrently, but never with a channel's or a
// connection's lock held (broker/LOCKING.md: Queue.mu → Channel.mu → Conn.outMu); the Ref
// takes its own lock (a local queue's q.mu) inside. The callbacks a Ref makes run under that
// lock, or with none, as each says below, and must not call back into the Ref:
//   - Consumer.Deliver and Subscription.Added: under the Ref's lock, on whichever goroutine
//     changed the queue (a publisher's reader, an acking reader, a queue timer; for a remote
//     queue the stream's reader). Deliveries to one consumer never run concurrently.
//   - Consumer.Cancelled: without the Ref's lock.
//   - Completion.Completed: on any goroutine (a local queue's log commit goroutine, or inside
//     Publish itself, under the queue's lock, for a log that is durable at once); it must not
//     block.
//
// # Ownership
//
// A published *message.Message is immutable and shared: the Ref keeps it as long as the
// queue holds the message. Entries handed to Consumer.Deliver or returned by Get belong to the
// receiver until it settles them, exactly once, through the same Ref (Settle); the Ref keeps no
// reference to the slices passed to Settle.
type Ref interface {
	// Name is the queue's name.
	Name() string
	// IsStream reports whether the queue is a stream (x-queue-type: stream), which refuses
	// basic.get, queue.purge and basic.nack/reject (StreamUnsupported) and takes consumers
	// with a prefetch only (Subscribe checks).
	IsStream() bool
	// StreamUnsupported returns RabbitMQ's error for an operation a stream does not have
	// ("basic.get", "queue.purge", "basic.nack and basic.reject").
	StreamUnsupported(op string) error

	// Publish hands m to the queue. PubQueued, PubRejected (x-overflow reject-publish: nack
	// the publisher) and PubDropped (the queue is gone: the publish did not reach it) are final
	// answers, and c is neither kept nor called. PubPending means the answer comes later: c is
	// called exactly once (possibly before Publish returns) with the final status, PubQueued
	// (with err nil: durable where it had to be) or PubRejected or PubDropped, or with a
	// non-nil err when the queue could not keep the message (not durable: nack). A local queue
	// answers PubPending only for a message it writes to its log (persistent message, durable
	// queue; any message of a stream) and only when c is not nil; a remote one whenever c is
	// not nil. With c nil, nobody waits: a local queue may make the caller wait for its log
	// instead (backpressure for publishers without confirms).
	Publish(m *message.Message, c Completion) PubStatus

	// Subscribe attaches c (basic.consume) and returns once the queue accepted or refused it
	// (an *amqp.Error: exclusive use, a stream's consumer rules, the queue gone). s.Added runs
	// once, when accepted, before the first Deliver to c, under the Ref's lock. From then on
	// the queue offers c messages through Deliver while c takes them; a consumer that refused
	// one calls Kick once it can take more. s.Prefetch is the credit a remote queue may send
	// ahead; the consumer still decides each offer.
	Subscribe(c Consumer, s Subscription) error
	// Unsubscribe detaches c (basic.cancel, channel closed); no Deliver to c starts after it
	// returns. Its unsettled entries stay unacked until settled.
	Unsubscribe(c Consumer)
	// Kick asks the queue to offer messages again: a consumer has credit again (an ack freed
	// it, a qos change, its connection's buffer drained).
	Kick()
	// Settle settles entries this Ref delivered (Deliver, Get): ack, reject (dead-lettered
	// where the queue says so) or requeue (back in their places, redelivered). Fire and
	// forget: it does not wait for a remote queue's answer.
	Settle(es []Entry, how Settlement)
	// DeliveryProps returns the raw properties to deliver e with: the message's own, or for a
	// quorum-type queue a copy with the x-delivery-count header. It takes no lock (it may be
	// called from Deliver) and the result is the caller's to keep.
	DeliveryProps(e Entry) []byte

	// Get takes the first ready message (basic.get); ok is false when there is none. With
	// noAck the message is settled as it is taken; otherwise the caller owns e until Settle.
	// remaining is the ready count after it.
	Get(noAck bool) (e Entry, remaining int, ok bool, err error)
	// Purge drops the ready messages and returns how many.
	Purge() (int, error)
	// Delete deletes the queue's contents and cancels its consumers (Consumer.Cancelled),
	// returning the ready messages dropped; ifUnused / ifEmpty refuse (406) a queue with
	// consumers / messages. The registry removes the definition; Delete is its part on the
	// queue.
	Delete(ifUnused, ifEmpty bool) (int, error)
	// Counts returns the ready and unacked message counts and the number of consumers.
	Counts() (ready, unacked, consumers int, err error)
	// Touch counts as use of the queue for x-expires (a redeclare).
	Touch()
}

// Completion is told the final answer of a publish that Ref.Publish answered PubPending (see
// there). It is called on any goroutine and must not block. A caller that publishes to many
// queues passes one reusable object to all of them (vhost.Wait counts them down), so a
// publish allocates no callback of its own.
type Completion interface {
	Completed(st PubStatus, err error)
}

// CompletionFunc is a Completion from a function (tests, rare paths).
type CompletionFunc func(st PubStatus, err error)

// Completed calls f.
func (f CompletionFunc) Completed(st PubStatus, err error) { f(st, err) }

// Settlement is how Ref.Settle settles entries.
type Settlement uint8

// Settlements.
const (
	// SettleAck: basic.ack (or a no-ack delivery): the message is gone for good.
	SettleAck Settlement = iota
	// SettleReject: basic.reject or basic.nack without requeue: the message is gone, and
	// dead-lettered ("rejected") when the queue has a dead-letter exchange.
	SettleReject
	// SettleRequeue: basic.reject or nack with requeue, basic.recover, or the channel closed:
	// back in its original place, marked redelivered.
	SettleRequeue
	// SettleRequeueClosing is SettleRequeue by a channel that is closing: its consumers take
	// nothing more, so the messages must not be offered to them again. A queue on this node
	// sees them refuse; a queue on another node must not give their credit back, or it sends
	// the messages straight back to a consumer about to go, and a consumer taking over (single
	// active consumer) would get them after newer ones.
	SettleRequeueClosing
)

// Subscription is how a consumer attaches (basic.consume).
type Subscription struct {
	Exclusive bool   // sole consumer of the queue (403 ACCESS_REFUSED when it has others)
	Priority  int64  // x-priority: higher priorities are offered messages first
	Prefetch  uint32 // the consumer's own prefetch count (0: none)
	NoAck     bool   // deliveries need no ack
	GlobalQos bool   // the channel has a channel-wide prefetch (streams refuse it)
	// ChannelPrefetch is the channel-wide prefetch when the consumer subscribed (0: none). A
	// queue led on another node sends a consumer without a prefetch of its own no more than
	// that ahead (the session tells it of later changes: remote.Ref.ChannelPrefetch).
	ChannelPrefetch uint32
	Args            amqp.Table // basic.consume's arguments (a stream's x-stream-offset)
	// Added, when not nil, runs once the consumer is accepted and before any delivery, under
	// the Ref's lock (the session sends basic.consume-ok there, so that it precedes the first
	// basic.deliver). It must not call into the queue.
	Added func()
}

// localRef is the Ref of a queue on this node: each method is the queue's own. It lives in
// the Queue (Queue.self), so handing out a Ref allocates nothing and every Ref of a queue is
// the same pointer.
type localRef struct{ q *Queue }

// Ref returns the queue's local Ref.
func (q *Queue) Ref() Ref { return &q.self }

func (r *localRef) Name() string                      { return r.q.Name }
func (r *localRef) IsStream() bool                    { return r.q.stream != nil }
func (r *localRef) StreamUnsupported(op string) error { return r.q.StreamUnsupported(op) }
func (r *localRef) Publish(m *message.Message, c Completion) PubStatus {
	return r.q.Publish(m, c)
}

func (r *localRef) Subscribe(c Consumer, s Subscription) error {
	q := r.q
	if q.stream != nil {
		return q.AddStreamConsumer(c, StreamConsume{Args: s.Args, Prefetch: s.Prefetch, GlobalQos: s.GlobalQos, NoAck: s.NoAck}, s.Added)
	}
	return q.AddConsumerPriority(c, s.Exclusive, s.Priority, s.Added)
}

func (r *localRef) Unsubscribe(c Consumer) { r.q.RemoveConsumer(c) }
func (r *localRef) Kick()                  { r.q.Kick() }

func (r *localRef) Settle(es []Entry, how Settlement) {
	switch how {
	case SettleAck:
		r.q.Ack(es)
	case SettleReject:
		r.q.Reject(es)
	case SettleRequeue, SettleRequeueClosing:
		r.q.Requeue(es)
	}
}

func (r *localRef) DeliveryProps(e Entry) []byte { return r.q.DeliveryProps(e) }

func (r *localRef) Get(noAck bool) (Entry, int, bool, error) {
	if r.q.Standby {
		return Entry{}, 0, false, r.q.standbyErr()
	}
	e, remaining, ok := r.q.Get()
	if ok && noAck {
		es := [1]Entry{e}
		r.q.Ack(es[:])
	}
	return e, remaining, ok, nil
}

func (r *localRef) Purge() (int, error) { return r.q.Purge(), nil }

func (r *localRef) Delete(ifUnused, ifEmpty bool) (int, error) {
	return r.q.Delete(ifUnused, ifEmpty)
}

func (r *localRef) Counts() (ready, unacked, consumers int, err error) {
	ready, unacked, consumers = r.q.Counts()
	return ready, unacked, consumers, nil
}

func (r *localRef) Touch() { r.q.Touch() }
