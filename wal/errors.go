package wal

import (
	"errors"
	"fmt"
)

// Sentinel errors. Check them with errors.Is.
var (
	// ErrCorrupt means a log failed its integrity checks somewhere other than a repairable torn
	// tail: a checksum mismatch or broken framing followed by valid records, a segment with the
	// wrong number of records, an undecodable record. The log is out of service; other logs are not
	// affected. The error is a *CorruptError naming the log and the offset.
	ErrCorrupt = errors.New("wal: corrupt log")
	// ErrClosed is returned (or passed to done) after the Log or the Manager was closed.
	ErrClosed = errors.New("wal: closed")
	// ErrNotFound means the offset was never assigned (zero or beyond LastOffset), or, from
	// ReadRaw, that the records from that offset were already reclaimed.
	ErrNotFound = errors.New("wal: offset not found")
	// ErrRetired means the offset holds no live message: it was retired (acked, expired, removed;
	// its space may already be reclaimed) or it is one of the log's own bookkeeping records.
	ErrRetired = errors.New("wal: offset retired")
	// ErrInvalidName is returned for a log name that is not a plain file name.
	ErrInvalidName = errors.New("wal: invalid log name")
)

// CorruptError describes where a log is damaged. It wraps ErrCorrupt.
type CorruptError struct {
	Log    string // log name
	Offset uint64 // offset of the first bad record (0 when not known)
	Reason string // what failed, e.g. "checksum mismatch"
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: log %q corrupt at offset %d: %s", e.Log, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }
