// Package queue implements a queue: the ready list, its consumers, dispatch with prefetch
// credit, requeue in original order, and the counters the management API reads.
//
// Dispatch runs inline in whichever goroutine changes the queue (a publish, an ack, a new
// consumer, credit coming back), under q.mu; there is no goroutine per queue, so idle queues
// cost only their memory. A consumer that cannot take a message right now (no prefetch credit,
// or its connection's outbound buffer is full) returns false from Deliver and calls Kick when
// it can take more.
//
// Everything above the vhost sees a queue through a Ref (ref.go), the seam a queue led by
// another node plugs into; *Queue is the local implementation behind q.Ref().
//
//	q := queue.New("jobs", queue.Options{Durable: true})
//	r := q.Ref()
//	r.Subscribe(c, queue.Subscription{Prefetch: 10}) // c implements queue.Consumer
//	r.Publish(msg, nil)                             // delivered to c if it has credit, else kept ready
//	r.Settle([]queue.Entry{e}, queue.SettleAck)     // when the consumer acks
package queue

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

// Entry is a message in a queue: the shared message, its position (offset) in the queue, and
// per-queue delivery state. LogOffset is the record's offset in the queue's log, 0 when the
// message is not persisted (transient message or non-durable queue).
type Entry struct {
	Msg         *message.Message
	Offset      uint64
	LogOffset   uint64
	Expires     int64  // unix ms; 0: never
	Returns     uint32 // times requeued (x-delivery-limit)
	Redelivered bool
}

// PubStatus is the outcome of Publish.
type PubStatus uint8

// Publish outcomes.
const (
	PubQueued   PubStatus = iota // queued or delivered
	PubPending                   // queued; onDurable will be called when it is on disk
	PubRejected                  // refused by x-overflow reject-publish(-dlx): nack the publisher
	PubDropped                   // the queue is deleted
)

// Log is what a queue needs from its storage; *wal.Log satisfies it (asserted in cmd/).
// Append copies payload, returns the record's offset at once and calls done (from another
// goroutine, which must not block) when the record is durable. Retire and MarkDelivered record
// acks and deliveries without waiting. All methods may be called concurrently.
type Log interface {
	Append(payload []byte, done func(offset uint64, err error)) uint64
	Retire(offsets ...uint64)
	MarkDelivered(offsets ...uint64)
}

// Consumer receives messages from a queue (Ref.Subscribe). Implemented by the session's
// consumer.
type Consumer interface {
	// Deliver is called with the queue's lock held (see Ref for the goroutine). It returns
	// Refused, taking nothing, when the consumer cannot take a message now (it must then call
	// q.Kick once it can), Taken when the message awaits an ack (settled later through q), or
	// Settled when it needs none (no-ack). It must not call back into the queue.
	Deliver(q Ref, e Entry) Result
	// Tag is the consumer tag.
	Tag() string
	// Cancelled is called (without the queue lock) when the queue is deleted under the consumer.
	Cancelled(q Ref)
}

// Mover is a Consumer that follows its queue to another Ref when a replicated queue's leader
// moves (it subscribes there itself), where other consumers are cancelled: a RabbitMQ quorum
// queue's consumers stay across leader changes.
type Mover interface {
	Moved(from, to Ref)
}

// MoveOrCancel tells c that its queue, reached through from until now, is to be reached
// through to (nil: it is gone): a Mover moves there, any other consumer is cancelled.
func MoveOrCancel(c Consumer, from, to Ref) {
	if m, ok := c.(Mover); ok && to != nil {
		m.Moved(from, to)
		return
	}
	c.Cancelled(from)
}

// Result is what a consumer did with an offered message.
type Result uint8

// Results of Consumer.Deliver.
const (
	Refused Result = iota
	Taken
	Settled
)

// Options are a queue's declared properties.
type Options struct {
	Durable    bool
	Exclusive  bool
	AutoDelete bool
	Args       amqp.Table
	// Owner identifies the connection owning an exclusive queue (compared by identity).
	Owner any
	// VHost is the name of the virtual host, for error texts.
	VHost string
	// Standby: this node holds only the queue's definition (a replicated queue led by another
	// node, until it is reached through its leader): publishes are refused (the publisher is
	// nacked), consumers and basic.get too, so nothing is taken here that the leader does not
	// hold.
	Standby bool
}

