package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/warrenmq/warren/broker/message"
)

// Spill holds the tail of a long queue on disk so that memory stays bounded while a backlog
// grows: transient and persistent messages alike (persistent ones are also in the queue's
// durable log; the spill is only a cache and is wiped on restart). *wal.Log satisfies it
// (from a manager without fsync). Offsets returned by Append are read back with Read and
// retired once paged in. Append returns 0 when the spill cannot take the record (it failed);
// Sync, when implemented, waits for the records appended so far and reports a failed write.
type Spill interface {
	Append(payload []byte, done func(offset uint64, err error)) uint64
	Read(offset uint64) ([]byte, error) // the returned buffer is the caller's
	Retire(offsets ...uint64)
}

// Budget is the memory budget shared by all queues of a node for messages waiting in memory.
// A queue keeps at most MaxQueueBytes in memory; beyond it, or while the node is over Limit,
// new messages go to the queue's spill (when it has one) and are read back in order.
type Budget struct {
	Limit         int64 // node-wide bytes for ready messages in memory (0: no node limit)
	MaxQueueBytes int64 // per queue (0: DefaultMaxQueueBytes)
	MinQueueBytes int64 // a queue may always hold this much (0: DefaultMinQueueBytes)
	used          atomic.Int64
	// inflight is the announced size of large message bodies being received: counted against
	// Limit (and by the broker against its memory alarm) before they reach a queue.
	inflight atomic.Int64
	// largeFreed counts bytes of large messages queues let go of (delivered and settled,
	// dropped, moved to the spill), so the broker can hand memory back to the OS after them.
	largeFreed atomic.Int64
}

// Defaults for Budget.
const (
	DefaultMaxQueueBytes = 16 << 20
	DefaultMinQueueBytes = 1 << 20
	// entryOverhead estimates the memory of a message beyond its properties and body: the
	// Message struct, the slice headers, the ready-list entry and allocator rounding.
	entryOverhead = 320
	// pageBatch bounds one page-in: messages and bytes.
	pageBatchCount = 2048
	pageBatchBytes = 4 << 20
)

// Used returns the bytes of ready messages held in memory by all queues.
func (b *Budget) Used() int64 { return b.used.Load() }

// AddInflight adds n (negative: releases) to the bytes of large bodies being received.
func (b *Budget) AddInflight(n int64) { b.inflight.Add(n) }

// Inflight returns the bytes of large bodies being received.
func (b *Budget) Inflight() int64 { return b.inflight.Load() }

// LargeFreed returns the bytes of large messages let go of since the last TakeLargeFreed.
func (b *Budget) LargeFreed() int64 { return b.largeFreed.Load() }

// TakeLargeFreed returns LargeFreed and starts counting from zero.
func (b *Budget) TakeLargeFreed() int64 { return b.largeFreed.Swap(0) }

// LargeMessage is the body size from which a message counts as large: the memory of
// such messages is watched (Budget.LargeFreed) so that it can be returned to the OS.
const LargeMessage = 1 << 20

// freedLocked notes that the queue let go of e's message.
func (q *Queue) freedLocked(e Entry) {
	if n := e.Msg.BodySize(); n >= LargeMessage && q.budget != nil {
		q.budget.largeFreed.Add(int64(n))
	}
}

func memSize(m *message.Message) int64 {
	return int64(len(m.Body) + len(m.RawProps) + len(m.Exchange) + len(m.RoutingKey) + entryOverhead)
}

// spillRange is a run of consecutive spill offsets, all data records, in queue order, all of
// persistent messages of a queue with a log or all not: a record that cannot be read back
// is then known to have a copy in the queue's log or not. bytes are the body bytes of the
// range's records not yet read back; a range that ends takes the bytes of records that
// could not be read with it, so the queue's byte count does not drift.
type spillRange struct {
	first, last uint64
	persistent  bool
	bytes       int64
}

