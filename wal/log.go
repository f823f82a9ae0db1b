package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	tidwal "github.com/tidwall/wal"
)

// reclaimFactor sets when whole segments are reclaimed. tidwall/wal's TruncateFront rewrites the
// segment that becomes the first one, so segments below the lowest live offset are only dropped
// once they hold at least reclaimFactor times that segment's bytes. With no backlog the rewritten
// segment is the nearly empty tail, so space comes back right after every segment switch; while a
// backlog drains, at most 1/reclaimFactor extra bytes are written.
const reclaimFactor = 4

// Entry is a live record reported by Replay.
type Entry struct {
	Offset    uint64
	Payload   []byte // only valid during the Replay callback; must not be modified
	Delivered bool   // a MarkDelivered hint for this offset was recorded
}

// Log is one named log: data records with offsets strictly increasing from 1, and the retirement
// and delivery records that say which of them are still live. Offsets are never reused, except
// that the offsets of appends that had not become durable when the process crashed are assigned
// again after recovery.
//
// All methods may be called concurrently. Callbacks passed to Append run on the Manager's commit
// goroutine: they must not block, nor call Sync, Close or any Manager method (Append, Retire,
// MarkDelivered and Read are fine).
type Log struct {
	m    *Manager
	name string
	dir  string
	log  zerolog.Logger
	tw   *tidwal.Log

	cipher Cipher // seals data payloads (nil: plaintext); chosen when the log opens

	// readMu serializes tidwall reads: tidwall loads segments into its cache under its read lock.
	// Lock order: readMu before tidwall's own lock. l.mu and Manager.mu are never held together,
	// nor across a tidwall call or a callback.
	readMu sync.Mutex

	size      atomic.Int64  // bytes on disk (sum of segs)
	synced    atomic.Uint64 // last durable offset
	keep      atomic.Uint64 // KeepFrom: nothing from here on is reclaimed (0: no floor)
	closedCh  chan struct{} // closed once tw is closed
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	err      error // out of service
	closing  bool  // no new work accepted
	closeReq bool  // the commit goroutine closes the log after flushing it
	queued   bool  // in m.dirty
	next     uint64
	written  uint64 // last offset written to tw
	first    uint64 // first offset held in tw
	live     liveSet
	cur      *pending    // gathering work
	inflight *pending    // sealed and being written (or written) by the commit goroutine
	holdoff  bool        // a write failed: nothing is written until the retry timer fires (fault.go)
	raw      bool        // written by ApplyRaw: a failed batch goes back unchanged
	faultErr error       // the current write fault, nil when writes work (fault.go)
	retry    *time.Timer // the retry timer of a write fault (fault.go)

	// owned by the commit goroutine
	segs     []segInfo
	wp       *pending // sealed in the current commit
	werr     error
	cycled   bool // the current commit created a segment file
	closeNow bool
	twClosed bool

	// write faults (fault.go), owned by the commit goroutine
	pre        segMark // the files before the current commit's write: the acknowledged records
	wfault     bool    // werr is a write fault: the batch goes back to be written again
	cutDue     bool    // the files may hold more than the acknowledged records: cut them first
	faultSince time.Time
	faultFails int           // failed commits in the current fault
	backoff    time.Duration // until the next attempt
}

type doneEntry struct {
	off uint64
	fn  func(uint64, error)
}

// pending is a batch of records in envelope form, offsets first, first+1, ...
type pending struct {
	first   uint64
	buf     []byte
	ends    []int // end of each record in buf
	dones   []doneEntry
	waiters []chan error
	retire  []uint64
	dlv     []uint64
}

// maxKeptBuf bounds the batch buffer capacity a log keeps between commits.
const maxKeptBuf = 1 << 20