// Queue is one queue. Its state is guarded by mu.
type Queue struct {
	Name string
	Options
	// OnUnused is called (without the lock) when an auto-delete queue loses its last consumer,
	// and when an x-expires queue has been unused for its expiry.
	OnUnused func(q *Queue)
	// OnDeadLetter is called (without the lock) with messages dead-lettered by the queue.
	OnDeadLetter func(q *Queue, dead []DeadLetter)
	// OnSpillError is called (without the lock) when the queue's spill failed or messages
	// could not be read back from it (see SpillError).
	OnSpillError func(q *Queue, err *SpillError)

	self   localRef // the queue's Ref (ref.go)
	quorum bool     // x-queue-type quorum (fixed at creation): deliveries carry x-delivery-count

	mu          sync.Mutex
	ready       readyList
	consumers   []consumerSlot
	rr          int // round-robin position
	nextOffset  uint64
	unacked     int
	readyBytes  int64 // body bytes of ready messages in memory
	largeBytes  int64 // of which in large messages (LargeMessage)
	memBytes    int64 // estimated memory of ready messages (see Budget)
	budget      *Budget
	spill       spillState
	hadConsumer bool
	deleted     bool
	// outOfService: deleted in memory while its log stays (OutOfService): acks still retire.
	outOfService bool
	successor    Ref // where its consumers move when it goes out of service (OutOfServiceTo)
	// stream is set for x-queue-type stream: the log, retention and positions (stream.go).
	stream *stream

	cfg         Config
	now         func() time.Time
	timer       *time.Timer // head expiry
	timerAt     int64
	unusedTimer *time.Timer // x-expires
	unusedAt    int64
	lastUsed    int64
	expired     bool         // x-expires passed: OnUnused at the next unlock
	dead        []DeadLetter // dead-lettered under the lock, handed to OnDeadLetter at unlock
	dedup       dedupCache
	xkeys       ExchangeKeys // the exchanges' deduplication windows (xdedup.go); nil: none

	log       Log      // nil: nothing is persisted
	logUnsync int64    // bytes appended without anyone waiting for them (see persistLocked)
	encBuf    []byte   // scratch for record encoding
	retired   []uint64 // log offsets to retire at the next unlock
	delivered []uint64 // log offsets delivered, recorded at the next unlock

	stats Stats
}

type consumerSlot struct {
	c         Consumer
	exclusive bool
	priority  int64 // x-priority on basic.consume
	// offset is a stream consumer's next offset to read.
	offset uint64
}

// Stats are monotonically increasing counters, read without the lock.
type Stats struct {
	Published   atomic.Uint64
	Delivered   atomic.Uint64
	Redelivered atomic.Uint64
	Acked       atomic.Uint64
	Gets        atomic.Uint64
	Duplicates  atomic.Uint64 // dropped by deduplication
	SpillLost   atomic.Uint64 // could not be read back from the spill
}

// New creates a queue.
func New(name string, o Options) *Queue {
	q := &Queue{Name: name, Options: o, nextOffset: 1, now: time.Now, cfg: ParseConfig(o.Args)}
	q.self.q = q
	q.quorum = q.cfg.Quorum
	if isStreamArgs(o.Args) {
		q.stream = newStream(o.Args)
	}
	q.ready.setLevels(q.cfg.MaxPriority + 1)
	q.lastUsed = q.nowMs()
	q.touchLocked()
	return q
}

// SetClock replaces the queue's clock (tests). Call before use.
func (q *Queue) SetClock(now func() time.Time) {
	q.mu.Lock()
	q.now = now
	q.mu.Unlock()
}

// DestName returns the queue name (exchange.Destination).
func (q *Queue) DestName() string { return q.Name }

// IsExchange returns false (exchange.Destination).
func (q *Queue) IsExchange() bool { return false }

// Stats returns the queue's counters.
func (q *Queue) Stats() *Stats { return &q.stats }

// SetLog attaches the queue's log (durable queues). Call before the queue is used.
func (q *Queue) SetLog(l Log) {
	q.mu.Lock()
	q.log = l
	if l != nil && len(q.retired) > 0 { // retired while the log was replayed
		l.Retire(q.retired...)
		q.retired = q.retired[:0]
	}
	q.mu.Unlock()
}

