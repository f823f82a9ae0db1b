package wal

import (
	"errors"
	"fmt"
)

// ErrGap is returned by ApplyRaw for records that do not continue the log at LastOffset()+1.
var ErrGap = errors.New("wal: records do not continue the log")

// ApplyRaw appends records copied from another log (ReadRaw's or OnAppend's, in order) at
// exactly their offsets, for a follower mirroring a queue's log: the first must be
// LastOffset()+1 and the rest consecutive. Bodies are stored as they come, so sealed data
// records stay sealed and open with the same key under the same log name; retire and
// delivered records update the live set as they do when a log is scanned at startup. done,
// when not nil, runs on the commit goroutine once every record is durable here, with the last
// offset. A log is written either by ApplyRaw or by Append/Retire/MarkDelivered, never both:
// retire and delivered records take offsets too.
func (l *Log) ApplyRaw(recs []Record, done func(last uint64, err error)) error {
	if len(recs) == 0 {
		return nil
	}
	l.mu.Lock()
	if err := l.stateErrLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	// Check everything before changing anything.
	for i, r := range recs {
		if r.Offset != l.next+uint64(i) {
			l.mu.Unlock()
			return fmt.Errorf("%w: record %d has offset %d, want %d", ErrGap, i, r.Offset, l.next+uint64(i))
		}
		switch r.Kind {
		case KindData:
		case KindRetire, KindDelivered:
			bad := false
			if err := forEachOffset(r.Body, func(o uint64) { bad = bad || o == 0 || o >= r.Offset }); err != nil || bad {
				l.mu.Unlock()
				return fmt.Errorf("wal: log %q: %s record at offset %d has a bad offset list", l.name, r.Kind, r.Offset)
			}
		default:
			l.mu.Unlock()
			return fmt.Errorf("wal: log %q: record at offset %d has kind %d", l.name, r.Offset, r.Kind)
		}
	}
	p := l.cur
	retired := false
	for _, r := range recs {
		buf, start := beginRecord(p.buf, r.Kind)
		buf = append(buf, r.Body...)
		finishRecord(buf, start)
		p.buf = buf
		p.ends = append(p.ends, len(buf))
		switch r.Kind {
		case KindData:
			l.live.add(r.Offset)
		case KindRetire:
			_ = forEachOffset(r.Body, func(o uint64) { l.live.retire(o) })
			retired = true
		case KindDelivered:
			_ = forEachOffset(r.Body, func(o uint64) { l.live.markDelivered(o) })
		}
		l.next++
	}
	if retired {
		l.live.compact(l.next)
	}
	if done != nil {
		p.dones = append(p.dones, doneEntry{l.next - 1, done})
	}
	q := l.markQueuedLocked()
	l.mu.Unlock()
	if q {
		l.m.enqueue(l)
	}
	return nil
}
