package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/queue"
	"github.com/warrenmq/warren/cluster"
	"github.com/warrenmq/warren/wal"
)

// The storage seams are satisfied structurally; these assertions keep them honest.
var (
	_ queue.Log          = (*wal.Log)(nil)
	_ meta.Log           = metaLog{}
	_ broker.Storage     = (*walStorage)(nil)
	_ broker.WriteFaults = (*walStorage)(nil)
	_ queue.Spill        = (*wal.Log)(nil)
	_ queue.Log          = (*queueLog)(nil)
	// What the queue package asks of its log besides queue.Log: Sync (a publisher without
	// confirms waits for the disk) and Read (a stream reads evicted messages back).
	_ interface {
		Sync() error
		Read(offset uint64) ([]byte, error)
	} = (*queueLog)(nil)
)

// walStorage adapts a wal.Manager to broker.Storage: one log "defs" for the metadata store
// (every durable definition: vhosts, users, permissions, limits, policies, exchanges, queues,
// bindings) and one log per durable queue, named "q-" + a hash of vhost and queue name (queue names may be 255
// bytes and contain anything; file names may not). A queue's log is created at its first write
// (queueLog).
type walStorage struct {
	m     *wal.Manager
	dir   string // the logs' folder: each log is dir/<name>/ (wal.Config.Dir)
	log   zerolog.Logger
	defs  *wal.Log
	spill *wal.Manager // no fsync; wiped at start
	enc   *encryption  // ciphers of the queue and spill logs (encryption.go)

	mu    sync.Mutex
	tried map[string]bool // queue logs opened or attempted since start (kept by the sweep)

	faults *spaceFaults

	// onAppend receives every durable record of the queue logs (a cluster's replication).
	onAppend atomic.Pointer[cluster.Replication]
}

// spaceFaults tracks the logs (durable and spill) whose writes fail for want of space, for the
// disk alarm (broker.WriteFaults). A log that fails with EIO retries as well but raises no
// alarm: that is a device's trouble, not the node's, and blocking every publisher would not
// help it.
type spaceFaults struct {
	mu     sync.Mutex
	logs   map[string]bool
	notify func()
}

// hook returns the wal.Config.OnFault of the manager called kind.
func (f *spaceFaults) hook(kind string, next func(string, error)) func(string, error) {
	return func(name string, err error) {
		space := errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
		k := kind + "/" + name
		f.mu.Lock()
		changed := f.logs[k] != space
		if space {
			f.logs[k] = true
		} else {
			delete(f.logs, k)
		}
		notify := f.notify
		f.mu.Unlock()
		if changed && notify != nil {
			notify()
		}
		if next != nil {
			next(name, err)
		}
	}
}

// WriteFault reports whether some log's writes fail for want of space (broker.WriteFaults).
func (s *walStorage) WriteFault() bool {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return len(s.faults.logs) > 0
}

// NotifyWriteFault sets the function called when WriteFault may have changed.
func (s *walStorage) NotifyWriteFault(fn func()) {
	s.faults.mu.Lock()
	s.faults.notify = fn
	s.faults.mu.Unlock()
}

const defsLog = "defs"

// openStorage opens the durable logs in cfg.Dir and the spill logs in spillDir (emptied first),
// the queue and spill logs sealed with enc's keys.
func openStorage(cfg wal.Config, spillDir string, enc *encryption) (*walStorage, error) {
	faults := &spaceFaults{logs: map[string]bool{}}
	st := &walStorage{}
	cfg.OnAppend = func(name string, rec wal.Record) {
		if r := st.onAppend.Load(); r != nil {
			r.OnAppend(name, rec)
		}
	}
	onFault := cfg.OnFault
	cfg.CipherFor = enc.cipherFor("wal")
	cfg.OnFault = faults.hook("wal", onFault)
	m, err := wal.Open(cfg)
	if err != nil {
		return nil, err
	}
	defs, err := m.Log(defsLog)
	if err != nil {
		m.Close()
		return nil, err
	}
	if err := os.RemoveAll(spillDir); err != nil {
		m.Close()
		return nil, err
	}
	scfg := cfg
	scfg.Dir, scfg.NoSync, scfg.OnAppend = spillDir, true, nil
	scfg.SyncInterval = 10 * time.Millisecond // spills are caches: gather writes into fewer, larger ones
	scfg.CipherFor = enc.cipherFor("spill")
	scfg.OnFault = faults.hook("spill", onFault)
	sm, err := wal.Open(scfg)
	if err != nil {
		m.Close()
		return nil, err
	}
	st.m, st.dir, st.log = m, cfg.Dir, cfg.Logger.With().Str("component", "storage").Logger()
	st.defs, st.spill, st.enc, st.tried, st.faults = defs, sm, enc, map[string]bool{}, faults
	return st, nil
}

