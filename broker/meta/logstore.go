package meta

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/rs/zerolog"
)

// Log is the durable log under a LogStore: records with offsets, each live until retired.
// cmd/warren adapts a *wal.Log to it.
type Log interface {
	// Append adds a record and returns its offset; done runs once it is durable (fsynced),
	// or with the error that kept it from being so. done must not block.
	Append(payload []byte, done func(offset uint64, err error)) uint64
	// Retire records that these records are no longer live; it does not wait.
	Retire(offsets ...uint64)
	// Sync waits until everything appended and retired before the call is durable.
	Sync() error
	// Replay calls fn with each live record, in offset order.
	Replay(fn func(offset uint64, payload []byte) error) error
}

// LogStore is the single-node Store: a log that holds exactly one live record per entity.
//
// Propose appends the record, waits until it is fsynced, waits until every record appended
// before it has been applied, and applies it. The record then replaces the entity's previous
// record (which is retired), or, if Apply did not Keep it, is retired itself. A delete is not
// written: Apply removes the entity and Drops its key (and those of what went with it), and
// those records are retired. Propose returns only once every retirement its answer depends on
// is durable (the entity's own, and any earlier delete or failed record), so that a crash
// never brings back what a client was told is gone; a replaced record that comes back after a
// crash is harmless, as the newer one is replayed after it.
//
// Recover replays the live records by kind (vhosts, users, ..., exchanges, queues, bindings)
// and, within a kind, in log order: the live records are a snapshot of the state, and the
// order of kinds lets a user changed after its permissions were set still come before them.
type LogStore struct {
	log Log
	app Applier
	lg  zerolog.Logger

	mu         sync.Mutex
	turn       *sync.Cond
	recovering bool              // Recover has not finished: Propose waits
	next       uint64            // ticket of the next durable record
	applied    uint64            // tickets below this one are applied
	live       map[string]uint64 // offset of each entity's live record
	dirty      uint64            // retirements that must be durable before the next answer
	clean      uint64            // dirty value known durable
}

// NewLogStore returns a store over l applying to app. Call Recover before Propose.
func NewLogStore(l Log, app Applier, lg zerolog.Logger) *LogStore {
	s := &LogStore{log: l, app: app, lg: lg, live: make(map[string]uint64), recovering: true}
	s.turn = sync.NewCond(&s.mu)
	return s
}

// effects tracks one Apply's report.
type effects struct {
	s      *LogStore
	key    string
	off    uint64 // the record's offset; 0 when it is not in the log
	replay bool
	kept   bool
	retire []uint64
	drops  bool // some retirement must be durable before the answer
}

func (e *effects) Keep() {
	if e.off == 0 || e.kept {
		return
	}
	e.kept = true
	e.s.mu.Lock()
	old, ok := e.s.live[e.key]
	e.s.live[e.key] = e.off
	e.s.mu.Unlock()
	if ok && old != e.off {
		e.retire = append(e.retire, old)
	}
}

func (e *effects) Drop(key string) {
	e.s.mu.Lock()
	off, ok := e.s.live[key]
	delete(e.s.live, key)
	e.s.mu.Unlock()
	if ok {
		e.retire = append(e.retire, off)
		e.drops = true
	}
}

func (e *effects) Replaying() bool { return e.replay }

// finish retires what Apply left behind (the record itself when it did not Keep it); call it
// before the next record is applied, so that retirements reach the log in the order of the
// changes.
func (e *effects) finish(failed bool) {
	if e.off != 0 && !e.kept {
		e.retire = append(e.retire, e.off)
		e.drops = e.drops || failed // a failed record must not come back and succeed
	}
	if len(e.retire) == 0 {
		return
	}
	e.s.log.Retire(e.retire...)
	if e.drops {
		e.s.mu.Lock()
		e.s.dirty++
		e.s.mu.Unlock()
	}
}

