package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
			// A void record (the place of an append that failed) is a retire record naming
			// its own offset; otherwise such records name offsets below their own.
			bad, void := false, r.Kind == KindRetire && isVoid(r.Offset, r.Body)
			if err := forEachOffset(r.Body, func(o uint64) { bad = bad || o == 0 || o >= r.Offset }); err != nil || (bad && !void) {
				l.mu.Unlock()
				return fmt.Errorf("wal: log %q: %s record at offset %d has a bad offset list", l.name, r.Kind, r.Offset)
			}
		default:
			l.mu.Unlock()
			return fmt.Errorf("wal: log %q: record at offset %d has kind %d", l.name, r.Offset, r.Kind)
		}
	}
	p := l.cur
	l.raw = true
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

// ErrExists is returned by LogAt for a log that already holds records elsewhere than first.
var ErrExists = errors.New("wal: log already exists")

// LogAt opens the named log like Log, creating it empty with its first offset at first when
// it does not exist yet: a follower that joins after the leader reclaimed the head of its log
// starts at the leader's FirstOffset and applies from there. (tidwall/wal numbers a new log
// from 1; an empty first segment file named for first makes it start there.) An existing log
// is opened when its next offset is first, or when it already holds records from first on;
// otherwise ErrExists.
func (m *Manager) LogAt(name string, first uint64) (*Log, error) {
	if !validName(name) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	if first == 0 {
		return nil, fmt.Errorf("wal: log %q: first offset 0", name)
	}
	m.openMu.Lock()
	l, err := m.lookup(name)
	if l == nil && err == nil && first > 1 {
		err = m.createAt(name, first)
	}
	m.openMu.Unlock()
	if err != nil {
		return nil, err
	}
	if l == nil {
		if l, err = m.Log(name); err != nil {
			return nil, err
		}
	}
	if l.FirstOffset() > first || l.LastOffset()+1 < first {
		return nil, fmt.Errorf("%w: %q holds offsets %d to %d, not from %d", ErrExists, name, l.FirstOffset(), l.LastOffset(), first)
	}
	return l, nil
}

// createAt makes the folder of a log that starts at first, unless it already has segments.
func (m *Manager) createAt(name string, first uint64) error {
	dir := filepath.Join(m.cfg.Dir, name)
	segs, _, err := listSegments(dir, false)
	if err == nil && len(segs) > 0 {
		return nil // it exists: LogAt checks where it stands
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wal: create log %q: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("wal: create log %q: %w", name, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, segmentName(first)), os.O_CREATE|os.O_WRONLY, 0o640)
	if err == nil {
		err = f.Close()
	}
	if err == nil && !m.cfg.NoSync {
		if err = syncDir(dir); err == nil {
			err = syncDir(m.cfg.Dir)
		}
	}
	if err != nil {
		return fmt.Errorf("wal: create log %q: %w", name, err)
	}
	return nil
}
