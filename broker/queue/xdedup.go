package queue

import "github.com/warrenmq/warren/broker/message"

// Exchange-level deduplication keeps its window in memory, at the exchange (the vhost owns
// it), and makes it durable through the queues the messages reached: an exchange has no log
// of its own, and a window written to a log of its own could be durable while the message it
// let through is not (a transient message, or a crash before the queue's write), so that a
// retry after a crash would be dropped and the message lost. Here the key is durable exactly
// when the message is: it is in the message's record, and when a persisted message leaves a
// durable queue while its key is still in the exchange's window, the queue writes the key as
// a record of its own (kind 4) before the message's retirement, and retires it when the
// exchange's window lets the key go.

// ExchangeKeys connects a queue to the deduplication windows of exchanges (implemented by
// the vhost). Its methods are called with the queue's lock held (RestoredKey and
// RestoredMessage at startup, under the vhost's lock); they must not call back into queues.
type ExchangeKeys interface {
	// Held returns the key m holds in the window of the exchange it was published to, when
	// that exchange deduplicates and the key is still in its window.
	Held(m *message.Message) (key string, seen int64, ok bool)
	// Kept records that q wrote the key record of (exchange, key) at offset in its log.
	Kept(exchange, key string, q *Queue, offset uint64)
	// RestoredKey offers a key record found in q's log at startup.
	RestoredKey(exchange, key string, seen int64, q *Queue, offset uint64)
	// RestoredMessage offers a message recovered from a queue's log at startup.
	RestoredMessage(m *message.Message)
}

// SetExchangeKeys connects the queue to the exchanges' deduplication windows.
func (q *Queue) SetExchangeKeys(k ExchangeKeys) {
	q.mu.Lock()
	q.xkeys = k
	q.mu.Unlock()
}

// keepXKeyLocked writes the exchange-window key of a persisted message that leaves the queue
// as a record of its own; called before the message's retirement is recorded.
func (q *Queue) keepXKeyLocked(e Entry) {
	if q.xkeys == nil || e.LogOffset == 0 || q.log == nil || e.Msg.Exchange == "" {
		return
	}
	key, seen, ok := q.xkeys.Held(e.Msg)
	if !ok {
		return
	}
	q.encBuf = appendXKeyRecord(q.encBuf[:0], e.Msg.Exchange, key, seen)
	off := q.log.Append(q.encBuf, nil)
	q.xkeys.Kept(e.Msg.Exchange, key, q, off)
}

// RetireRecords retires records of the queue's log (key records an exchange's window let go;
// while the log is replayed at startup, once it is set). A no-op on a deleted queue. Must not
// be called with the queue's lock.
func (q *Queue) RetireRecords(offsets ...uint64) {
	q.mu.Lock()
	if !q.deleted {
		q.retired = append(q.retired, offsets...)
	}
	q.unlock()
}