func (p *pending) reset(first uint64) {
	p.first = first
	if cap(p.buf) > maxKeptBuf {
		p.buf = nil
	}
	p.buf = p.buf[:0]
	p.ends = p.ends[:0]
	clear(p.dones)
	p.dones = p.dones[:0]
	clear(p.waiters)
	p.waiters = p.waiters[:0]
	p.retire = p.retire[:0]
	p.dlv = p.dlv[:0]
}

func (p *pending) record(off uint64) ([]byte, bool) {
	if off < p.first || off-p.first >= uint64(len(p.ends)) {
		return nil, false
	}
	i := int(off - p.first)
	start := 0
	if i > 0 {
		start = p.ends[i-1]
	}
	return p.buf[start:p.ends[i]], true
}

func (m *Manager) twOptions() *tidwal.Options {
	return &tidwal.Options{
		NoSync:           true, // the commit loop syncs once per batch
		SegmentSize:      m.cfg.SegmentSize,
		SegmentCacheSize: 1,
		NoCopy:           true, // entries are immutable once written; we copy what we hand out
		AllowEmpty:       true, // everything retired: truncate to an empty log
		DirPerms:         0o750,
		FilePerms:        0o640,
	}
}

// openLog scans and repairs the log's files, then opens them with tidwall/wal.
func (m *Manager) openLog(name string) (*Log, error) {
	dir := filepath.Join(m.cfg.Dir, name)
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: open log %q: %w", name, err)
	}
	if errors.Is(statErr, fs.ErrNotExist) && !m.cfg.NoSync {
		if err := syncDir(m.cfg.Dir); err != nil {
			return nil, fmt.Errorf("wal: open log %q: %w", name, err)
		}
	}
	l := &Log{
		m:        m,
		name:     name,
		dir:      dir,
		log:      m.log.With().Str("log", name).Logger(),
		cipher:   m.cipherFor(name),
		closedCh: make(chan struct{}),
		cur:      &pending{},
		inflight: &pending{},
	}
	segs, leftovers, err := listSegments(dir, true)
	if err == nil && leftovers {
		// A crash inside TruncateFront: let tidwall finish or undo it, then look again. If its
		// Open fails, the tail is torn as well; the scan below repairs it.
		if tw, err := tidwal.Open(dir, m.twOptions()); err == nil {
			_ = tw.Close()
		}
		segs, leftovers, err = listSegments(dir, true)
		if err == nil && leftovers {
			return nil, &CorruptError{Log: name, Reason: "unfinished truncation (.START/.END files)"}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("wal: open log %q: %w", name, err)
	}
	last, err := l.scan(segs)
	if err != nil {
		return nil, err
	}
	tw, err := tidwal.Open(dir, m.twOptions())
	if err != nil {
		if errors.Is(err, tidwal.ErrCorrupt) {
			return nil, &CorruptError{Log: name, Offset: last + 1, Reason: err.Error()}
		}
		return nil, fmt.Errorf("wal: open log %q: %w", name, err)
	}
	if len(segs) == 0 {
		segs = []segInfo{{start: 1}}
		if !m.cfg.NoSync { // tidwall just created the first segment file
			if err := syncDir(dir); err != nil {
				_ = tw.Close()
				return nil, fmt.Errorf("wal: open log %q: %w", name, err)
			}
		}
	}
	first := segs[0].start
	if f, _ := tw.FirstIndex(); f != first {
		_ = tw.Close()
		return nil, &CorruptError{Log: name, Offset: f, Reason: fmt.Sprintf("tidwall first index %d, scanned %d", f, first)}
	}
	if n, _ := tw.LastIndex(); n != last {
		_ = tw.Close()
		return nil, &CorruptError{Log: name, Offset: n, Reason: fmt.Sprintf("tidwall last index %d, scanned %d", n, last)}
	}
	l.tw = tw
	l.segs = segs
	var size int64
	for _, s := range segs {
		size += s.size
	}
	l.size.Store(size)
	l.synced.Store(last)
	l.next, l.written, l.first = last+1, last, first
	l.cur.reset(l.next)
	l.inflight.reset(l.next)
	l.log.Debug().Uint64("first_offset", first).Uint64("last_offset", last).Int("live", l.live.count).
		Int64("bytes", size).Int("segments", len(segs)).Msg("log opened")
	return l, nil
}

