package meta

import "sync"

// Store is where metadata changes go. Propose makes rec durable (in a cluster: committed by a
// majority) and then applies it through the Store's Applier, and returns what Apply returned;
// a record that cannot be made durable is not applied. Records are applied one at a time, in
// the order in which they are made durable (transient records, which are not written, may be
// applied beside them: the Applier serialises those itself). Propose may be called
// concurrently, but never from inside Apply.
//
// Recover runs once, before any Propose: it applies every record the store holds, in an order
// where a record comes after those it refers to. seed is called first with those records and
// returns records to add before they are applied (the defaults of a new node, or what an
// older version kept elsewhere); those are made durable before Recover applies anything.
type Store interface {
	Propose(rec Record) (any, error)
	Recover(seed func(held []Record) ([]Record, error)) error
}

// Applier is the state machine under a Store: the node's metadata. Apply must decide from its
// state and the record alone (not from time or randomness), so that replaying the same records
// rebuilds the same state; it must not call Propose. It reports through fx which records the
// state now rests on, so that a store of live records can drop the others.
//
// An error means the record changed nothing. At replay, a record whose Apply fails is kept
// (and logged), so that nothing is lost to a newer version's record or a damaged queue log;
// a record that changes nothing without an error (a binding whose queue is gone) is dropped.
type Applier interface {
	Apply(rec Record, fx Effects) (any, error)
}

// Effects is what Apply tells its Store.
type Effects interface {
	// Keep says that the record created or changed its entity: it becomes the entity's live
	// record, replacing the previous one with the same key. A record Apply does not Keep
	// changed nothing (the entity was already so) and is dropped.
	Keep()
	// Drop says that the entity with this key is gone: deleted by the record, or with it (a
	// vhost's queues, a queue's bindings, an auto-delete exchange that lost its last binding).
	Drop(key string)
	// Replaying reports whether Apply runs in Recover (restore a queue's messages, defer what
	// needs every definition back, such as applying policies) rather than live.
	Replaying() bool
}

// MemoryStore keeps nothing: Propose applies at once. It is the store of a node without
// storage (tests, an in-memory broker).
type MemoryStore struct {
	app Applier
	mu  sync.Mutex // one durable record applied at a time, as in a LogStore
}

// NewMemoryStore returns a store that applies records to app without persisting them.
func NewMemoryStore(app Applier) *MemoryStore { return &MemoryStore{app: app} }

// Propose applies rec.
func (s *MemoryStore) Propose(rec Record) (any, error) {
	if rec.Transient {
		return s.app.Apply(rec, noEffects{})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.Apply(rec, noEffects{})
}

// Recover applies what seed returns (a memory store holds nothing).
func (s *MemoryStore) Recover(seed func(held []Record) ([]Record, error)) error {
	recs, err := seed(nil)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range sortForReplay(recs) {
		s.app.Apply(r, noEffects{replay: true}) // nothing to keep: errors are the Applier's to log
	}
	return nil
}

// noEffects is the Effects of a store that keeps no live set.
type noEffects struct{ replay bool }

func (noEffects) Keep()             {}
func (noEffects) Drop(string)       {}
func (e noEffects) Replaying() bool { return e.replay }

// NoEffects is the Effects for applying a record outside any store (a vhost used alone, in
// tests).
var NoEffects Effects = noEffects{}

// sortForReplay orders records by rank, keeping the order of equal ranks.
func sortForReplay(recs []Record) []Record {
	out := make([]Record, 0, len(recs))
	for r := 0; r <= len(rank); r++ {
		for _, rec := range recs {
			if Rank(rec.Kind) == r {
				out = append(out, rec)
			}
		}
	}
	return out
}