// spillState is the on-disk tail of the queue (guarded by q.mu).
type spillState struct {
	open   func() (Spill, error) // nil: the queue cannot spill
	log    Spill
	ranges []spillRange
	// tail holds, in memory, messages that arrived after the spill failed while spilled
	// messages were still waiting: they go to the ready list after those, keeping the order.
	// count and bytes include them; their memory is accounted as the ready list's.
	tail   []Entry
	count  int
	bytes  int64       // body bytes of spilled messages
	failed bool        // opening or writing failed once: keep everything in memory
	lost   *SpillError // failures to report at the next unlock (OnSpillError)
	buf    []byte
	unsync int64 // bytes appended since the last wait for the writer (backpressure)
}

// spillSyncBytes bounds what a spill may hold in memory waiting for its writer: past it, the
// publisher waits until the spill's records are written (they are not fsynced).
const spillSyncBytes = 4 << 20

// logSyncBytes is the same bound for persistent messages published without confirms.
const logSyncBytes = 16 << 20

// syncer is implemented by *wal.Log: wait until everything appended so far is written.
type syncer interface{ Sync() error }

// SetSpill lets the queue spill to a log opened on first need (by open). Call before use.
func (q *Queue) SetSpill(open func() (Spill, error)) {
	q.mu.Lock()
	q.spill.open = open
	q.mu.Unlock()
}

// SetBudget attaches the node's memory budget. Call before use.
func (q *Queue) SetBudget(b *Budget) {
	q.mu.Lock()
	q.budget = b
	q.mu.Unlock()
}

// shouldSpillLocked reports whether a new message must go to the spill: the spill is already
// in use (order), or memory is over the queue's or the node's budget.
func (q *Queue) shouldSpillLocked() bool {
	if q.spill.failed || q.spill.open == nil || q.budget == nil {
		return false
	}
	if q.spill.count > 0 {
		return true
	}
	max := q.budget.MaxQueueBytes
	if max == 0 {
		max = DefaultMaxQueueBytes
	}
	if q.memBytes >= max {
		return true
	}
	min := q.budget.MinQueueBytes
	if min == 0 {
		min = DefaultMinQueueBytes
	}
	return q.budget.Limit > 0 && q.budget.used.Load()+q.budget.inflight.Load() >= q.budget.Limit && q.memBytes >= min
}