// scan reads every segment, checks every record and rebuilds the live set. It cuts off a torn
// tail (invalid data at the end of the last segment with no valid record behind it) and updates
// segs in place. It returns the last offset.
func (l *Log) scan(segs []segInfo) (uint64, error) {
	if len(segs) == 0 {
		l.live = newLiveSet(1)
		return 0, nil
	}
	live := newLiveSet(segs[0].start)
	var (
		buf  []byte
		err  error
		last uint64
	)
	for i := range segs {
		s := &segs[i]
		path := filepath.Join(l.dir, segmentName(s.start))
		if buf, err = readFileInto(path, buf); err != nil {
			return 0, fmt.Errorf("wal: open log %q: %w", l.name, err)
		}
		n, pos, why := scanSegment(buf, func(j int, k Kind, body []byte) {
			off := s.start + uint64(j)
			switch k {
			case KindData:
				live.add(off)
			case KindRetire:
				_ = forEachOffset(body, func(o uint64) {
					if o < off {
						live.retire(o)
					}
				})
			case KindDelivered:
				_ = forEachOffset(body, func(o uint64) {
					if o < off {
						live.markDelivered(o)
					}
				})
			}
		})
		bad := s.start + uint64(n)
		live.compact(bad) // keep the bitmaps to the live window while scanning a long log
		if i < len(segs)-1 {
			if why != "" {
				return 0, &CorruptError{Log: l.name, Offset: bad, Reason: why + " in segment " + segmentName(s.start)}
			}
			if want := segs[i+1].start - s.start; uint64(n) != want {
				return 0, &CorruptError{Log: l.name, Offset: bad, Reason: fmt.Sprintf(
					"segment %s holds %d records, want %d", segmentName(s.start), n, want)}
			}
			continue
		}
		last = s.start + uint64(n) - 1
		if why == "" {
			break
		}
		if !tornAt(buf, pos) {
			return 0, &CorruptError{Log: l.name, Offset: bad, Reason: why + " before valid records in segment " + segmentName(s.start)}
		}
		if err := truncateFile(path, int64(pos), !l.m.cfg.NoSync); err != nil {
			return 0, fmt.Errorf("wal: repair log %q: %w", l.name, err)
		}
		l.log.Warn().Str("segment", segmentName(s.start)).Uint64("offset", bad).
			Int("bytes_cut", len(buf)-pos).Str("reason", why).Msg("repaired torn tail")
		s.size = int64(pos)
	}
	live.compact(last + 1)
	l.live = live
	return last, nil
}