// Persists reports whether a message published to q is written to its log (a persistent
// message in a queue with a log). The log is set before the queue is used, so no lock.
// A stream persists every message.
func (q *Queue) Persists(m *message.Message) bool {
	return q.log != nil && (m.Persistent() || q.stream != nil)
}

// Publish appends a message and dispatches. It returns PubDropped if the queue was deleted
// (PubRejected if it was taken out of service: its log stays, see OutOfService),
// PubRejected when x-overflow refuses it. When the message is written to the queue's log and
// c is not nil, it returns PubPending and c is called (from the log's commit goroutine) once
// the message is on disk, or with the error that prevented it. A publish without c may wait
// for the log (see persistLocked), never under q.mu. See Ref.Publish for the contract.
func (q *Queue) Publish(m *message.Message, c Completion) PubStatus {
	if q.stream != nil {
		return q.publishStream(m, c)
	}
	if q.Standby {
		return PubRejected
	}
	q.mu.Lock()
	if q.deleted {
		oos := q.outOfService
		q.mu.Unlock()
		if oos {
			// Its log stays, and its service goes on elsewhere (a replicated queue's leader
			// moved): the message is not stored here. Dropped would confirm it.
			return PubRejected
		}
		return PubDropped
	}
	status, wait := q.publishLocked(m, c)
	q.unlock()
	if wait {
		q.waitLog()
	}
	return status
}

// publishLocked is Publish under q.mu; wait asks the caller to wait for the log after
// unlocking.
func (q *Queue) publishLocked(m *message.Message, c Completion) (status PubStatus, wait bool) {
	if q.cfg.Dedup && q.duplicateLocked(m) {
		return PubQueued, false // dropped, and confirmed: the first copy is in the queue or was consumed
	}
	e := Entry{Msg: m}
	var now int64
	if q.cfg.MessageTTL >= 0 || m.Props.Flags&amqp.FlagExpiration != 0 {
		now = q.nowMs()
		e.Expires = q.expiryFor(m, now)
	}
	if q.rejectsLocked(m) {
		if q.cfg.Overflow == RejectPublishDLX {
			q.dropLocked(e, "maxlen")
		}
		return PubRejected, false
	}
	e.Offset = q.nextOffset
	q.nextOffset++
	q.stats.Published.Add(1)
	status = PubQueued
	var pending bool
	// A message that is already expired (TTL 0) is delivered only if a consumer takes it now.
	if (q.ready.Len() == 0 && q.spill.count == 0 && len(q.consumers) > 0) || (e.Expires != 0 && e.Expires <= now) {
		if pending, wait = q.persistLocked(&e, c); pending {
			status = PubPending
		}
		if q.ready.Len() == 0 && q.spill.count == 0 && len(q.consumers) > 0 && q.tryDeliverLocked(e) {
			return status, wait
		}
		if e.Expires != 0 && e.Expires <= now {
			q.dropLocked(e, "expired")
			return status, wait
		}
	} else if pending, wait = q.persistLocked(&e, c); pending {
		status = PubPending
	}
	q.enqueueLocked(e)
	q.enforceLimitsLocked()
	q.dispatchLocked()
	q.scheduleExpiryLocked()
	return status, wait
}

// DeliveryProps returns the raw properties to deliver e with: the message's own, or for a
// quorum-type queue a copy with the x-delivery-count header (times returned), as RabbitMQ.
// It takes no lock: Consumer.Deliver calls it with the queue's lock held, basic.get without.
func (q *Queue) DeliveryProps(e Entry) []byte {
	if !q.quorum {
		return e.Msg.RawProps
	}
	p, err := amqp.DecodeProperties(e.Msg.RawProps)
	if err != nil {
		return e.Msg.RawProps
	}
	h := amqp.Table{}
	for k, v := range p.Headers {
		h[k] = v
	}
	h["x-delivery-count"] = int64(e.Returns)
	p.Headers = h
	return p.AppendTo(nil)
}

// retireLocked records that a persisted message left the queue for good (its key first, for a
// deduplicating queue).
func (q *Queue) retireLocked(e Entry) {
	q.keepKeyLocked(e)
	q.keepXKeyLocked(e)
	q.retired = append(q.retired, e.LogOffset)
}

