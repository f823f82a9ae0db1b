package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	tidwal "github.com/tidwall/wal"
)

// DefaultSegmentSize is the segment size used when Config.SegmentSize is zero, and the default of
// cmd/warren's --wal-segment-size. tidwall/wal keeps each log's whole tail segment in memory, and
// a broker has one log per durable queue, so it is much smaller than tidwall's own 20 MB default
// (1 MiB: a busy durable queue holds about 2.4 MB instead of about 8.5 MB with 4 MiB, at the
// same throughput).
const DefaultSegmentSize = 1 << 20

// Cipher seals data payloads before they are written and opens them when they are read back
// (encryption at rest). Seal appends the sealed form of plaintext to dst and returns the result;
// Open appends the plaintext of ciphertext to dst. offset is the record's offset: bind it to the
// record (as additional data) so that records cannot be moved, but do not derive a nonce from it
// alone, as offsets are not unique over time (appends that were not durable at a crash get their
// offsets again, and a removed log starts again from 1). An Open error puts the log out of
// service (ErrCipher) and changes nothing on disk. Only KindData bodies are sealed: retire and
// delivered records hold offsets only. Calls may be concurrent.
type Cipher interface {
	Seal(dst, plaintext []byte, offset uint64) []byte
	Open(dst, ciphertext []byte, offset uint64) ([]byte, error)
}

// Config configures a Manager. The zero value of every field but Dir is usable.
type Config struct {
	Dir          string        // root folder; each log lives in Dir/<name>/
	SegmentSize  int           // bytes per segment file, default DefaultSegmentSize
	SyncInterval time.Duration // max time a commit batch waits to gather more work (0: commit as soon as the loop is free)
	NoSync       bool          // tests only: skip fsync (nothing is durable across a machine crash)
	Logger       zerolog.Logger

	// OnAppend, when set, is called from the commit goroutine for every record of every log right
	// after the record became durable and before the done callbacks of that commit run, in offset
	// order per log. It is the hook for a replicator that streams records to followers (it can
	// catch up from ReadRaw). rec.Body is only valid during the call. It must not block and must
	// not call Sync or Close.
	OnAppend func(name string, rec Record)

	// Cipher, when set, seals data payloads at rest. nil stores plaintext. A log must always be
	// opened with the same cipher (and keys).
	Cipher Cipher

	// CipherFor, when set, is called each time a log is opened and returns that log's Cipher
	// (nil: plaintext), so that logs can have different keys and the Cipher can bind records to
	// the log's name. It replaces Cipher. It must not call the Manager.
	CipherFor func(name string) Cipher

	// OnFault, when set, is called when a log's write or fsync fails with an error that passes
	// (a full device, an exhausted quota, an I/O error: see "Write faults" in the package
	// documentation), with that error, and again with nil once the log writes again or is
	// closed. It runs on the commit goroutine and must not block nor call the Manager.
	OnFault func(name string, err error)

	// FailWrite, when set, is called before each write of a log's batch; a non-nil error fails
	// that write as if the device had returned it, with nothing written (fault injection, for
	// tests). It runs on the commit goroutine and must not block.
	FailWrite func(name string) error

	testSyncHook func(l *Log, last uint64)        // called at each log sync with the last synced offset
	testHook     func(l *Log, point string) error // see Log.hook
	testRetry    time.Duration                    // first pause of a log in a write fault (0: retryFirst)
	testFree     func(dir string) (int64, bool)   // replaces freeSpace
}

// syncWorkers bounds how many logs are fsynced in parallel in one commit: a device absorbs a few
// concurrent flushes better than a queue of serial ones, and the machine has few cores.
const syncWorkers = 4

// slowSync is the duration of a commit's sync phase beyond which a warning is logged.
const slowSync = time.Second

// Manager owns the logs in one folder and the single group-commit goroutine they share.
//
// Appends, retirements and delivery hints from any number of goroutines and logs are gathered
// while the previous commit runs. A commit writes each touched log's batch (one tidwall WriteBatch
// with NoSync), then fsyncs each touched log once (in parallel), then runs OnAppend and the done
// callbacks, then reclaims space. So one fsync per log per commit covers every append in it.
//
// All methods may be called concurrently.
type Manager struct {
	cfg  Config
	log  zerolog.Logger
	kick chan struct{} // one slot: there is work
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the commit goroutine has exited

	openMu sync.Mutex // serializes Log (open) and Remove

	mu     sync.Mutex
	closed bool
	logs   map[string]*Log
	dirty  []*Log // logs with pending work, each at most once (Log.queued)
	spare  []*Log

	// owned by the commit goroutine
	batch   tidwal.Batch
	touched []*Log

	fsyncs atomic.Int64 // log syncs performed (counted even with NoSync): for tests and metrics
	faults atomic.Int64 // logs in a write fault
}

// Open validates cfg, creates cfg.Dir if needed and starts the commit goroutine. Logs are opened
// with Log.
func Open(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("wal: Config.Dir is empty")
	}
	if cfg.SegmentSize < 0 || cfg.SyncInterval < 0 {
		return nil, errors.New("wal: negative Config.SegmentSize or Config.SyncInterval")
	}
	if cfg.SegmentSize == 0 {
		cfg.SegmentSize = DefaultSegmentSize
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", cfg.Dir, err)
	}
	m := &Manager{
		cfg:  cfg,
		log:  cfg.Logger.With().Str("component", "wal").Logger(),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		logs: make(map[string]*Log),
	}
	go m.run()
	return m, nil
}