func truncateFile(path string, size int64, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Name returns the log's name.
func (l *Log) Name() string { return l.name }

func (l *Log) stateErrLocked() error {
	if l.closing {
		return ErrClosed
	}
	return l.err
}

// markQueuedLocked flags the log as having work and reports whether the caller must enqueue it.
func (l *Log) markQueuedLocked() bool {
	if l.queued || (l.holdoff && !l.closeReq) { // in a write fault, the retry timer enqueues
		return false
	}
	l.queued = true
	return true
}

// Append adds a data record and returns its offset at once. The record is durable when done runs
// with a nil error (done may be nil). done runs on the commit goroutine, after the commit's fsync,
// and must not block. payload is copied: the caller may reuse it when Append returns. If the log
// is closed or out of service, Append returns 0 and calls done(0, err) before returning.
func (l *Log) Append(payload []byte, done func(offset uint64, err error)) uint64 {
	l.mu.Lock()
	if err := l.stateErrLocked(); err != nil {
		l.mu.Unlock()
		if done != nil {
			done(0, err)
		}
		return 0
	}
	off := l.next
	l.next++
	p := l.cur
	buf, start := beginRecord(p.buf, KindData)
	if c := l.cipher; c != nil {
		buf = c.Seal(buf, payload, off)
	} else {
		buf = append(buf, payload...)
	}
	finishRecord(buf, start)
	p.buf = buf
	p.ends = append(p.ends, len(buf))
	if done != nil {
		p.dones = append(p.dones, doneEntry{off, done})
	}
	l.live.add(off)
	q := l.markQueuedLocked()
	l.mu.Unlock()
	if q {
		l.m.enqueue(l)
	}
	return off
}

// Retire records that the messages at these offsets are gone (acked, expired, removed). Offsets
// that are not live are ignored. The retirement record is written with the next group commit;
// there is nothing to wait for. Whole segments below the lowest live offset are reclaimed.
func (l *Log) Retire(offsets ...uint64) {
	l.mu.Lock()
	if l.stateErrLocked() != nil {
		l.mu.Unlock()
		return
	}
	n := 0
	for _, o := range offsets {
		if l.live.retire(o) {
			l.cur.retire = append(l.cur.retire, o)
			n++
		}
	}
	q := false
	if n > 0 {
		l.live.compact(l.next)
		q = l.markQueuedLocked()
	}
	l.mu.Unlock()
	if q {
		l.m.enqueue(l)
	}
}

// MarkDelivered records a hint that the messages at these offsets were delivered, so that after a
// crash Replay reports them with Delivered set (redelivered=true). Like Retire it does not wait.
func (l *Log) MarkDelivered(offsets ...uint64) {
	l.mu.Lock()
	if l.stateErrLocked() != nil {
		l.mu.Unlock()
		return
	}
	n := 0
	for _, o := range offsets {
		if l.live.markDelivered(o) {
			l.cur.dlv = append(l.cur.dlv, o)
			n++
		}
	}
	q := n > 0 && l.markQueuedLocked()
	l.mu.Unlock()
	if q {
		l.m.enqueue(l)
	}
}

// Sync waits until everything appended, retired or marked before the call is durable.
func (l *Log) Sync() error {
	l.mu.Lock()
	if err := l.stateErrLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	ch := make(chan error, 1)
	l.cur.waiters = append(l.cur.waiters, ch)
	q := l.markQueuedLocked()
	l.mu.Unlock()
	if q {
		l.m.enqueue(l)
	}
	return <-ch
}

// Close flushes the log's pending work (running its callbacks), closes its files and removes it
// from the Manager; a later Manager.Log opens it again. Closing twice is harmless.
func (l *Log) Close() error {
	l.requestClose()
	<-l.closedCh
	return l.closeErr
}

func (l *Log) requestClose() {
	l.mu.Lock()
	if l.closeReq {
		l.mu.Unlock()
		return
	}
	l.closing, l.closeReq = true, true
	q := l.markQueuedLocked()
	l.mu.Unlock()
	if q {
		l.m.enqueue(l)
	}
}

// Err returns the error that put the log out of service, or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// FirstOffset returns the offset of the oldest record still held (records below it were
// reclaimed), or LastOffset()+1 when the log holds none.
func (l *Log) FirstOffset() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

// LastOffset returns the last assigned offset (durable or not), 0 for a new log.
func (l *Log) LastOffset() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next - 1
}

// SyncedOffset returns the last offset known durable. ReadRaw reads up to it.
func (l *Log) SyncedOffset() uint64 { return l.synced.Load() }

// Len returns the number of live data records.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live.count
}

// Size returns the bytes the log's segment files hold on disk.
func (l *Log) Size() int64 { return l.size.Load() }

// corrupted puts the log out of service because of damage found at off.
func (l *Log) corrupted(off uint64, reason string) error {
	err := &CorruptError{Log: l.name, Offset: off, Reason: reason}
	l.fail(err)
	return err
}

// fail puts the log out of service; the first error sticks and is logged.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
		l.log.Error().Err(err).Msg("log out of service")
	}
	return l.err
}

