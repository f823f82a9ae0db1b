package queue

import (
	"maps"
	"math"
	"slices"
	"sort"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

// A stream queue (x-queue-type: stream) keeps a log instead of a ready list: every message is
// appended with the next offset (from 0) and stays after it is delivered and acked, until
// retention drops its segment. Each consumer has its own position (consumerSlot.offset),
// chosen by x-stream-offset, and receives every message from there on, each with the header
// x-stream-offset; an ack only returns prefetch credit. It is the same *Queue with the same
// Consumer interface, so routing, the vhost registry, management and the session's credit and
// outbound buffer work unchanged; the queue's methods hand over to this file where a stream
// differs (Publish, dispatch, Requeue, RestoreRecord).
//
// Durability: with a log (a durable queue under Storage) every message is a record of kind
// recStream, persistent or not, as RabbitMQ streams store everything; publisher confirms wait
// for it. Recovery replays the live records. Messages stay in memory up to the queue's memory
// bound (Budget.MaxQueueBytes); older ones are read back from the log when a consumer reaches
// them (the log must then have Read, as *wal.Log has), a batch at a time and without q.mu.
//
// Retention works by segment, as RabbitMQ's: records are grouped into segments of
// x-stream-max-segment-size-bytes, and on each append the oldest segments are dropped (their
// records retired in the log) while the stream is over x-max-length-bytes or a segment's newest
// record is older than x-max-age. The current segment is never dropped.

// stream is a stream queue's state, guarded by q.mu.
type stream struct {
	maxBytes int64 // x-max-length-bytes; -1: none
	maxAge   int64 // x-max-age in ms; 0: none
	segBytes int64 // x-stream-max-segment-size-bytes

	first uint64      // offset of recs[0]
	next  uint64      // offset of the next message
	recs  []streamRec // first .. next-1
	segs  []streamSeg // oldest first; segs[0].first == first when recs is not empty
	bytes int64       // record bytes of all segments

	cached    int64  // memory of the messages held in recs (memSize)
	cacheFrom uint64 // records below this offset were evicted from memory (read from the log)

	// Evicted messages are read back from the log without q.mu (a read can wait behind the
	// log's fsync): dispatch notes where a consumer stopped at an evicted record (misses), the
	// next unlock reads a batch from there (streamFetchesLocked, fetchStream) into loaded and
	// dispatches again. loaded keeps what some consumer reaches within streamReadBatch.
	misses   []uint64
	loaded   map[uint64]*message.Message // stream offset → message; nil: unreadable, skipped
	fetching bool                        // a read-back is running: it dispatches when done
}

// streamReadBatch is how many evicted records one read-back takes from a consumer's position.
const streamReadBatch = 64

// streamFetch is an evicted record to read back from the log.
type streamFetch struct{ off, logOff uint64 }

// streamRec is one message of the stream.
type streamRec struct {
	msg    *message.Message // nil: evicted, read back from the log at logOff
	logOff uint64           // 0: not persisted (no log)
	ts     int64            // unix ms when appended
	size   int64            // record bytes, for x-max-length-bytes
}

// streamSeg is a run of records counted together for retention.
type streamSeg struct {
	first uint64 // offset of its first record
	bytes int64
	last  int64 // newest timestamp (unix ms)
}

// streamReader is what a stream needs from its log to read back evicted messages; *wal.Log
// has it. Without it, messages are never evicted from memory.
type streamReader interface {
	Read(offset uint64) ([]byte, error)
}

// newStream reads the retention arguments (validated by CheckTypeDeclare).
func newStream(args amqp.Table) *stream {
	s := &stream{maxBytes: -1, segBytes: DefaultStreamSegmentBytes}
	if n, ok := argInt(args["x-max-length-bytes"]); ok && n >= 0 {
		s.maxBytes = n
	}
	if n, ok := argInt(args["x-stream-max-segment-size-bytes"]); ok && n >= 0 {
		s.segBytes = n
	}
	if a, ok := args["x-max-age"].(string); ok {
		if d, err := parseAge(a); err == nil {
			s.maxAge = d.Milliseconds()
		}
	}
	return s
}

// IsStream reports whether q is a stream queue (x-queue-type: stream).
func (q *Queue) IsStream() bool { return q.stream != nil }

// StreamBounds returns the offsets of the first message a stream holds and of the next one
// it will append (equal when it is empty), and the bytes it holds.
func (q *Queue) StreamBounds() (first, next uint64, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stream == nil {
		return 0, 0, 0
	}
	return q.stream.first, q.stream.next, q.stream.bytes
}

// publishStream appends m to the stream and delivers it to the consumers that are waiting.
func (q *Queue) publishStream(m *message.Message, c Completion) PubStatus {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return PubDropped
	}
	s := q.stream
	now := q.nowMs()
	r := streamRec{msg: m, ts: now}
	status := PubQueued
	q.encBuf = appendStreamRecord(q.encBuf[:0], s.next, now, m)
	r.size = int64(len(q.encBuf)) // the record's size counts for retention, with a log or not
	if q.log != nil {
		if c != nil {
			status = PubPending
		}
		r.logOff = q.log.Append(q.encBuf, logDone(c))
	}
	if cap(q.encBuf) > 1<<20 {
		q.encBuf = nil
	}
	q.stats.Published.Add(1)
	q.appendStreamLocked(r)
	q.retainStreamLocked(now)
	q.evictStreamLocked()
	q.dispatchStreamLocked()
	q.unlock()
	return status
}

