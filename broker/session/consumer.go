package session

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/queue"
)

// consumer is one basic.consume subscription; it implements queue.Consumer and queue.Mover.
type consumer struct {
	tag       string
	ch        *Channel
	noAck     bool
	prefetch  uint32 // 0 = unlimited
	exclusive bool
	unacked   uint32             // guarded by ch.mu
	spec      queue.Subscription // how it subscribed (Added cleared): to subscribe again (Moved)

	// qmu guards q and done, and is held while the consumer moves to another Ref (Moved): it
	// comes before any lock of the queue's or the channel's.
	qmu  sync.Mutex
	q    queue.Ref
	done bool // cancelled by its client or its channel's end: it moves nowhere
	// moved: the consumer moved to another Ref once (Moved); its deliveries from the one
	// before settle there, and their credit must wake the new one (Channel.settle).
	moved atomic.Bool
}

// Tag returns the consumer tag.
func (cs *consumer) Tag() string { return cs.tag }

// ref returns the Ref the consumer is subscribed through.
func (cs *consumer) ref() queue.Ref {
	cs.qmu.Lock()
	defer cs.qmu.Unlock()
	return cs.q
}

// unsubscribe ends the subscription (basic.cancel, the channel's end).
func (cs *consumer) unsubscribe() {
	cs.qmu.Lock()
	cs.done = true
	q := cs.q
	cs.qmu.Unlock()
	q.Unsubscribe(cs)
}

// adopter is a Ref that takes a consumer moving to it without waiting for its home (a
// replicated queue's remote Ref: it subscribes at the leader as soon as one answers).
type adopter interface {
	Adopt(c queue.Consumer, s queue.Subscription)
}

// Moved follows the consumer's replicated queue to its new leader, reached through to: the
// client sees no basic.cancel, as with a RabbitMQ quorum queue, unless it asked for
// x-cancel-on-ha-failover. Its unacked deliveries stay with from (their settles are dropped;
// the new leader delivers those messages again, redelivered).
func (cs *consumer) Moved(from, to queue.Ref) {
	if b, _ := cs.spec.Args["x-cancel-on-ha-failover"].(bool); b {
		cs.Cancelled(from)
		return
	}
	cs.qmu.Lock()
	if cs.done || cs.q != from {
		cs.qmu.Unlock()
		return
	}
	cs.q = to
	cs.moved.Store(true)
	if a, ok := to.(adopter); ok {
		a.Adopt(cs, cs.spec)
		cs.qmu.Unlock()
		return
	}
	err := to.Subscribe(cs, cs.spec)
	if err != nil {
		cs.q = from
	}
	cs.qmu.Unlock()
	if err != nil {
		cs.ch.c.log.Warn().Err(err).Str("queue", from.Name()).Str("consumer", cs.tag).Msg("consumer could not follow its queue to the new leader: cancelled")
		cs.Cancelled(from)
	}
}

// Deliver encodes basic.deliver + content into the connection's outbound buffer if the consumer
// has credit. Called with the queue's lock held; takes ch.mu then the connection's outMu.
func (cs *consumer) Deliver(q queue.Ref, e queue.Entry) queue.Result {
	ch := cs.ch
	c := ch.c
	ch.mu.Lock()
	if ch.released {
		ch.mu.Unlock()
		return queue.Refused
	}
	if !cs.noAck {
		if (cs.prefetch > 0 && cs.unacked >= cs.prefetch) || (ch.globalPrefetch > 0 && ch.globalUnacked >= ch.globalPrefetch) {
			ch.mu.Unlock()
			return queue.Refused // the ack that frees credit re-runs dispatch
		}
	}
	c.outMu.Lock()
	if c.outFullLocked(q) {
		c.outMu.Unlock()
		ch.mu.Unlock()
		return queue.Refused
	}
	ch.nextTag++
	tag := ch.nextTag
	m := e.Msg
	c.out = amqp.AppendBasicDeliver(c.out, ch.id, cs.tag, tag, e.Redelivered, m.Exchange, m.RoutingKey)
	c.appendContentLocked(ch.id, q.DeliveryProps(e), m.Body)
	c.outMu.Unlock()
	res := queue.Settled
	if cs.noAck {
		ch.count(StatDeliverNoAck, 1)
	} else {
		ch.count(StatDeliver, 1)
	}
	if e.Redelivered {
		ch.count(StatRedeliver, 1)
	}
	if !cs.noAck {
		ch.unacked.push(unackedEntry{tag: tag, q: q, e: e, cs: cs})
		cs.unacked++
		ch.globalUnacked++
		res = queue.Taken
	}
	ch.mu.Unlock()
	c.kick()
	return res
}