// readEntry reads and checks the record at off from tidwall. body aliases tidwall's segment
// buffer, which is never modified once written.
func (l *Log) readEntry(off uint64) (Kind, []byte, error) {
	l.readMu.Lock()
	data, err := l.twRead(off)
	l.readMu.Unlock()
	switch {
	case err == nil:
	case errors.Is(err, tidwal.ErrNotFound):
		return 0, nil, ErrNotFound
	case errors.Is(err, tidwal.ErrClosed):
		return 0, nil, ErrClosed
	default:
		return 0, nil, l.corrupted(off, "read: "+err.Error())
	}
	k, body, why := decodeRecord(data)
	if why != "" {
		return 0, nil, l.corrupted(off, why)
	}
	return k, body, nil
}

// twRead is tidwall's Read, which indexes its entry table without bounds checks: a segment file
// damaged while the log is open could make it panic.
func (l *Log) twRead(off uint64) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", tidwal.ErrCorrupt, r)
		}
	}()
	return l.tw.Read(off)
}

// openPayload appends the plaintext of a stored data body to dst. A *CipherError must go
// through openFailed once l.mu is released.
func (l *Log) openPayload(dst, body []byte, off uint64) ([]byte, error) {
	c := l.cipher
	if c == nil {
		return append(dst, body...), nil
	}
	out, err := c.Open(dst, body, off)
	if err != nil {
		return nil, &CipherError{Log: l.name, Offset: off, Err: err}
	}
	return out, nil
}