// appendStreamLocked adds a record at offset s.next, opening a new segment when the current
// one would grow past the segment size.
func (q *Queue) appendStreamLocked(r streamRec) {
	s := q.stream
	if n := len(s.segs); n == 0 || (s.segs[n-1].bytes > 0 && s.segs[n-1].bytes+r.size > s.segBytes) {
		s.segs = append(s.segs, streamSeg{first: s.next})
	}
	sg := &s.segs[len(s.segs)-1]
	sg.bytes += r.size
	sg.last = max(sg.last, r.ts)
	s.bytes += r.size
	if r.msg != nil {
		s.cached += memSize(r.msg)
	}
	s.recs = append(s.recs, r)
	s.next++
}

// retainStreamLocked drops the oldest segments (never the current one) while the stream is
// over x-max-length-bytes or their newest record is older than x-max-age; their records are
// retired in the log at the next unlock.
func (q *Queue) retainStreamLocked(now int64) {
	s := q.stream
	for len(s.segs) > 1 {
		sg := s.segs[0]
		over := s.maxBytes >= 0 && s.bytes > s.maxBytes
		old := s.maxAge > 0 && sg.last < now-s.maxAge
		if !over && !old {
			return
		}
		n := int(s.segs[1].first - s.first)
		for i := range s.recs[:n] {
			r := &s.recs[i]
			if r.logOff != 0 {
				q.retired = append(q.retired, r.logOff)
			}
			if r.msg != nil {
				s.cached -= memSize(r.msg)
			}
		}
		clear(s.recs[:n])
		s.recs = s.recs[n:]
		s.segs = s.segs[1:]
		s.bytes -= sg.bytes
		s.first += uint64(n)
		s.cacheFrom = max(s.cacheFrom, s.first)
	}
}

// evictStreamLocked drops the oldest messages held in memory beyond the queue's memory bound;
// they stay in the log, which consumers read them back from.
func (q *Queue) evictStreamLocked() {
	s := q.stream
	limit := int64(DefaultMaxQueueBytes)
	if q.budget != nil && q.budget.MaxQueueBytes > 0 {
		limit = q.budget.MaxQueueBytes
	}
	for s.cached > limit && s.cacheFrom < s.next {
		r := &s.recs[s.cacheFrom-s.first]
		if r.logOff == 0 {
			return // not in a log: memory is all there is
		}
		if r.msg != nil {
			s.cached -= memSize(r.msg)
			r.msg = nil
		}
		s.cacheFrom++
	}
}

