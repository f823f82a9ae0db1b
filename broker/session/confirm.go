package session

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/warrenmq/warren/amqp"
)

// confirms tracks publisher confirms on a channel in confirm mode (RabbitMQ's extension,
// confirm.select). Each publish gets the next sequence number. A publish that was written to
// no queue log is confirmed at once; one written to queue logs waits until every log has it on
// disk (pubWait counts them down from the logs' commit goroutine). flush sends one
// basic.ack multiple=true for the longest confirmed prefix, so confirms coalesce; a failed
// write is nacked individually.
type confirms struct {
	mu      sync.Mutex
	seq     uint64   // last sequence number assigned
	sent    uint64   // every sequence number <= sent has been answered
	waiting []uint64 // assigned, not yet durable, ascending
	nacked  []uint64 // durable writes that failed, ascending, not yet answered
	closed  bool     // the channel is gone: late log completions send nothing (its id may be reused)
}

// pubWait counts down the queue logs a publish waits for.
type pubWait struct {
	n    atomic.Int32
	seq  uint64
	ch   *Channel
	err  atomic.Bool
	size int64 // counted in the connection's unconfirmed bytes until done
}

func (w *pubWait) done(err error) {
	if err != nil {
		w.err.Store(true)
	}
	if w.n.Add(-1) == 0 {
		w.ch.c.unconfirmedDone(w.size)
		w.ch.confirmDurable(w.seq, !w.err.Load())
	}
}

// next assigns the next sequence number.
func (cf *confirms) next() uint64 {
	cf.mu.Lock()
	cf.seq++
	s := cf.seq
	cf.mu.Unlock()
	return s
}

// wait marks seq as waiting for durability.
func (cf *confirms) wait(seq uint64) {
	cf.mu.Lock()
	cf.waiting = append(cf.waiting, seq)
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
	limit := cf.seq
	if len(cf.waiting) > 0 {
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