// persistLocked writes e's message to the queue's log when it persists there. pending: c will
// be called. wait: nobody waits for these writes (no publisher confirm), and so much was
// appended since the last wait that the publisher must now wait for the log (waitLog), after
// releasing q.mu: the wait may last an fsync, and every consumer and publisher of the queue
// needs the lock meanwhile.
func (q *Queue) persistLocked(e *Entry, c Completion) (pending, wait bool) {
	if !q.Persists(e.Msg) {
		return false, false
	}
	q.encBuf = AppendLogRecord(q.encBuf[:0], e.Msg, e.Expires)
	e.LogOffset = q.log.Append(q.encBuf, logDone(c))
	if c == nil {
		// Bound what can pile up in memory ahead of the disk.
		q.logUnsync += int64(len(q.encBuf))
		if q.logUnsync >= logSyncBytes {
			q.logUnsync = 0
			wait = true
		}
	}
	if cap(q.encBuf) > 1<<20 {
		q.encBuf = nil
	}
	return c != nil, wait
}

// logDone adapts a publish's Completion to the log's completion callback (nil for nil).
func logDone(c Completion) func(uint64, error) {
	if c == nil {
		return nil
	}
	return func(_ uint64, err error) { c.Completed(PubQueued, err) }
}

// waitLog waits until the queue's log has written what was appended so far. Without q.mu.
func (q *Queue) waitLog() {
	if sy, ok := q.log.(syncer); ok {
		sy.Sync()
	}
}

// rejectsLocked reports whether x-overflow reject-publish(-dlx) refuses a new message.
func (q *Queue) rejectsLocked(m *message.Message) bool {
	if q.cfg.Overflow != RejectPublish && q.cfg.Overflow != RejectPublishDLX {
		return false
	}
	n := int64(q.ready.Len() + q.spill.count)
	return (q.cfg.MaxLength >= 0 && n >= q.cfg.MaxLength) ||
		(q.cfg.MaxLengthBytes >= 0 && q.readyBytes+q.spill.bytes+int64(m.BodySize()) > q.cfg.MaxLengthBytes)
}

// enforceLimitsLocked drops (and dead-letters) messages from the head while the queue is over
// x-max-length or x-max-length-bytes (drop-head overflow).
func (q *Queue) enforceLimitsLocked() {
	if q.cfg.Overflow != DropHead || (q.cfg.MaxLength < 0 && q.cfg.MaxLengthBytes < 0) {
		return
	}
	for {
		n := int64(q.ready.Len() + q.spill.count)
		over := (q.cfg.MaxLength >= 0 && n > q.cfg.MaxLength) ||
			(q.cfg.MaxLengthBytes >= 0 && q.readyBytes+q.spill.bytes > q.cfg.MaxLengthBytes)
		if !over || n == 0 {
			return
		}
		if q.ready.Len() == 0 {
			if q.pageInLocked(); q.ready.Len() == 0 {
				continue // the spill's records could not be read: counted, and gone
			}
		}
		q.dropLocked(q.popReadyLocked(), "maxlen")
	}
}

// enqueueLocked adds a new message at the tail: in memory, or in the spill when over budget.
func (q *Queue) enqueueLocked(e Entry) {
	if q.shouldSpillLocked() && q.spillLocked(e) {
		return
	}
	if q.spill.count > 0 { // the spill failed with messages in it: wait behind them
		q.tailLocked(e)
		return
	}
	q.pushReadyLocked(e)
}

// Restore appends a message recovered from the queue's log (at startup, before use).
func (q *Queue) Restore(m *message.Message, logOffset uint64, delivered bool, expires int64) {
	q.mu.Lock()
	if q.cfg.Dedup {
		if key := dedupKey(q.cfg, m); key != "" {
			if _, ok := q.dedup.keys[key]; !ok {
				q.dedup.check(key, q.nowMs())
			}
		}
	}
	q.enqueueLocked(Entry{Msg: m, Offset: q.nextOffset, LogOffset: logOffset, Redelivered: delivered, Expires: expires})
	q.nextOffset++
	// No expiry here: Restore runs under the vhost's lock, and expiring may dead-letter, which
	// routes through the vhost. The timer (another goroutine) expires what is due.
	q.scheduleExpiryLocked()
	q.unlock()
}

