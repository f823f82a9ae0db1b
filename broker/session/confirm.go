package session

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/vhost"
)

// confirms tracks publisher confirms on a channel in confirm mode (RabbitMQ's extension,
// confirm.select). Each publish gets the next sequence number. A publish that was written to
// no queue log is confirmed once it is routed; one written to queue logs waits until every log
// has it on disk (pubWait counts them down from the logs' commit goroutine). flush sends one
// basic.ack multiple=true for the longest answered prefix, so confirms coalesce; a failed or
// refused publish is nacked individually.
//
// A sequence number is answered only once it is routed (routed) and no longer waiting. The
// reader registers a publish as waiting, or as nacked, before it advances routed past it, so a
// flush from a log's commit goroutine, which may run at any moment, never answers a publish
// that is still being routed, and never one whose routing failed (the channel closes instead).
type confirms struct {
	seq    uint64        // last sequence number assigned (reader goroutine only)
	routed atomic.Uint64 // every sequence number <= routed has been routed (written by the reader)

	mu      sync.Mutex
	sent    uint64   // every sequence number <= sent has been answered
	waiting []uint64 // routed to queue logs, not yet durable, ascending
	nacked  []uint64 // refused or failed writes, ascending, not yet answered
	closed  bool     // the channel is gone: late log completions send nothing (its id may be reused)
}

// testHookSeq, when set (tests only), runs on the reader right after a publish got its
// sequence number, before it is routed.
var testHookSeq func(seq uint64)

// pubWait waits for the queues a confirmed publish reached (vhost.Wait counts them down).
// A channel reuses one until a publish leaves it held by a queue (route).
type pubWait struct {
	vhost.Wait
	seq  uint64
	ch   *Channel
	size int64 // counted in the connection's unconfirmed bytes until answered
}

// Answered: every queue has the message durably, or refused it, or failed to keep it.
func (w *pubWait) Answered(rejected, failed bool) {
	w.ch.c.unconfirmedDone(w.size)
	w.ch.confirmDurable(w.seq, !rejected && !failed)
}

// next assigns the next sequence number (reader goroutine).
func (cf *confirms) next() uint64 {
	cf.seq++
	return cf.seq
}

// wait marks seq as waiting for durability; before routed passes it.
func (cf *confirms) wait(seq uint64) {
	cf.mu.Lock()
	cf.waiting = append(cf.waiting, seq)
	cf.mu.Unlock()
}

// nack marks seq, the latest sequence number, as refused; before routed passes it.
func (cf *confirms) nack(seq uint64) {
	cf.mu.Lock()
	cf.nacked = append(cf.nacked, seq) // every other entry is an earlier publish's
	cf.mu.Unlock()
}

// confirmDurable resolves a waiting publish and flushes (from a log's commit goroutine).
func (ch *Channel) confirmDurable(seq uint64, ok bool) {
	cf := &ch.cf
	cf.mu.Lock()
	i := sort.Search(len(cf.waiting), func(i int) bool { return cf.waiting[i] >= seq })
	if i < len(cf.waiting) && cf.waiting[i] == seq {
		cf.waiting = append(cf.waiting[:i], cf.waiting[i+1:]...)
	}
	if !ok {
		j := sort.Search(len(cf.nacked), func(i int) bool { return cf.nacked[i] >= seq })
		cf.nacked = append(cf.nacked, 0)
		copy(cf.nacked[j+1:], cf.nacked[j:])
		cf.nacked[j] = seq
	}
	ch.flushConfirmsLocked()
	cf.mu.Unlock()
}

// flushConfirms answers every publish that can be answered now.
func (ch *Channel) flushConfirms() {
	if !ch.confirm {
		return
	}
	ch.cf.mu.Lock()
	ch.flushConfirmsLocked()
	ch.cf.mu.Unlock()
}

func (ch *Channel) flushConfirmsLocked() {
	cf := &ch.cf
	if cf.closed {
		return
	}
	limit := cf.routed.Load()
	if len(cf.waiting) > 0 && cf.waiting[0] <= limit {
		limit = cf.waiting[0] - 1
	}
	if limit <= cf.sent {
		return
	}
	c := ch.c
	c.outMu.Lock()
	if len(cf.nacked) == 0 || cf.nacked[0] > limit {
		c.out = amqp.AppendBasicAck(c.out, ch.id, limit, limit-cf.sent > 1, false)
	} else {
		// A nack inside the range: answer one by one up to the last nack, then coalesce.
		for s := cf.sent + 1; s <= limit; s++ {
			if len(cf.nacked) > 0 && cf.nacked[0] == s {
				c.out = amqp.AppendBasicAck(c.out, ch.id, s, false, true)
				cf.nacked = cf.nacked[1:]
				if len(cf.nacked) == 0 || cf.nacked[0] > limit {
					if s < limit {
						c.out = amqp.AppendBasicAck(c.out, ch.id, limit, limit-s > 1, false)
					}
					break
				}
				continue
			}
			c.out = amqp.AppendBasicAck(c.out, ch.id, s, false, false)
		}
	}
	c.outMu.Unlock()
	ch.count(StatConfirm, limit-cf.sent)
	cf.sent = limit
	c.kick()
}
