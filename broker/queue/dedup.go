package queue

import (
	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

// Exactly-once publishing (deduplication), beyond RabbitMQ: a queue declared with
// x-message-deduplication: true drops a message whose deduplication key (the message-id
// property, or the header named by x-deduplication-header) it accepted within its window —
// the last x-cache-size keys and/or those younger than x-cache-ttl ms — and the publisher still
// gets its confirm, so a publisher that retries after a lost confirm creates no duplicate.
//
// The window survives a restart: keys of messages still in the queue come back with the
// messages from the queue's log, and when a keyed persistent message leaves the queue (ack,
// expiry, ...) its key is written to the log first, as a record of its own, retired when the
// key leaves the window. The key record precedes the message's retirement in the same log, so a
// crash can never keep the retirement and lose the key.

type dedupEntry struct {
	seen      int64  // unix ms
	logOffset uint64 // the key record's offset (0: the key lives in a message record or memory)
}

type dedupCache struct {
	keys  map[string]dedupEntry
	order []string // insertion order, for size and age eviction
	head  int
	Drops uint64 // duplicates dropped
}

// dedupKey returns the message's deduplication key ("" when it has none).
func dedupKey(c Config, m *message.Message) string { return DedupKey(c.DedupHeader, m) }

// DedupKey returns m's deduplication key: the value of the named header, or the message-id
// property when header is "" ("" when it has none).
func DedupKey(header string, m *message.Message) string {
	if header != "" {
		switch v := m.Headers()[header].(type) {
		case string:
			return v
		case []byte:
			return string(v)
		case nil:
			return ""
		default:
			b := amqp.AppendTable(nil, amqp.Table{"k": v})
			return string(b)
		}
	}
	if m.Props.Flags&amqp.FlagMessageID == 0 {
		return ""
	}
	return string(m.Props.MessageID)
}

// evict drops keys beyond the window; it returns the log offsets of their key records.
func (d *dedupCache) evict(c Config, now int64, retired []uint64) []uint64 {
	for d.head < len(d.order) {
		k := d.order[d.head]
		e, ok := d.keys[k]
		size := len(d.order) - d.head
		if ok && !(c.DedupSize > 0 && int64(size) > c.DedupSize) && !(c.DedupTTL > 0 && now-e.seen >= c.DedupTTL) {
			break
		}
		d.order[d.head] = ""
		d.head++
		if ok {
			delete(d.keys, k)
			if e.logOffset != 0 {
				retired = append(retired, e.logOffset)
			}
		}
	}
	if d.head > 1024 && d.head*2 > len(d.order) {
		d.order = append([]string(nil), d.order[d.head:]...)
		d.head = 0
	}
	return retired
}

// seen reports whether key is in the window; if not, it enters it.
func (d *dedupCache) check(key string, now int64) bool {
	if d.keys == nil {
		d.keys = make(map[string]dedupEntry)
	}
	if _, ok := d.keys[key]; ok {
		d.Drops++
		return true
	}
	d.keys[key] = dedupEntry{seen: now}
	d.order = append(d.order, key)
	return false
}

func (d *dedupCache) restore(key string, seen int64, offset uint64, now int64, c Config) {
	if d.keys == nil {
		d.keys = make(map[string]dedupEntry)
	}
	// A key that expired while the broker was down enters too: the next evict drops it and
	// retires its record.
	if _, ok := d.keys[key]; !ok {
		d.order = append(d.order, key)
	}
	d.keys[key] = dedupEntry{seen: seen, logOffset: offset}
}

// duplicateLocked checks and records a new message's key; true means drop it.
func (q *Queue) duplicateLocked(m *message.Message) bool {
	key := dedupKey(q.cfg, m)
	if key == "" {
		return false
	}
	now := q.nowMs()
	q.retired = q.dedup.evict(q.cfg, now, q.retired)
	if q.dedup.check(key, now) {
		q.stats.Duplicates.Add(1)
		return true
	}
	return false
}

// keepKeyLocked writes the key of a persistent message that leaves the queue as a record of
// its own, so the window outlives it; called before the message's retirement is recorded.
func (q *Queue) keepKeyLocked(e Entry) {
	if !q.cfg.Dedup || e.LogOffset == 0 || q.log == nil {
		return
	}
	key := dedupKey(q.cfg, e.Msg)
	if key == "" {
		return
	}
	d, ok := q.dedup.keys[key]
	if !ok || d.logOffset != 0 {
		return // already out of the window, or already kept
	}
	q.encBuf = appendKeyRecord(q.encBuf[:0], key, d.seen)
	d.logOffset = q.log.Append(q.encBuf, nil)
	q.dedup.keys[key] = d
}

// Duplicates returns how many duplicate messages the queue dropped.
func (q *Queue) Duplicates() uint64 { return q.stats.Duplicates.Load() }