// unlock writes the retirements and delivery marks gathered under the lock, then unlocks.
// The log calls only queue records for the next commit, so they are cheap. A stream's
// consumers that stopped at messages evicted from memory get them read back from the log
// here, after unlocking (fetchStream), and dispatched.
func (q *Queue) unlock() {
	for {
		var fetch []streamFetch
		if q.stream != nil && len(q.stream.misses) > 0 && !q.deleted {
			fetch = q.streamFetchesLocked()
		}
		q.unlockOnce()
		if len(fetch) == 0 {
			return
		}
		q.fetchStream(fetch) // returns with q.mu held
	}
}

func (q *Queue) unlockOnce() {
	if q.log != nil {
		if len(q.retired) > 0 {
			q.log.Retire(q.retired...)
			q.retired = q.retired[:0]
		}
		if len(q.delivered) > 0 {
			q.log.MarkDelivered(q.delivered...)
			q.delivered = q.delivered[:0]
		}
	}
	dead := q.dead
	q.dead = nil
	expired := q.expired
	q.expired = false
	lost := q.spill.lost
	q.spill.lost = nil
	q.mu.Unlock()
	if len(dead) > 0 {
		q.OnDeadLetter(q, dead)
	}
	if lost != nil && q.OnSpillError != nil {
		q.OnSpillError(q, lost)
	}
	if expired && q.OnUnused != nil {
		q.OnUnused(q)
	}
}

// tryDeliverLocked offers e to the consumers in round-robin order, starting after the last one
// served. It returns true when one took it.
// Consumers are kept by priority (x-priority, highest first): a lower group gets a message
// only when no consumer of a higher group can take it. With x-single-active-consumer only the
// first consumer receives.
func (q *Queue) tryDeliverLocked(e Entry) bool {
	n := len(q.consumers)
	if q.cfg.SingleActive && n > 1 {
		n = 1
	}
	for start := 0; start < n; {
		end := start + 1
		for end < n && q.consumers[end].priority == q.consumers[start].priority {
			end++
		}
		if q.tryGroupLocked(e, start, end) {
			return true
		}
		start = end
	}
	return false
}

// tryGroupLocked offers e round-robin to consumers[start:end].
func (q *Queue) tryGroupLocked(e Entry, start, end int) bool {
	k := end - start
	for i := 0; i < k; i++ {
		if q.rr < start || q.rr >= end {
			q.rr = start
		}
		c := q.consumers[q.rr].c
		q.rr++
		if r := c.Deliver(&q.self, e); r != Refused {
			if r == Taken {
				q.unacked++ // released by Ack or Requeue
				if e.LogOffset != 0 && !e.Redelivered {
					q.delivered = append(q.delivered, e.LogOffset)
				}
			} else {
				if e.LogOffset != 0 {
					q.retireLocked(e)
				}
				q.freedLocked(e)
			}
			q.stats.Delivered.Add(1)
			if e.Redelivered {
				q.stats.Redelivered.Add(1)
			}
			return true
		}
	}
	return false
}

// dispatchLocked delivers ready messages while some consumer takes them.
func (q *Queue) dispatchLocked() {
	if q.stream != nil {
		q.dispatchStreamLocked()
		return
	}
	now := int64(0)
	for len(q.consumers) > 0 {
		if q.ready.Len() < pageBatchCount/4 {
			q.pageInLocked()
		}
		if q.ready.Len() == 0 {
			return
		}
		e := q.ready.Front()
		if e.Expires != 0 {
			if now == 0 {
				now = q.nowMs()
			}
			if e.Expires <= now {
				q.dropLocked(q.popReadyLocked(), "expired")
				continue
			}
		}
		if !q.tryDeliverLocked(*e) {
			return
		}
		q.popReadyLocked()
	}
}

// Kick re-runs dispatch; consumers call it when they regain credit.
func (q *Queue) Kick() {
	q.mu.Lock()
	q.dispatchLocked()
	q.unlock()
}

// Reject settles delivered entries rejected without requeue: they are dead-lettered
// ("rejected") when the queue has a dead-letter exchange.
func (q *Queue) Reject(es []Entry) {
	q.mu.Lock()
	q.unacked -= len(es)
	if !q.deleted {
		for _, e := range es {
			q.dropLocked(e, "rejected")
		}
	}
	q.dispatchLocked()
	q.unlock()
}

