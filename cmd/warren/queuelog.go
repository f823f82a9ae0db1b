package main

import (
	"sync"
	"sync/atomic"

	"github.com/warrenmq/warren/wal"
)

// queueLog is a durable queue's message log, created on disk at its first append: a declare
// writes only the queue's definition record, and a queue that never holds a persistent message
// (or a stream that never gets one) costs no folder, no segment file, no directory fsync and no
// tail segment in memory. Creating a tidwall log costs about half a millisecond, which made
// declaring many durable queues slow (10,000 from one channel: about 7 s, most of it here).
//
// Retire and MarkDelivered before the first append have nothing to act on: they name offsets
// of data records, and there are none. Sync has nothing to wait for, and Read finds nothing
// (wal.ErrNotFound). An append whose log cannot be created fails as an append to a failed log
// does: it returns 0 and calls done with the error before returning (so a publisher in confirm
// mode gets basic.nack); the next append tries again, so a full disk or a missing permission
// that is fixed lets the queue write again.
//
// The broker calls Append under the queue's lock, so the first one creates the log with that
// lock held (before, the declare did it under the vhost's). All methods may be called
// concurrently.
type queueLog struct {
	s    *walStorage
	name string
	vh   string
	l    atomic.Pointer[wal.Log] // nil until created

	mu      sync.Mutex // serializes the creation
	failing bool       // the last attempt failed (logged once per run of failures)
}

// log returns the wal.Log, creating it on first use.
func (z *queueLog) log() (*wal.Log, error) {
	if l := z.l.Load(); l != nil {
		return l, nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if l := z.l.Load(); l != nil {
		return l, nil
	}
	l, err := z.s.m.Log(z.name)
	if err != nil {
		err = z.s.enc.explain(err)
		if !z.failing {
			z.failing = true
			z.s.log.Error().Str("vhost", z.vh).Str("log", z.name).Err(err).Msg("queue log could not be created")
		}
		return nil, err
	}
	if z.failing {
		z.failing = false
		z.s.log.Warn().Str("vhost", z.vh).Str("log", z.name).Msg("queue log created after failures")
	}
	z.l.Store(l)
	return l, nil
}

// Append creates the log if needed and appends to it (wal.Log.Append).
func (z *queueLog) Append(payload []byte, done func(offset uint64, err error)) uint64 {
	l, err := z.log()
	if err != nil {
		if done != nil {
			done(0, err)
		}
		return 0
	}
	return l.Append(payload, done)
}

// Retire is wal.Log.Retire, or nothing before the first append.
func (z *queueLog) Retire(offsets ...uint64) {
	if l := z.l.Load(); l != nil {
		l.Retire(offsets...)
	}
}

// MarkDelivered is wal.Log.MarkDelivered, or nothing before the first append.
func (z *queueLog) MarkDelivered(offsets ...uint64) {
	if l := z.l.Load(); l != nil {
		l.MarkDelivered(offsets...)
	}
}

// Sync is wal.Log.Sync; before the first append there is nothing to wait for.
func (z *queueLog) Sync() error {
	if l := z.l.Load(); l != nil {
		return l.Sync()
	}
	return nil
}

// Read is wal.Log.Read; before the first append no record exists (wal.ErrNotFound).
func (z *queueLog) Read(offset uint64) ([]byte, error) {
	if l := z.l.Load(); l != nil {
		return l.Read(offset)
	}
	return nil, wal.ErrNotFound
}