// Propose persists rec, applies it, and returns Apply's result (see LogStore). It waits for
// Recover to finish (a queue's timer may delete it while the node starts).
func (s *LogStore) Propose(rec Record) (any, error) {
	s.mu.Lock()
	for s.recovering {
		s.turn.Wait()
	}
	s.mu.Unlock()
	if rec.Transient {
		fx := &effects{s: s}
		res, err := s.app.Apply(rec, fx)
		fx.finish(err != nil)
		if serr := s.syncRetired(); serr != nil && err == nil {
			err = serr
		}
		return res, err
	}
	var off uint64
	var persisted chan error
	s.mu.Lock()
	ticket := s.next
	s.next++
	if !rec.Delete {
		persisted = make(chan error, 1)
		off = s.log.Append(rec.Encode(), func(_ uint64, err error) { persisted <- err })
	}
	s.mu.Unlock()
	var perr error
	if persisted != nil {
		perr = <-persisted
	}
	s.mu.Lock()
	for s.applied != ticket {
		s.turn.Wait()
	}
	s.mu.Unlock()
	if perr != nil {
		s.pass()
		return nil, fmt.Errorf("meta: %s: %w", rec.String(), perr)
	}
	res, err := s.applyTurn(rec, off)
	if serr := s.syncRetired(); serr != nil && err == nil {
		err = serr
	}
	return res, err
}

// applyTurn applies a durable record in its turn and passes the turn on (also if Apply
// panics: the mgmt server recovers handler panics, and the store must not stay blocked).
func (s *LogStore) applyTurn(rec Record, off uint64) (any, error) {
	defer s.pass()
	fx := &effects{s: s, key: rec.Key(), off: off}
	res, err := s.app.Apply(rec, fx)
	fx.finish(err != nil)
	return res, err
}

// pass ends the current turn.
func (s *LogStore) pass() {
	s.mu.Lock()
	s.applied++
	s.turn.Broadcast()
	s.mu.Unlock()
}

// syncRetired makes the retirements an answer depends on durable.
func (s *LogStore) syncRetired() error {
	s.mu.Lock()
	want := s.dirty
	done := s.clean >= want
	s.mu.Unlock()
	if done {
		return nil
	}
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("meta: sync: %w", err)
	}
	s.mu.Lock()
	s.clean = max(s.clean, want)
	s.mu.Unlock()
	return nil
}

// heldRecord is a live record read at start.
type heldRecord struct {
	off uint64
	rec Record
}

// Recover reads the live records, appends what seed adds, and applies them all (see Store).
func (s *LogStore) Recover(seed func(held []Record) ([]Record, error)) error {
	defer func() {
		s.mu.Lock()
		s.recovering = false
		s.turn.Broadcast()
		s.mu.Unlock()
	}()
	var held []heldRecord
	err := s.log.Replay(func(off uint64, payload []byte) error {
		rec, err := Decode(payload)
		if err != nil {
			return fmt.Errorf("meta: record %d: %w", off, err)
		}
		held = append(held, heldRecord{off, rec})
		return nil
	})
	if err != nil {
		return err
	}
	recs := make([]Record, len(held))
	for i, h := range held {
		recs[i] = h.rec
	}
	added, err := seed(recs)
	if err != nil {
		return err
	}
	if len(added) > 0 {
		errs := make(chan error, len(added))
		for _, rec := range added {
			off := s.log.Append(rec.Encode(), func(_ uint64, err error) { errs <- err })
			held = append(held, heldRecord{off, rec})
		}
		for range added {
			if err := <-errs; err != nil {
				return fmt.Errorf("meta: seeding: %w", err)
			}
		}
	}
	slices.SortStableFunc(held, func(a, b heldRecord) int {
		if d := Rank(a.rec.Kind) - Rank(b.rec.Kind); d != 0 {
			return d
		}
		return 0 // stable: log order
	})
	for _, h := range held {
		fx := &effects{s: s, key: h.rec.Key(), off: h.off, replay: true}
		if _, err := s.app.Apply(h.rec, fx); err != nil {
			ev := s.lg.Error()
			if errors.Is(err, ErrUnknownKind) {
				ev = s.lg.Warn()
			}
			ev.Err(err).Uint64("offset", h.off).Str("record", h.rec.String()).Msg("definition not restored")
			// Keep it, unless its entity has a live record: nothing is lost to a newer
			// version's record or to a damaged queue log.
			s.mu.Lock()
			if _, dup := s.live[fx.key]; !dup {
				s.live[fx.key] = h.off
				fx.kept = true
			}
			s.mu.Unlock()
		}
		fx.finish(false)
	}
	return s.syncRetired()
}