// Ack retires delivered entries (acked, or rejected without requeue) and dispatches more.
func (q *Queue) Ack(es []Entry) {
	q.mu.Lock()
	q.unacked -= len(es)
	q.stats.Acked.Add(uint64(len(es)))
	retire := q.log != nil && (!q.deleted || q.outOfService)
	for _, e := range es {
		if retire && e.LogOffset != 0 {
			q.retireLocked(e)
		}
		q.freedLocked(e)
	}
	q.dispatchLocked()
	q.unlock()
}

// Requeue puts delivered entries back at their original positions, marked redelivered, and
// dispatches.
func (q *Queue) Requeue(es []Entry) {
	q.mu.Lock()
	if q.deleted {
		for _, e := range es {
			q.freedLocked(e)
		}
		q.mu.Unlock()
		return
	}
	q.unacked -= len(es)
	if q.stream != nil { // a stream keeps every message: nothing goes back, credit returns
		q.dispatchLocked()
		q.unlock()
		return
	}
	for _, e := range es {
		e.Redelivered = true
		e.Returns++
		if q.cfg.DeliveryLimit >= 0 && int64(e.Returns) > q.cfg.DeliveryLimit {
			q.dropLocked(e, "delivery_limit")
			continue
		}
		q.ready.Insert(e)
		q.accountLocked(e, 1)
	}
	q.expireLocked()
	q.dispatchLocked()
	q.scheduleExpiryLocked()
	q.unlock()
}

// Unsend puts back entries that were handed to a consumer which never passed them on (a
// consumer on another node that was cancelled while they travelled to it): in their original
// positions and as they were, not marked redelivered and not counted as returned, as if they
// had never left the queue. A stream keeps every message: only the credit comes back.
func (q *Queue) Unsend(es []Entry) {
	q.mu.Lock()
	if q.deleted {
		for _, e := range es {
			q.freedLocked(e)
		}
		q.mu.Unlock()
		return
	}
	q.unacked -= len(es)
	if q.stream == nil {
		for _, e := range es {
			q.ready.Insert(e)
			q.accountLocked(e, 1)
		}
		q.expireLocked()
		q.scheduleExpiryLocked()
	}
	q.dispatchLocked()
	q.unlock()
}

// Get removes the first ready message for basic.get. The message is counted as unacked until
// Ack or Requeue (the caller acks at once for no-ack gets). remaining is the ready count after.
func (q *Queue) Get() (e Entry, remaining int, ok bool) {
	q.mu.Lock()
	q.touchLocked()
	q.expireLocked()
	if q.ready.Len() == 0 {
		q.unlock()
		return Entry{}, 0, false
	}
	e = q.popReadyLocked()
	q.unacked++
	q.stats.Gets.Add(1)
	if e.Redelivered {
		q.stats.Redelivered.Add(1)
	} else if e.LogOffset != 0 {
		q.delivered = append(q.delivered, e.LogOffset)
	}
	remaining = q.ready.Len() + q.spill.count
	q.scheduleExpiryLocked()
	q.unlock()
	return e, remaining, true
}

// AddConsumer attaches a consumer and dispatches to it. exclusive asks for sole use. added, if
// not nil, runs under the queue lock once the consumer is accepted and before any delivery
// (the session sends basic.consume-ok there, so that it precedes the first basic.deliver).
func (q *Queue) AddConsumer(c Consumer, exclusive bool, added func()) error {
	return q.AddConsumerPriority(c, exclusive, 0, added)
}

// AddConsumerPriority is AddConsumer with a consumer priority (x-priority): consumers of a
// higher priority get messages first; equal priorities share round-robin.
func (q *Queue) AddConsumerPriority(c Consumer, exclusive bool, priority int64, added func()) error {
	if q.Standby {
		return q.standbyErr()
	}
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return amqp.ChannelErr(amqp.NotFound, "no queue '%s' in vhost '%s'", q.Name, q.VHost)
	}
	if len(q.consumers) > 0 && (exclusive || q.consumers[0].exclusive) {
		q.mu.Unlock()
		return amqp.ChannelErr(amqp.AccessRefused, "queue '%s' in vhost '%s' in exclusive use", q.Name, q.VHost)
	}
	// Insert after every consumer of the same or higher priority (stable order).
	i := len(q.consumers)
	for i > 0 && q.consumers[i-1].priority < priority {
		i--
	}
	q.consumers = append(q.consumers, consumerSlot{})
	copy(q.consumers[i+1:], q.consumers[i:])
	q.consumers[i] = consumerSlot{c: c, exclusive: exclusive, priority: priority}
	q.hadConsumer = true
	q.touchLocked()
	if added != nil {
		added()
	}
	q.dispatchLocked()
	q.unlock()
	return nil
}