// spillLocked writes e to the spill; false if that is not possible (then keep it in memory).
func (q *Queue) spillLocked(e Entry) bool {
	s := &q.spill
	if s.log == nil {
		l, err := s.open()
		if err != nil {
			s.failed = true
			return false
		}
		s.log = l
	}
	b := s.buf[:0]
	b = binary.AppendUvarint(b, e.Offset)
	b = binary.AppendUvarint(b, e.LogOffset)
	b = binary.AppendUvarint(b, uint64(e.Expires))
	b = binary.AppendUvarint(b, uint64(e.Returns))
	if e.Redelivered {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = message.AppendEncoded(b, e.Msg)
	off := s.log.Append(b, nil)
	s.unsync += int64(len(b))
	if cap(b) <= 1<<20 {
		s.buf = b[:0]
	}
	if off == 0 { // the spill has failed: this message stays in memory, and the next ones too
		q.spillFailedLocked(errSpillAppend)
		return false
	}
	if s.unsync >= spillSyncBytes {
		s.unsync = 0
		if sy, ok := s.log.(syncer); ok {
			// Backpressure: the spill must not pile up in memory faster than the disk takes it.
			// A failed write stops spilling; records it lost are found when read back.
			if err := sy.Sync(); err != nil {
				q.spillFailedLocked(err)
			}
		}
	}
	persistent := e.LogOffset != 0
	size := int64(e.Msg.BodySize())
	if n := len(s.ranges); n > 0 && s.ranges[n-1].last+1 == off && s.ranges[n-1].persistent == persistent {
		s.ranges[n-1].last = off
		s.ranges[n-1].bytes += size
	} else {
		s.ranges = append(s.ranges, spillRange{first: off, last: off, persistent: persistent, bytes: size})
	}
	s.count++
	s.bytes += size
	q.freedLocked(e) // the message is on disk now
	return true
}

// SpillError reports messages a queue could not read back from its spill (or a spill that
// stopped taking records). Lost messages are gone from the queue; when Persistent, some had a
// copy in the queue's log, which no longer matches the queue: the queue must go out of
// service (a restart recovers them from the log, the spill being a cache).
type SpillError struct {
	Lost       int  // messages lost
	Persistent bool // some of them persistent, in the queue's log
	Err        error
}

func (e *SpillError) Error() string {
	if e.Lost == 0 {
		return "queue: spill failed: " + e.Err.Error()
	}
	kind := "transient"
	if e.Persistent {
		kind = "including persistent"
	}
	return "queue: " + strconv.Itoa(e.Lost) + " messages (" + kind + ") could not be read back from the spill: " + e.Err.Error()
}

func (e *SpillError) Unwrap() error { return e.Err }

var errSpillAppend = errors.New("queue: the spill refused a record")

// spillFailedLocked stops spilling after the spill failed (new messages stay in memory) and
// reports it once.
func (q *Queue) spillFailedLocked(err error) {
	if q.spill.failed {
		return
	}
	q.spill.failed = true
	if q.spill.lost == nil {
		q.spill.lost = &SpillError{Err: err}
	}
}

// spillLostLocked records a spilled message that could not be read back.
func (q *Queue) spillLostLocked(err error, persistent bool) {
	q.stats.SpillLost.Add(1)
	l := q.spill.lost
	if l == nil {
		l = &SpillError{Err: err}
		q.spill.lost = l
	} else if l.Lost == 0 {
		l.Err = err // a read error says more than the append failure before it
	}
	l.Lost++
	l.Persistent = l.Persistent || persistent
}

var errBadSpill = errors.New("queue: malformed spill record")

// readSpill reads and decodes the record at off.
func readSpill(l Spill, off uint64) (Entry, error) {
	rec, err := l.Read(off)
	if err != nil {
		return Entry{}, fmt.Errorf("queue: spill record %d: %w", off, err)
	}
	e, err := decodeSpill(rec)
	if err != nil {
		return Entry{}, fmt.Errorf("queue: spill record %d: %w", off, err)
	}
	return e, nil
}

func decodeSpill(rec []byte) (Entry, error) {
	qo, n := binary.Uvarint(rec)
	if n <= 0 {
		return Entry{}, errBadSpill
	}
	rec = rec[n:]
	lo, n := binary.Uvarint(rec)
	if n <= 0 {
		return Entry{}, errBadSpill
	}
	rec = rec[n:]
	exp, n := binary.Uvarint(rec)
	if n <= 0 {
		return Entry{}, errBadSpill
	}
	rec = rec[n:]
	ret, n := binary.Uvarint(rec)
	if n <= 0 || len(rec) < n+1 {
		return Entry{}, errBadSpill
	}
	red := rec[n] == 1
	m, err := message.DecodeOwned(rec[n+1:]) // Spill.Read's buffer is ours
	if err != nil {
		return Entry{}, err
	}
	return Entry{Msg: m, Offset: qo, LogOffset: lo, Expires: int64(exp), Returns: uint32(ret), Redelivered: red}, nil
}

// pageInLocked moves a batch from the spill to the ready list when the in-memory head runs low.
// A record that cannot be read back is counted and reported (spillLostLocked); the batch goes
// on past it, so the ready list is empty afterwards only when the spill is.
func (q *Queue) pageInLocked() {
	s := &q.spill
	if s.count == 0 || q.ready.Len() >= pageBatchCount/4 {
		return
	}
	var retire []uint64
	var bytes int64
	loaded := 0
	for s.count > 0 && loaded < pageBatchCount && bytes < pageBatchBytes {
		if len(s.ranges) == 0 { // what waited in memory behind the spill
			e := s.tail[0]
			s.tail[0] = Entry{}
			s.tail = s.tail[1:]
			s.count--
			size := int64(e.Msg.BodySize())
			s.bytes -= size
			bytes += size
			loaded++
			q.accountLocked(e, -1) // counted as ready already; pushReadyLocked counts it again
			q.readyBytes += size
			q.pushReadyLocked(e)
			if len(s.tail) == 0 {
				s.tail = nil
			}
			continue
		}
		r := &s.ranges[0]
		off, persistent := r.first, r.persistent
		s.count--
		retire = append(retire, off)
		e, err := readSpill(s.log, off)
		if err == nil {
			size := int64(e.Msg.BodySize())
			r.bytes -= size
			s.bytes -= size
			bytes += size
			loaded++
			q.pushReadyLocked(e)
		} else {
			q.spillLostLocked(err, persistent)
		}
		if r.first == r.last {
			s.bytes -= r.bytes // records of the range that could not be read
			s.ranges = s.ranges[1:]
		} else {
			r.first++
		}
	}
	if len(s.ranges) == 0 {
		s.ranges = nil
	}
	if len(retire) > 0 {
		s.log.Retire(retire...)
	}
}

// tailLocked keeps e in memory behind the spilled messages (the spill failed while some
// waited there).
func (q *Queue) tailLocked(e Entry) {
	s := &q.spill
	s.tail = append(s.tail, e)
	s.count++
	s.bytes += int64(e.Msg.BodySize())
	q.accountLocked(e, 1)
	q.readyBytes -= int64(e.Msg.BodySize()) // in spill.bytes, not in the ready list's
}

// dropSpillLocked discards every spilled message (purge, delete, after clearReadyLocked) and
// returns how many; the log offsets of persistent ones are appended to q.retired (read back
// for that, except for a deleted queue, whose log goes away whole). A persistent record that
// cannot be read is reported: its copy in the log would come back at the next start.
func (q *Queue) dropSpillLocked() int {
	s := &q.spill
	n := s.count
	var retire []uint64
	for _, r := range s.ranges {
		for off := r.first; off <= r.last; off++ {
			retire = append(retire, off)
			if !r.persistent || q.deleted {
				continue
			}
			if e, err := readSpill(s.log, off); err != nil {
				q.spillLostLocked(err, true)
			} else {
				q.retireLocked(e)
			}
		}
	}
	if len(retire) > 0 {
		s.log.Retire(retire...)
	}
	for _, e := range s.tail { // their memory is the ready list's: clearReadyLocked releases it
		if e.LogOffset != 0 && !q.deleted {
			q.retireLocked(e)
		}
	}
	if q.budget != nil && s.bytes >= LargeMessage {
		q.budget.largeFreed.Add(s.bytes) // the spill's buffers for them go with it (or soon)
	}
	s.ranges, s.tail, s.count, s.bytes = nil, nil, 0, 0
	return n
}

// pushReadyLocked appends to the in-memory ready list with memory accounting.
func (q *Queue) pushReadyLocked(e Entry) {
	q.ready.PushBack(e)
	q.accountLocked(e, 1)
}

func (q *Queue) accountLocked(e Entry, sign int64) {
	sz := memSize(e.Msg)
	q.memBytes += sign * sz
	body := int64(e.Msg.BodySize())
	q.readyBytes += sign * body
	if body >= LargeMessage {
		q.largeBytes += sign * body
	}
	if q.budget != nil {
		q.budget.used.Add(sign * sz)
	}
}

func (q *Queue) popReadyLocked() Entry {
	e := q.ready.PopFront()
	q.accountLocked(e, -1)
	return e
}

func (q *Queue) clearReadyLocked() int {
	if q.budget != nil {
		q.budget.used.Add(-q.memBytes)
		q.budget.largeFreed.Add(q.largeBytes)
	}
	q.memBytes, q.readyBytes, q.largeBytes = 0, 0, 0
	return q.ready.Clear()
}