// streamEntryLocked returns the delivery of the message at off: the message with the header
// x-stream-offset, Offset set to off and no LogOffset (an ack retires nothing). ok is false
// when the message is not there to deliver: evicted and not read back yet (see
// streamMissingLocked), or unreadable from the log (it is skipped).
func (q *Queue) streamEntryLocked(off uint64) (Entry, bool) {
	s := q.stream
	m := s.recs[off-s.first].msg
	if m == nil {
		if m = s.loaded[off]; m == nil {
			return Entry{}, false
		}
	}
	return Entry{Msg: withStreamOffset(m, off), Offset: off}, true
}

// streamMissingLocked reports whether the message at off must first be read back from the log.
func (q *Queue) streamMissingLocked(off uint64) bool {
	s := q.stream
	if s.recs[off-s.first].msg != nil {
		return false
	}
	if _, ok := q.log.(streamReader); !ok {
		return false // nothing to read it from: skipped
	}
	_, ok := s.loaded[off]
	return !ok
}

// streamFetchesLocked takes the evicted records to read back for the consumers that stopped
// at one: up to streamReadBatch from each such position. None while another read-back runs:
// that one dispatches again when it is done, and reads what is still missing then.
func (q *Queue) streamFetchesLocked() []streamFetch {
	s := q.stream
	if s.fetching {
		s.misses = s.misses[:0]
		return nil
	}
	slices.Sort(s.misses)
	var fs []streamFetch
	for _, m := range s.misses {
		if n := len(fs); n > 0 && fs[n-1].off >= m {
			continue
		}
		for off, n := max(m, s.first), 0; off < s.next && n < streamReadBatch; off, n = off+1, n+1 {
			r := &s.recs[off-s.first]
			if r.msg != nil {
				break // evicted records are the oldest ones: the rest is in memory
			}
			if _, ok := s.loaded[off]; !ok {
				fs = append(fs, streamFetch{off, r.logOff})
			}
		}
	}
	s.misses = s.misses[:0]
	s.fetching = len(fs) > 0
	return fs
}

// fetchStream reads the records of fs from the log, without q.mu, then takes q.mu, keeps them
// for the consumers (dropping read-back messages every consumer is past) and dispatches. It
// returns with q.mu held.
func (q *Queue) fetchStream(fs []streamFetch) {
	rd := q.log.(streamReader) // misses are noted only when it is one
	ms := make([]*message.Message, len(fs))
	for i, f := range fs {
		if b, err := rd.Read(f.logOff); err == nil {
			if _, _, m, err := decodeStreamRecord(b); err == nil {
				ms[i] = m
			}
		}
	}
	q.mu.Lock()
	s := q.stream
	s.fetching = false
	if q.deleted {
		return
	}
	// Keep what a consumer reaches within its next streamReadBatch messages: a consumer that
	// waits (no credit) holds at most that much in memory, however far the others read.
	at := make([]uint64, 0, len(q.consumers))
	for _, sl := range q.consumers {
		at = append(at, sl.offset)
	}
	slices.Sort(at)
	wanted := func(off uint64) bool {
		i, _ := slices.BinarySearch(at, off+1) // at[i-1] is the last position <= off
		return off >= s.first && i > 0 && off < at[i-1]+streamReadBatch
	}
	for off := range s.loaded {
		if !wanted(off) {
			delete(s.loaded, off)
		}
	}
	if s.loaded == nil {
		s.loaded = make(map[uint64]*message.Message, len(fs))
	}
	for i, f := range fs {
		if wanted(f.off) {
			s.loaded[f.off] = ms[i]
		}
	}
	q.dispatchLocked()
}