// Read returns a copy of the payload of the live data record at offset (owned by the caller).
// It returns ErrNotFound for an offset never assigned, ErrRetired for one that holds no live
// message, ErrCorrupt if the record fails its checksum, ErrCipher if the Cipher refuses it (in
// both cases the log goes out of service).
func (l *Log) Read(offset uint64) ([]byte, error) {
	l.mu.Lock()
	if err := l.stateErrLocked(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	if offset == 0 || offset >= l.next {
		l.mu.Unlock()
		return nil, ErrNotFound
	}
	if !l.live.has(offset) {
		l.mu.Unlock()
		return nil, ErrRetired
	}
	if offset > l.written {
		out, err := l.pendingPayloadLocked(make([]byte, 0, 64), offset)
		l.mu.Unlock()
		if err != nil {
			return nil, l.openFailed(err)
		}
		return out, nil
	}
	l.mu.Unlock()
	k, body, err := l.readEntry(offset)
	if errors.Is(err, ErrNotFound) {
		// Retired and reclaimed since we looked, or its write failed since and it waits to be
		// written again (fault.go).
		l.mu.Lock()
		if offset > l.written && l.live.has(offset) {
			out, err := l.pendingPayloadLocked(make([]byte, 0, 64), offset)
			l.mu.Unlock()
			if err != nil {
				return nil, l.openFailed(err)
			}
			return out, nil
		}
		l.mu.Unlock()
		return nil, ErrRetired
	}
	if err != nil {
		return nil, err
	}
	if k != KindData {
		return nil, l.corrupted(offset, "live offset holds a "+k.String()+" record")
	}
	out, err := l.openPayload(make([]byte, 0, len(body)), body, offset)
	if err != nil {
		return nil, l.openFailed(err)
	}
	return out, nil
}

// pendingPayloadLocked appends the payload of a record that is not written yet to dst.
func (l *Log) pendingPayloadLocked(dst []byte, off uint64) ([]byte, error) {
	rec, ok := l.cur.record(off)
	if !ok {
		rec, ok = l.inflight.record(off)
	}
	if !ok {
		panic("wal: unwritten record not pending")
	}
	return l.openPayload(dst, rec[headerSize:], off)
}

// Replay calls fn for every live data record, in offset order, and stops at the first error fn
// returns (which Replay returns). It is meant for recovery right after Log opened the log, but it
// may run at any time: records retired meanwhile may or may not be reported.
func (l *Log) Replay(fn func(e Entry) error) error {
	defer func() {
		l.readMu.Lock()
		_ = l.tw.ClearCache() // drop the segment Replay loaded last
		l.readMu.Unlock()
	}()
	var scratch []byte
	for off := uint64(0); ; off++ {
		l.mu.Lock()
		if err := l.stateErrLocked(); err != nil {
			l.mu.Unlock()
			return err
		}
		o, ok := l.live.nextFrom(off)
		if !ok {
			l.mu.Unlock()
			return nil
		}
		off = o
		e := Entry{Offset: o, Delivered: l.live.delivered(o)}
		if o > l.written {
			var err error
			scratch, err = l.pendingPayloadLocked(scratch[:0], o)
			l.mu.Unlock()
			if err != nil {
				return l.openFailed(err)
			}
			e.Payload = scratch
		} else {
			l.mu.Unlock()
			k, body, err := l.readEntry(o)
			if errors.Is(err, ErrNotFound) {
				// Retired and reclaimed since we looked, or its write failed since: then it
				// waits in memory to be written again (fault.go), and the next turn reads it
				// there.
				l.mu.Lock()
				if o > l.written {
					off = o - 1
				}
				l.mu.Unlock()
				continue
			}
			if err != nil {
				return err
			}
			if k != KindData {
				return l.corrupted(o, "live offset holds a "+k.String()+" record")
			}
			if l.cipher == nil {
				e.Payload = body
			} else if scratch, err = l.openPayload(scratch[:0], body, o); err != nil {
				return l.openFailed(err)
			} else {
				e.Payload = scratch
			}
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// ReadRaw returns up to max durable records of any kind from offset from on, with copied bodies,
// for a follower tailing the log. It returns no records and no error when from is past
// SyncedOffset, and ErrNotFound when the records at from were already reclaimed.
func (l *Log) ReadRaw(from uint64, max int) ([]Record, error) {
	l.mu.Lock()
	err, first := l.stateErrLocked(), l.first
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if from == 0 || from < first {
		return nil, ErrNotFound
	}
	last := l.synced.Load()
	if from > last || max <= 0 {
		return nil, nil
	}
	if n := last - from + 1; uint64(max) > n {
		max = int(n)
	}
	out := make([]Record, 0, max)
	for off := from; len(out) < max; off++ {
		k, body, err := l.readEntry(off)
		if err != nil {
			return nil, err
		}
		out = append(out, Record{Offset: off, Kind: k, Body: slices.Clone(body)})
	}
	return out, nil
}

// sealLocked closes the current batch: it appends the gathered retirement and delivery records,
// swaps the batch with the spare one and returns it.
func (l *Log) sealLocked() *pending {
	c := l.cur
	if len(c.dlv) > 0 {
		keep := c.dlv[:0]
		for _, o := range c.dlv {
			if l.live.has(o) {
				keep = append(keep, o)
			}
		}
		c.dlv = keep
	}
	for _, r := range [...]struct {
		k    Kind
		offs []uint64
	}{{KindDelivered, c.dlv}, {KindRetire, c.retire}} {
		if len(r.offs) == 0 {
			continue
		}
		slices.Sort(r.offs)
		buf, start := beginRecord(c.buf, r.k)
		buf = appendOffsets(buf, r.offs)
		finishRecord(buf, start)
		c.buf = buf
		c.ends = append(c.ends, len(buf))
		l.next++
	}
	in := l.inflight
	in.reset(l.next)
	l.cur, l.inflight = in, c
	l.queued = false
	return c
}

// sealAndWrite runs on the commit goroutine: it seals the log's batch and writes it (without
// fsync). It reports whether the log needs a sync.
func (l *Log) sealAndWrite(b *tidwal.Batch) bool {
	if l.twClosed {
		return false
	}
	l.mu.Lock()
	if l.holdoff && !l.closeReq { // in a write fault: the retry timer enqueues the log again
		l.queued = false
		l.mu.Unlock()
		return false
	}
	p := l.sealLocked()
	l.werr, l.closeNow, l.cycled, l.wfault = l.err, l.closeReq, false, false
	l.mu.Unlock()
	l.wp = p
	if l.werr != nil || len(p.ends) == 0 {
		return false
	}
	if l.cutDue {
		if err := l.cut(); err != nil {
			l.werr = l.writeFailed("cut back", err)
			return false
		}
	}
	l.pre = segMark{n: len(l.segs), tail: l.segs[len(l.segs)-1].size, size: l.size.Load()}
	b.Clear()
	prev := 0
	for i, end := range p.ends {
		b.Write(p.first+uint64(i), p.buf[prev:end])
		prev = end
	}
	err := l.hook("write")
	if err == nil {
		err = l.tw.WriteBatch(b)
	}
	if len(p.buf) > maxKeptBuf {
		*b = tidwal.Batch{} // the manager's batch must not keep a large record's copy
	}
	if err == nil {
		err = l.hook("written")
	}
	if err != nil {
		l.werr = l.writeFailed("write", err)
		return false
	}
	l.cycled = l.mirrorWrite(p)
	l.mu.Lock()
	l.written = p.first + uint64(len(p.ends)) - 1
	l.mu.Unlock()
	return true
}

// mirrorWrite updates segs the way tidwall/wal's writeBatch cycles segments (a new segment
// before the batch when the tail is over SegmentSize, and after any entry that brings it to
// SegmentSize) and reports whether a segment file was created.
func (l *Log) mirrorWrite(p *pending) bool {
	limit := int64(l.m.cfg.SegmentSize)
	cycled := false
	if l.segs[len(l.segs)-1].size > limit {
		l.segs = append(l.segs, segInfo{start: p.first})
		cycled = true
	}
	prev := 0
	var added int64
	for i, end := range p.ends {
		n := int64(end - prev)
		prev = end
		t := &l.segs[len(l.segs)-1]
		t.size += uvarintLen(uint64(n)) + n
		added += uvarintLen(uint64(n)) + n
		if t.size >= limit {
			l.segs = append(l.segs, segInfo{start: p.first + uint64(i) + 1})
			cycled = true
		}
	}
	l.size.Add(added)
	return cycled
}

// sync runs on a sync worker of the commit goroutine.
func (l *Log) sync() {
	err := l.hook("sync")
	if err == nil && !l.m.cfg.NoSync {
		err = l.tw.Sync()
		if err == nil && l.cycled {
			err = syncDir(l.dir)
		}
	}
	if err != nil {
		l.werr = l.writeFailed("sync", err)
		return
	}
	l.m.fsyncs.Add(1)
	if h := l.m.cfg.testSyncHook; h != nil {
		h(l, l.wp.first+uint64(len(l.wp.ends))-1)
	}
}

// finish runs on the commit goroutine after the sync phase: replication hook, callbacks, space
// reclamation and a requested close.
func (l *Log) finish() {
	p := l.wp
	if p == nil {
		return
	}
	err := l.werr
	if l.wfault {
		l.faulted(p, err)
		if l.closeNow {
			l.finishClose()
		}
		return
	}
	if err == nil && len(p.ends) > 0 {
		if l.faultErr != nil {
			l.recovered() // before the callbacks: an acknowledged append finds the fault over
		}
		l.synced.Store(p.first + uint64(len(p.ends)) - 1)
		if h := l.m.cfg.OnAppend; h != nil {
			prev := 0
			for i, end := range p.ends {
				rec := p.buf[prev:end]
				prev = end
				h(l.name, Record{Offset: p.first + uint64(i), Kind: Kind(rec[0]), Body: rec[headerSize:]})
			}
		}
	}
	for _, d := range p.dones {
		d.fn(d.off, err)
	}
	clear(p.dones)
	p.dones = p.dones[:0]
	l.wp = nil
	if err == nil && cap(p.buf) > maxKeptBuf {
		// Written, synced and handed to the hooks: an idle log must not keep a large
		// record's copy until its next commit (reset would drop it then).
		l.mu.Lock()
		p.buf, p.ends = nil, p.ends[:0]
		l.mu.Unlock()
	}
	if err == nil {
		l.reclaim()
		if l.cycled {
			// tidwall/wal caches the segment it just closed (up to SegmentSize bytes per
			// log): nothing here reads it back soon (replay is over; a reader reloads it).
			_ = l.tw.ClearCache()
		}
	}
	// Sync returns after reclamation, so that a caller that synced sees the files settled.
	for _, ch := range p.waiters {
		ch <- err
	}
	clear(p.waiters)
	p.waiters = p.waiters[:0]
	if l.closeNow {
		l.finishClose()
	}
}

// KeepFrom keeps the records from off on even once retired (0: no floor): a replicated log's
// leader keeps what its followers have not yet taken, so that a follower that lags a little
// catches up from the log instead of being rebuilt.
func (l *Log) KeepFrom(off uint64) { l.keep.Store(off) }

// reclaim drops whole segments below the lowest live offset and the KeepFrom floor (see
// reclaimFactor).
func (l *Log) reclaim() {
	l.mu.Lock()
	low := l.written + 1
	if o, ok := l.live.lowest(); ok && o < low {
		low = o
	}
	l.mu.Unlock()
	if k := l.keep.Load(); k > 0 && k < low {
		low = k
	}
	k := len(l.segs) - 1
	for k > 0 && l.segs[k].start > low {
		k--
	}
	if k == 0 {
		return
	}
	var dead int64
	for _, s := range l.segs[:k] {
		dead += s.size
	}
	if dead < reclaimFactor*l.segs[k].size {
		return
	}
	start := l.segs[k].start
	err := l.hook("reclaim")
	if err == nil {
		err = l.tw.TruncateFront(start)
	}
	if err != nil {
		// tidwall/wal first writes the new first segment aside: when that fails (a full
		// device), nothing changed and a later commit tries again.
		if transient(err) {
			if f, ferr := l.tw.FirstIndex(); ferr == nil && f == l.segs[0].start {
				l.log.Debug().Err(err).Uint64("first_offset", start).Msg("reclaim postponed")
				return
			}
		}
		l.fail(fmt.Errorf("wal: log %q: reclaim below offset %d: %w", l.name, start, err))
		return
	}
	l.segs = slices.Clone(l.segs[k:])
	l.size.Add(-dead)
	l.mu.Lock()
	l.first = start
	l.mu.Unlock()
	l.log.Debug().Uint64("first_offset", start).Int64("bytes", dead).Msg("reclaimed segments")
}

// finishClose closes tidwall and detaches the log from the Manager, once.
func (l *Log) finishClose() {
	l.closeOnce.Do(func() {
		l.endFault()
		l.twClosed = true
		l.readMu.Lock()
		err := l.tw.Close()
		l.readMu.Unlock()
		if err != nil && !errors.Is(err, tidwal.ErrClosed) {
			l.closeErr = fmt.Errorf("wal: close log %q: %w", l.name, err)
		}
		l.mu.Lock()
		l.closing, l.closeReq = true, true
		stray := l.cur // nothing is accepted once closing; only a write fault leaves records here
		l.cur = &pending{}
		l.mu.Unlock()
		if len(stray.ends) > 0 {
			l.log.Warn().Int("records", len(stray.ends)).Msg("closed in a write fault: records nobody waited for were not written")
		}
		for _, d := range stray.dones {
			d.fn(d.off, ErrClosed)
		}
		for _, ch := range stray.waiters {
			ch <- ErrClosed
		}
		l.m.mu.Lock()
		if l.m.logs[l.name] == l {
			delete(l.m.logs, l.name)
		}
		l.m.mu.Unlock()
		close(l.closedCh)
	})
}