// RemoveConsumer detaches a consumer. For an auto-delete queue that had consumers and now has
// none, OnUnused is called.
func (q *Queue) RemoveConsumer(c Consumer) {
	q.mu.Lock()
	found := false
	for i, s := range q.consumers {
		if s.c == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			found = true
			break
		}
	}
	unused := found && q.AutoDelete && q.hadConsumer && len(q.consumers) == 0 && !q.deleted
	if found {
		q.touchLocked()
		q.dispatchLocked() // with a single active consumer, the next one takes over
	}
	q.unlock()
	if unused && q.OnUnused != nil {
		q.OnUnused(q)
	}
}

// Purge drops every ready message and returns how many.
func (q *Queue) Purge() int {
	q.mu.Lock()
	if q.log != nil {
		q.ready.each(func(e *Entry) {
			if e.LogOffset != 0 {
				q.retireLocked(*e)
			}
		})
	}
	n := q.clearReadyLocked() + q.dropSpillLocked()
	q.unlock()
	return n
}

// Counts returns ready and unacked message counts and the number of consumers.
func (q *Queue) Counts() (ready, unacked, consumers int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready.Len() + q.spill.count, q.unacked, len(q.consumers)
}

// ReadyBytes returns the body bytes of ready messages.
func (q *Queue) ReadyBytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.readyBytes + q.spill.bytes
}

// Delete marks the queue deleted, drops its messages, and tells its consumers (server-sent
// basic.cancel). It returns the number of ready messages dropped. ifUnused / ifEmpty make it
// fail with 406 as RabbitMQ does.
func (q *Queue) Delete(ifUnused, ifEmpty bool) (int, error) {
	if q.stream != nil {
		ifUnused, ifEmpty = false, false // RabbitMQ ignores both for streams
	}
	q.mu.Lock()
	if ifUnused && len(q.consumers) > 0 {
		q.mu.Unlock()
		return 0, amqp.ChannelErr(amqp.PreconditionFailed, "queue '%s' in vhost '%s' in use", q.Name, q.VHost)
	}
	if ifEmpty && q.ready.Len()+q.spill.count > 0 {
		q.mu.Unlock()
		return 0, amqp.ChannelErr(amqp.PreconditionFailed, "queue '%s' in vhost '%s' not empty", q.Name, q.VHost)
	}
	if q.deleted {
		q.mu.Unlock()
		return 0, nil
	}
	q.deleted = true
	q.stopTimersLocked()
	n := q.clearReadyLocked() + q.dropSpillLocked()
	q.retired = q.retired[:0] // the whole log goes away with the queue
	consumers := q.consumers
	q.consumers = nil
	q.mu.Unlock()
	next := q.successor
	for _, s := range consumers {
		MoveOrCancel(s.c, &q.self, next)
	}
	return n, nil
}

// OutOfService deletes the queue in memory (as Delete: consumers cancelled, publishes
// dropped) but keeps its log as it is, so that a restart recovers its messages: for a queue
// whose state no longer matches its log. Acks of messages delivered before still retire them
// from the log.
func (q *Queue) OutOfService() { q.OutOfServiceTo(nil) }

// OutOfServiceTo is OutOfService for a queue whose service goes on through next (a replicated
// queue's leadership moved to another node): its consumers move there (MoveOrCancel).
func (q *Queue) OutOfServiceTo(next Ref) {
	q.mu.Lock()
	q.outOfService = true
	q.successor = next
	q.mu.Unlock()
	q.Delete(false, false)
}

// Deleted reports whether the queue was deleted.
func (q *Queue) Deleted() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.deleted
}

// HasConsumers reports whether any consumer is attached.
func (q *Queue) HasConsumers() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.consumers) > 0
}

// standbyErr is the answer of a queue this node does not lead.
func (q *Queue) standbyErr() error {
	return amqp.ChannelErr(amqp.ResourceLocked, "queue '%s' in vhost '%s' is led by another node: connect to its leader", q.Name, q.VHost)
}