// withStreamOffset returns a copy of m whose headers carry x-stream-offset (a long), as
// RabbitMQ delivers stream messages.
func withStreamOffset(m *message.Message, off uint64) *message.Message {
	p, err := amqp.DecodeProperties(m.RawProps)
	if err != nil {
		return m
	}
	h := make(amqp.Table, len(p.Headers)+1)
	maps.Copy(h, p.Headers)
	h["x-stream-offset"] = int64(min(off, math.MaxInt64))
	p.Headers = h
	dm, err := message.New(m.Exchange, m.RoutingKey, p.AppendTo(nil), m.Body)
	if err != nil {
		return m
	}
	return dm
}

// dispatchStreamLocked delivers to each consumer from its position until it refuses (no
// credit, full outbound buffer) or has everything; it then calls Kick when it can take more.
func (q *Queue) dispatchStreamLocked() {
	s := q.stream
	for i := range q.consumers {
		sl := &q.consumers[i]
		if sl.offset < s.first {
			sl.offset = s.first // retention dropped what it had not read yet
		}
		for sl.offset < s.next {
			if q.streamMissingLocked(sl.offset) {
				s.misses = append(s.misses, sl.offset) // read back at the next unlock
				break
			}
			e, ok := q.streamEntryLocked(sl.offset)
			if !ok {
				sl.offset++
				continue
			}
			r := sl.c.Deliver(&q.self, e)
			if r == Refused {
				break
			}
			if r == Taken {
				q.unacked++ // released by Ack (or Requeue, which delivers nothing again)
			}
			q.stats.Delivered.Add(1)
			sl.offset++
		}
	}
}

// AddStreamConsumer attaches a consumer to a stream queue after RabbitMQ's checks (see
// checkStreamConsume), starting where its x-stream-offset says. Exclusive use does not apply
// to streams (RabbitMQ accepts further consumers). added runs under the queue lock once the
// consumer is accepted and before any delivery, as with AddConsumer.
func (q *Queue) AddStreamConsumer(c Consumer, sc StreamConsume, added func()) error {
	start, err := q.checkStreamConsume(sc)
	if err != nil {
		return err
	}
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return amqp.ChannelErr(amqp.NotFound, "no queue '%s' in vhost '%s'", q.Name, q.VHost)
	}
	q.consumers = append(q.consumers, consumerSlot{c: c, offset: q.streamStartLocked(start)})
	q.hadConsumer = true
	if added != nil {
		added()
	}
	q.dispatchLocked()
	q.unlock()
	return nil
}

// streamStartLocked resolves a consumer's x-stream-offset to the offset it reads first. An
// offset past the end waits for the stream to reach it, as RabbitMQ does.
func (q *Queue) streamStartLocked(st streamStart) uint64 {
	s := q.stream
	switch st.kind {
	case startFirst:
		return s.first
	case startLast:
		if s.next > s.first {
			return s.next - 1
		}
		return s.next
	case startOffset:
		if st.n < 0 || uint64(st.n) < s.first {
			return s.first
		}
		return uint64(st.n)
	case startTime, startAge:
		ts := st.n
		if st.kind == startAge {
			ts = q.nowMs() - st.n
		}
		i := sort.Search(len(s.recs), func(i int) bool { return s.recs[i].ts >= ts })
		return s.first + uint64(i)
	}
	return s.next
}

// restoreStreamRecord appends a record replayed from the log at startup. Retention is not
// applied until the next append.
func (q *Queue) restoreStreamRecord(logOff uint64, rec []byte) error {
	off, ts, m, err := decodeStreamRecord(rec)
	if err != nil {
		return err
	}
	q.mu.Lock()
	s := q.stream
	if len(s.recs) == 0 {
		s.first, s.next, s.cacheFrom = off, off, off
	}
	// Records come in log order; off is s.next unless the log lost or repeated one (then the
	// log's order wins, and offsets continue without a gap).
	q.appendStreamLocked(streamRec{msg: m, logOff: logOff, ts: ts, size: int64(len(rec))})
	q.evictStreamLocked()
	q.mu.Unlock()
	return nil
}