// ChannelFull says whether the channel-wide prefetch holds this consumer back (a queue led on
// another node then gives back what it sent ahead: remote.Ref). Takes ch.mu.
func (cs *consumer) ChannelFull() bool {
	if cs.noAck {
		return false
	}
	ch := cs.ch
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.globalPrefetch > 0 && ch.globalUnacked >= ch.globalPrefetch
}

// Cancelled is called when the queue is deleted under the consumer: send basic.cancel
// (consumer_cancel_notify) and forget the consumer. The channel's map is owned by the reader
// goroutine, so removal is deferred to it through the outbound path: the tag simply stops
// receiving deliveries.
func (cs *consumer) Cancelled(queue.Ref) {
	ch := cs.ch
	ch.mu.Lock()
	released := ch.released
	ch.mu.Unlock()
	if released {
		return // the channel is gone (and its id may be reused)
	}
	if ch.c.clientSupport.cancelNotify {
		ch.c.send(ch.id, &amqp.BasicCancel{ConsumerTag: cs.tag, NoWait: true})
	}
}

// unackedEntry is a delivery awaiting ack on a channel.
type unackedEntry struct {
	tag uint64
	q   queue.Ref // nil: a tombstone in unackedList
	e   queue.Entry
	cs  *consumer // nil for basic.get
}

// unackedList holds a channel's unacked deliveries in tag order. Tags only grow, so pushes go
// to the back, multiple-acks take a prefix, and single acks in the middle leave a tombstone
// (q == nil) that is compacted away from the front. No per-message map.
type unackedList struct {
	es   []unackedEntry
	head int
	live int
}

func (l *unackedList) push(e unackedEntry) {
	l.es = append(l.es, e)
	l.live++
}

func (l *unackedList) find(tag uint64) int {
	s := l.es[l.head:]
	i := sort.Search(len(s), func(i int) bool { return s[i].tag >= tag })
	if i < len(s) && s[i].tag == tag && s[i].q != nil {
		return l.head + i
	}
	return -1
}

func (l *unackedList) has(tag uint64) bool { return l.find(tag) >= 0 }

func (l *unackedList) take(tag uint64) (unackedEntry, bool) {
	i := l.find(tag)
	if i < 0 {
		return unackedEntry{}, false
	}
	e := l.es[i]
	l.es[i] = unackedEntry{tag: tag}
	l.live--
	l.compact()
	return e, true
}

func (l *unackedList) takeUpTo(tag uint64) []unackedEntry {
	var out []unackedEntry
	for l.head < len(l.es) && l.es[l.head].tag <= tag {
		if l.es[l.head].q != nil {
			out = append(out, l.es[l.head])
			l.live--
		}
		l.es[l.head] = unackedEntry{}
		l.head++
	}
	l.compact()
	return out
}

func (l *unackedList) takeAll() []unackedEntry {
	out := make([]unackedEntry, 0, l.live)
	for _, e := range l.es[l.head:] {
		if e.q != nil {
			out = append(out, e)
		}
	}
	clear(l.es)
	l.es = l.es[:0]
	l.head = 0
	l.live = 0
	return out
}

// insert puts back an entry (transaction rollback) at its tag position.
func (l *unackedList) insert(e unackedEntry) {
	s := l.es[l.head:]
	i := sort.Search(len(s), func(i int) bool { return s[i].tag >= e.tag })
	if i < len(s) && s[i].tag == e.tag {
		s[i] = e
	} else {
		l.es = append(l.es, unackedEntry{})
		copy(l.es[l.head+i+1:], l.es[l.head+i:])
		l.es[l.head+i] = e
	}
	l.live++
}

// compact drops tombstones at the front and reclaims space.
func (l *unackedList) compact() {
	for l.head < len(l.es) && l.es[l.head].q == nil {
		l.es[l.head] = unackedEntry{}
		l.head++
	}
	if l.head == len(l.es) {
		l.es = l.es[:0]
		l.head = 0
	} else if l.head > 1024 && l.head*2 > len(l.es) {
		n := copy(l.es, l.es[l.head:])
		clear(l.es[n:])
		l.es = l.es[:n]
		l.head = 0
	}
}

// Len returns the number of unacked deliveries.
func (l *unackedList) Len() int { return l.live }