func (s *walStorage) OpenSpill(vh, q string) (queue.Spill, error) {
	name := queueLogName(vh, q)
	s.enc.bind(name, vh)
	return s.spill.Log(name)
}

func (s *walStorage) RemoveSpill(vh, q string) error {
	return s.spill.Remove(queueLogName(vh, q))
}

func queueLogName(vh, q string) string {
	h := sha256.Sum256([]byte(vh + "\x00" + q))
	return "q-" + hex.EncodeToString(h[:20])
}

// MetaLog returns the metadata store's log.
func (s *walStorage) MetaLog() meta.Log { return metaLog{s.defs} }

// metaLog adapts the definitions log to meta.Log (its Replay reports offsets and payloads).
type metaLog struct{ *wal.Log }

func (l metaLog) Replay(fn func(offset uint64, payload []byte) error) error {
	return l.Log.Replay(func(e wal.Entry) error { return fn(e.Offset, e.Payload) })
}

// OpenQueueLog opens a durable queue's log and replays it when it exists on disk; otherwise it
// creates nothing: the log is created at the queue's first write (queueLog). The name counts as
// tried either way, so the start-up sweep keeps a log created later.
func (s *walStorage) OpenQueueLog(vh, q string, replay func(offset uint64, payload []byte, delivered bool) error) (queue.Log, error) {
	name := queueLogName(vh, q)
	s.mu.Lock()
	s.tried[name] = true
	s.mu.Unlock()
	s.enc.bind(name, vh)
	ql := &queueLog{s: s, name: name, vh: vh}
	ok, err := s.hasLog(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return ql, nil // a declared queue never written to: empty
	}
	l, err := s.m.Log(name)
	if err != nil {
		return nil, s.enc.explain(err)
	}
	if replay != nil {
		if err := l.Replay(func(e wal.Entry) error { return replay(e.Offset, e.Payload, e.Delivered) }); err != nil {
			return nil, s.enc.explain(err)
		}
	}
	ql.l.Store(l)
	return ql, nil
}

// RemoveQueueLog deletes a queue's log; a queue never written to has none, and costs no
// directory fsync.
func (s *walStorage) RemoveQueueLog(vh, q string) error {
	name := queueLogName(vh, q)
	if ok, err := s.hasLog(name); err == nil && !ok {
		return nil
	}
	return s.m.Remove(name)
}

// hasLog reports whether the log called name exists on disk.
func (s *walStorage) hasLog(name string) (bool, error) {
	_, err := os.Stat(filepath.Join(s.dir, name))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("wal: look for log %q: %w", name, err)
}

func (s *walStorage) SweepQueueLogs() error {
	names, err := s.m.Names()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if strings.HasPrefix(n, "q-") && !s.tried[n] {
			if err := s.m.Remove(n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *walStorage) Close() error {
	err := s.m.Close()
	if serr := s.spill.Close(); err == nil {
		err = serr
	}
	return err
}

// QueueEncrypted reports whether the messages a queue writes to disk are encrypted (for the
// management API and metrics).
func (s *walStorage) QueueEncrypted(vh, q string) bool { return s.enc.encrypts(vh) }
