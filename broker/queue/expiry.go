package queue

import (
	"time"

	"github.com/warrenmq/warren/broker/message"
)

// Message expiry (x-message-ttl, the expiration property) and queue expiry (x-expires).
// Expired messages are removed from the head of the queue — never delivered — by dispatch,
// basic.get, and a timer set for the head's expiry (no timer while nothing can expire), as
// RabbitMQ's classic queues do. Times are unix milliseconds from q.now, so tests can move time.

// DeadLetter is a message leaving a queue for a reason RabbitMQ dead-letters: "expired",
// "rejected", "maxlen" or "delivery_limit".
type DeadLetter struct {
	Msg    *message.Message
	Reason string
}

func (q *Queue) nowMs() int64 { return q.now().UnixMilli() }

// expiryFor returns a new message's absolute expiry (0: never): the smaller of the queue's
// TTL and the message's expiration property.
func (q *Queue) expiryFor(m *message.Message, now int64) int64 {
	ttl := q.cfg.MessageTTL
	if ms, ok, err := m.ExpirationMillis(); ok && err == nil && (ttl < 0 || ms < ttl) {
		ttl = ms
	}
	if ttl < 0 {
		return 0
	}
	return now + ttl
}

// expireLocked drops expired messages from the head, dead-lettering them.
func (q *Queue) expireLocked() {
	if q.ready.Len() == 0 && q.spill.count == 0 {
		return
	}
	now := q.nowMs()
	for {
		if q.ready.Len() == 0 {
			q.pageInLocked()
			if q.ready.Len() == 0 {
				return
			}
		}
		e := q.ready.Front()
		if e.Expires == 0 || e.Expires > now {
			return
		}
		q.dropLocked(q.popReadyLocked(), "expired")
	}
}

// dropLocked removes a message for good: retired from the log, dead-lettered if the queue has
// a dead-letter exchange (the vhost decides, after the lock is released).
func (q *Queue) dropLocked(e Entry, reason string) {
	if e.LogOffset != 0 {
		q.retireLocked(e)
	}
	q.freedLocked(e)
	if q.cfg.HasDLX && q.OnDeadLetter != nil {
		q.dead = append(q.dead, DeadLetter{Msg: e.Msg, Reason: reason})
	}
}

// scheduleExpiryLocked arms the timer for the head's expiry, if it has one.
func (q *Queue) scheduleExpiryLocked() {
	if q.deleted || q.ready.Len() == 0 {
		return
	}
	at := q.ready.Front().Expires
	if at == 0 || (q.timerAt != 0 && q.timerAt <= at) {
		return
	}
	q.timerAt = at
	d := time.Duration(at-q.nowMs()) * time.Millisecond
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.onTimer)
	} else {
		q.timer.Reset(d)
	}
}

func (q *Queue) onTimer() {
	q.mu.Lock()
	q.timerAt = 0
	q.expireLocked()
	q.scheduleExpiryLocked()
	q.checkUnusedLocked()
	q.unlock()
}

// touchLocked records use of the queue (consume, get, declare) for x-expires, and arms the
// expiry timer when the queue is unused.
func (q *Queue) touchLocked() {
	q.lastUsed = q.nowMs()
	if q.cfg.Expires <= 0 || q.deleted || len(q.consumers) > 0 {
		return
	}
	at := q.lastUsed + q.cfg.Expires
	q.unusedAt = at
	d := time.Duration(at-q.nowMs()) * time.Millisecond
	if q.unusedTimer == nil {
		q.unusedTimer = time.AfterFunc(d, q.onUnusedTimer)
	} else {
		q.unusedTimer.Reset(d)
	}
}

func (q *Queue) onUnusedTimer() {
	q.mu.Lock()
	q.checkUnusedLocked()
	q.unlock()
}

// checkUnusedLocked marks the queue expired when x-expires has passed without use.
func (q *Queue) checkUnusedLocked() {
	if q.cfg.Expires <= 0 || q.deleted || len(q.consumers) > 0 || q.unusedAt == 0 {
		return
	}
	if q.nowMs() >= q.unusedAt {
		q.expired = true
	}
}

// Touch records a use of the queue (queue.declare of an existing queue resets x-expires).
func (q *Queue) Touch() {
	q.mu.Lock()
	q.touchLocked()
	q.unlock()
}

func (q *Queue) stopTimersLocked() {
	if q.timer != nil {
		q.timer.Stop()
	}
	if q.unusedTimer != nil {
		q.unusedTimer.Stop()
	}
}