// Close flushes all pending work (running its callbacks), closes every log and stops the commit
// goroutine. Further calls on the Manager or its logs return ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.done
		return nil
	}
	m.closed = true
	logs := m.openLogsLocked()
	m.mu.Unlock()
	for _, l := range logs {
		l.requestClose()
	}
	close(m.stop)
	<-m.done
	var err error
	for _, l := range logs {
		if l.closeErr != nil && err == nil {
			err = l.closeErr
		}
	}
	return err
}

func (m *Manager) openLogsLocked() []*Log {
	logs := make([]*Log, 0, len(m.logs))
	for _, l := range m.logs {
		logs = append(logs, l)
	}
	return logs
}

func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\\\x00")
}

// Log opens the named log, creating it if it does not exist, or returns it if it is already open.
// name must be a plain file name. Opening checks every record and repairs a torn tail (the damaged
// end of the last segment is cut off, with a warning). Damage anywhere else returns an error
// wrapping ErrCorrupt (a *CorruptError); such a log stays out of service until it is repaired or
// removed, while every other log keeps working. A log that went out of service while open also
// returns its error here.
func (m *Manager) Log(name string) (*Log, error) {
	if !validName(name) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	if l, err := m.lookup(name); l != nil || err != nil {
		return l, err
	}
	m.openMu.Lock()
	defer m.openMu.Unlock()
	if l, err := m.lookup(name); l != nil || err != nil {
		return l, err
	}
	l, err := m.openLog(name)
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			m.log.Error().Str("log", name).Uint64("offset", ce.Offset).Err(err).Msg("log out of service")
		}
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = l.tw.Close()
		return nil, ErrClosed
	}
	m.logs[name] = l
	m.mu.Unlock()
	return l, nil
}

// lookup returns the open log called name, (nil, nil) when there is none, or the error that put
// it out of service. A log being closed by Log.Close is waited for, then reported as not open.
func (m *Manager) lookup(name string) (*Log, error) {
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		l := m.logs[name]
		m.mu.Unlock()
		if l == nil {
			return nil, nil
		}
		l.mu.Lock()
		closing, err := l.closing, l.err
		l.mu.Unlock()
		if closing {
			<-l.closedCh
			continue
		}
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

// Remove closes the named log if it is open (running its pending callbacks) and deletes its
// folder. Removing a log that does not exist is not an error.
func (m *Manager) Remove(name string) error {
	if !validName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	m.openMu.Lock()
	defer m.openMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	l := m.logs[name]
	m.mu.Unlock()
	if l != nil {
		_ = l.Close() // the files go away anyway
	}
	if err := os.RemoveAll(filepath.Join(m.cfg.Dir, name)); err != nil {
		return fmt.Errorf("wal: remove log %q: %w", name, err)
	}
	if !m.cfg.NoSync {
		if err := syncDir(m.cfg.Dir); err != nil {
			return fmt.Errorf("wal: remove log %q: %w", name, err)
		}
	}
	return nil
}

// Syncs returns how many log syncs (one per touched log per commit) the Manager has performed,
// for metrics: compare it with the number of appends to see group commit at work.
func (m *Manager) Syncs() int64 { return m.fsyncs.Load() }

// WriteFaults returns how many open logs are in a write fault: their last write failed with an
// error that passes, and they retry (see "Write faults" in the package documentation).
func (m *Manager) WriteFaults() int { return int(m.faults.Load()) }

// Names returns the names of the logs that exist on disk, sorted, whether open or not.
func (m *Manager) Names() ([]string, error) {
	des, err := os.ReadDir(m.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list logs: %w", err)
	}
	var names []string
	for _, de := range des {
		if de.IsDir() && validName(de.Name()) {
			names = append(names, de.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// enqueue marks l as having work for the commit goroutine. The caller has just flipped l.queued.
func (m *Manager) enqueue(l *Log) {
	m.mu.Lock()
	m.dirty = append(m.dirty, l)
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *Manager) run() {
	defer close(m.done)
	var timer *time.Timer
	for {
		select {
		case <-m.kick:
		case <-m.stop:
			m.shutdown()
			return
		}
		if d := m.cfg.SyncInterval; d > 0 {
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			select {
			case <-timer.C:
			case <-m.stop:
				timer.Stop()
				m.shutdown()
				return
			}
		}
		m.mu.Lock()
		work := m.dirty
		m.dirty, m.spare = m.spare[:0], nil
		m.mu.Unlock()
		m.commit(work)
		clear(work)
		m.spare = work[:0]
	}
}

// shutdown commits whatever is pending in every open log and closes them all. Close marked every
// log closing first, so nothing new arrives.
func (m *Manager) shutdown() {
	m.mu.Lock()
	logs := m.openLogsLocked()
	m.dirty = nil
	m.mu.Unlock()
	m.commit(logs)
	for _, l := range logs {
		l.finishClose()
	}
}

// commit runs one group commit over ls: seal and write each log's batch, sync each written log
// once, then finish (hooks, callbacks, space reclamation, close requests).
func (m *Manager) commit(ls []*Log) {
	touched := m.touched[:0]
	for _, l := range ls {
		if l.sealAndWrite(&m.batch) {
			touched = append(touched, l)
		}
	}
	m.syncAll(touched)
	for _, l := range ls {
		l.finish()
	}
	clear(touched)
	m.touched = touched[:0]
}

func (m *Manager) syncAll(ls []*Log) {
	if len(ls) == 0 {
		return
	}
	start := time.Now()
	if len(ls) == 1 {
		ls[0].sync()
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(len(ls), syncWorkers) {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(ls) {
						return
					}
					ls[i].sync()
				}
			})
		}
		wg.Wait()
	}
	if d := time.Since(start); d > slowSync {
		m.log.Warn().Dur("duration", d).Int("logs", len(ls)).Msg("slow fsync")
	}
}
