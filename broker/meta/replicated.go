package meta

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/amqp"
)

// Replicator is the replicated log under a ReplicatedStore: Propose commits an entry on a
// majority of the cluster and returns once this node has applied it (through the store's
// Apply), or fails within a bounded time. cluster.Node satisfies it.
type Replicator interface {
	Propose(ctx context.Context, entry []byte) ([]byte, error)
}

// Errors a Replicator returns that the store turns into AMQP errors (541 INTERNAL_ERROR, the
// closest RabbitMQ has: its own answer without a quorum is a timeout). The cluster package
// defines its own; cmd/warren maps them with ReplicationErr.
var (
	ErrNoQuorum  = errors.New("the cluster's metadata store has no quorum")
	ErrUncertain = errors.New("the cluster's metadata leader changed during the change")
)

// ReplicatedStore is the Store of a cluster node: every record (transient ones too, so that a
// binding to a non-durable queue routes from every node) is an entry of a replicated log,
// applied in log order on every node through the same Applier that a single node uses.
// Apply must therefore decide from the state and the record alone: a record it refuses is
// refused on every node.
//
// The node that proposed a record gets Apply's result from its own application of the entry
// (results such as the queue object never cross the network); Owner and Object, which live
// in this process only, are handed to that local application.
//
// For snapshots the store keeps each entity's live record (what Apply Kept), as a LogStore
// keeps its log.
type ReplicatedStore struct {
	app  Applier
	node string
	lg   zerolog.Logger
	rep  Replicator
	open func(*ReplicatedStore) (Replicator, error)

	boot    uint64 // random per start: entries of an earlier run never match a waiter
	mu      sync.Mutex
	seq     uint64
	waiting map[uint64]*pending
	live    map[string]liveRecord
	applied uint64 // order of live records

	recovered chan struct{}
}

type pending struct {
	rec  Record
	done chan struct{}
	res  any
	err  error
}

type liveRecord struct {
	n   uint64
	enc []byte // Record.Encode(), with Node
}

// Entry types of the replicated log.
const (
	entryRecord  = 0
	entryBarrier = 1
	entryMagic   = 'W'
)

// NewReplicatedStore returns the store of cluster node `node`, applying to app. Recover calls
// open to start the replicated log (with the store as its state machine), so that nothing is
// applied before the node's state is ready to take it.
func NewReplicatedStore(app Applier, node string, lg zerolog.Logger, open func(*ReplicatedStore) (Replicator, error)) *ReplicatedStore {
	var b [8]byte
	rand.Read(b[:])
	return &ReplicatedStore{app: app, node: node, lg: lg, open: open, boot: binary.BigEndian.Uint64(b[:]), waiting: map[uint64]*pending{}, live: map[string]liveRecord{}, recovered: make(chan struct{})}
}

// encodeEntry frames an entry: magic, type, proposer, its boot id, sequence number, payload.
func encodeEntry(typ byte, node string, boot, seq uint64, payload []byte) []byte {
	b := make([]byte, 0, 19+len(node)+len(payload))
	b = append(b, entryMagic, typ, byte(len(node)))
	b = append(b, node...)
	b = binary.BigEndian.AppendUint64(b, boot)
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, payload...)
}

func decodeEntry(b []byte) (typ byte, node string, boot, seq uint64, payload []byte, err error) {
	if len(b) < 3 || b[0] != entryMagic {
		return 0, "", 0, 0, nil, fmt.Errorf("%w: not a metadata entry", ErrBadRecord)
	}
	typ, n := b[1], int(b[2])
	if len(b) < 3+n+16 {
		return 0, "", 0, 0, nil, fmt.Errorf("%w: short entry", ErrBadRecord)
	}
	node = string(b[3 : 3+n])
	boot = binary.BigEndian.Uint64(b[3+n:])
	seq = binary.BigEndian.Uint64(b[3+n+8:])
	return typ, node, boot, seq, b[3+n+16:], nil
}

// Propose commits rec to the cluster and returns what this node's Apply of it returned.
func (s *ReplicatedStore) Propose(rec Record) (any, error) {
	<-s.recovered
	res, err, rerr := s.propose(entryRecord, rec)
	if rerr != nil {
		return nil, ReplicationErr(rerr)
	}
	return res, err
}

// Sync returns once this node has applied every change committed before the call (a barrier
// entry through the log, applied here in log order). A lookup that missed on this node looks
// again after it: a client may use, through this node, a queue or exchange that another node
// declared a moment ago, before this node applied the declare.
func (s *ReplicatedStore) Sync() error {
	<-s.recovered
	_, _, err := s.propose(entryBarrier, Record{})
	return err
}

// CatchUp waits until this node has applied every change it knows to be committed, without
// writing anything (a cheaper, weaker Sync: what another node committed a moment ago may not
// be known here yet), and reports whether it had to wait. For a message that routed nowhere.
func (s *ReplicatedStore) CatchUp() bool {
	if c, ok := s.rep.(interface{ CatchUp() bool }); ok {
		return c.CatchUp()
	}
	return false
}

// propose returns Apply's result and error, or the replicated log's error (rerr).
func (s *ReplicatedStore) propose(typ byte, rec Record) (res any, err, rerr error) {
	rec.Node = s.node
	var payload []byte
	if typ == entryRecord {
		payload = rec.Encode()
	}
	for attempt := 0; ; attempt++ {
		p := &pending{rec: rec, done: make(chan struct{})}
		s.mu.Lock()
		s.seq++
		seq := s.seq
		s.waiting[seq] = p
		s.mu.Unlock()
		_, perr := s.rep.Propose(context.Background(), encodeEntry(typ, s.node, s.boot, seq, payload))
		if perr != nil && errors.Is(perr, ErrUncertain) && typ != entryBarrier && attempt < 3 {
			// The leader changed while the entry was in flight: it is committed or lost for
			// good once the new leader commits anything. A barrier applied here settles it,
			// and an entry that was lost can be proposed again without applying twice.
			_, _, berr := s.propose(entryBarrier, Record{})
			if s.settled(seq, p) {
				return p.res, p.err, nil
			}
			if berr == nil {
				continue
			}
			if errors.Is(berr, ErrNoQuorum) {
				perr = errors.Join(ErrNoQuorum, ErrUncertain)
			}
		}
		if s.settled(seq, p) {
			return p.res, p.err, nil
		}
		if perr != nil {
			return nil, nil, perr
		}
		// The replicator returns after the local apply; this would be its broken promise.
		return nil, nil, errors.New("metadata change committed but not applied on this node")
	}
}

// settled stops waiting for entry seq and reports whether this node applied it.
func (s *ReplicatedStore) settled(seq uint64, p *pending) bool {
	s.mu.Lock()
	delete(s.waiting, seq)
	s.mu.Unlock()
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ReplicationErr turns a replicated log's error into the AMQP error a client gets.
func ReplicationErr(err error) error {
	switch {
	case errors.Is(err, ErrNoQuorum) && errors.Is(err, ErrUncertain):
		return amqp.ChannelErr(amqp.InternalError, "%v: this node cannot reach a majority of the cluster, metadata changes are refused until it can (this one may still be applied when it does)", ErrNoQuorum)
	case errors.Is(err, ErrNoQuorum):
		return amqp.ChannelErr(amqp.InternalError, "%v: this node cannot reach a majority of the cluster, metadata changes are refused until it can", ErrNoQuorum)
	case errors.Is(err, ErrUncertain):
		return amqp.ChannelErr(amqp.InternalError, "%v; it may or may not have been applied: check before retrying", ErrUncertain)
	}
	return amqp.ChannelErr(amqp.InternalError, "metadata store: %v", err)
}

// Apply applies one committed entry (the cluster's state machine; called in log order, one at
// a time). The result is not used: the proposer reads its own application's result.
func (s *ReplicatedStore) Apply(index uint64, entry []byte) []byte {
	typ, node, boot, seq, payload, err := decodeEntry(entry)
	if err != nil {
		s.lg.Error().Err(err).Uint64("index", index).Msg("metadata entry skipped")
		return nil
	}
	var p *pending
	if node == s.node && boot == s.boot {
		s.mu.Lock()
		p = s.waiting[seq]
		delete(s.waiting, seq) // answered once, even if the log held the entry twice
		s.mu.Unlock()
	}
	var res any
	if typ == entryRecord {
		rec, derr := Decode(payload)
		if derr != nil {
			err = derr
			s.lg.Error().Err(err).Uint64("index", index).Msg("metadata entry skipped")
		} else {
			if p != nil {
				rec.Owner, rec.Object, rec.Transient = p.rec.Owner, p.rec.Object, p.rec.Transient
			}
			fx := &repEffects{s: s, key: rec.Key(), enc: payload}
			res, err = s.app.Apply(rec, fx)
		}
	}
	if p != nil {
		p.res, p.err = res, err
		close(p.done)
	}
	return nil
}

type repEffects struct {
	s   *ReplicatedStore
	key string
	enc []byte
}

func (e *repEffects) Keep() {
	e.s.mu.Lock()
	e.s.applied++
	e.s.live[e.key] = liveRecord{n: e.s.applied, enc: e.enc}
	e.s.mu.Unlock()
}

func (e *repEffects) Drop(key string) {
	e.s.mu.Lock()
	delete(e.s.live, key)
	e.s.mu.Unlock()
}

// Replaying is false: a replicated record must have the same outcome on every node, whether a
// node applies it live or after a restart.
func (e *repEffects) Replaying() bool { return false }

// Snapshot returns every live record, in the order they were kept.
func (s *ReplicatedStore) Snapshot() ([]byte, error) {
	s.mu.Lock()
	recs := make([]liveRecord, 0, len(s.live))
	for _, r := range s.live {
		recs = append(recs, r)
	}
	s.mu.Unlock()
	slices.SortFunc(recs, func(a, b liveRecord) int { return int(a.n - b.n) })
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(recs)))
	for _, r := range recs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.enc)))
		b = append(b, r.enc...)
	}
	return b, nil
}

// Restore brings the state to a snapshot's: at start (empty state) it applies every record;
// on a running node that fell too far behind it deletes what the snapshot lacks and applies
// what differs, in the order of kinds.
func (s *ReplicatedStore) Restore(snap []byte) error {
	if len(snap) < 4 {
		return fmt.Errorf("%w: short snapshot", ErrBadRecord)
	}
	n := binary.BigEndian.Uint32(snap)
	snap = snap[4:]
	var recs []Record
	want := map[string][]byte{}
	for i := uint32(0); i < n; i++ {
		if len(snap) < 4 {
			return fmt.Errorf("%w: short snapshot", ErrBadRecord)
		}
		l := binary.BigEndian.Uint32(snap)
		if uint32(len(snap)-4) < l {
			return fmt.Errorf("%w: short snapshot", ErrBadRecord)
		}
		enc := snap[4 : 4+l]
		snap = snap[4+l:]
		rec, err := Decode(enc)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
		want[rec.Key()] = enc
	}
	s.mu.Lock()
	var gone []Record
	for k, r := range s.live {
		if _, ok := want[k]; ok {
			continue
		}
		if rec, err := Decode(r.enc); err == nil {
			rec.Delete = true
			gone = append(gone, rec)
		}
	}
	same := map[string]bool{}
	for k, enc := range want {
		if r, ok := s.live[k]; ok && string(r.enc) == string(enc) {
			same[k] = true
		}
	}
	s.mu.Unlock()
	// Deletes first, what refers to others before what it refers to.
	slices.SortStableFunc(gone, func(a, b Record) int { return Rank(b.Kind) - Rank(a.Kind) })
	for _, rec := range gone {
		fx := &repEffects{s: s, key: rec.Key()}
		if _, err := s.app.Apply(rec, fx); err != nil {
			s.lg.Warn().Err(err).Str("record", rec.String()).Msg("snapshot: delete failed")
		}
		fx.Drop(rec.Key())
	}
	recs = sortForReplay(recs)
	for _, rec := range recs {
		k := rec.Key()
		if same[k] {
			continue
		}
		fx := &repEffects{s: s, key: k, enc: want[k]}
		if _, err := s.app.Apply(rec, fx); err != nil {
			s.lg.Warn().Err(err).Str("record", rec.String()).Msg("snapshot: record not applied")
		}
	}
	return nil
}

// Recover waits until this node has applied everything the cluster committed before it
// started (a barrier entry through the log), then seeds what seed adds (a new cluster's
// defaults: once, as every node sees the first one's KindInit), and records that this node
// booted (what lived only in its memory before is gone everywhere). It waits as long as it
// takes to reach a majority, logging while it waits, as a RabbitMQ node waits for its peers.
func (s *ReplicatedStore) Recover(seed func(held []Record) ([]Record, error)) error {
	rep, err := s.open(s)
	if err != nil {
		return err
	}
	s.rep = rep
	start := time.Now()
	// Both are idempotent: retried until a majority takes them.
	s.proposeUntilCommitted(entryBarrier, Record{}, start)
	s.proposeUntilCommitted(entryRecord, Record{Kind: KindNodeBoot, Name: s.node}, start)
	s.mu.Lock()
	held := make([]Record, 0, len(s.live))
	for _, r := range s.live {
		if rec, err := Decode(r.enc); err == nil {
			held = append(held, rec)
		}
	}
	s.mu.Unlock()
	added, err := seed(held)
	if err != nil {
		return err
	}
	for _, rec := range added {
		s.proposeUntilCommitted(entryRecord, rec, start)
	}
	close(s.recovered)
	s.lg.Info().Dur("took", time.Since(start).Round(time.Millisecond)).Int("records", len(held)).Msg("cluster metadata caught up")
	return nil
}

// proposeUntilCommitted proposes an idempotent entry until it commits, logging every 10 s.
func (s *ReplicatedStore) proposeUntilCommitted(typ byte, rec Record, start time.Time) {
	last := start
	for {
		_, _, err := s.propose(typ, rec)
		if err == nil {
			return // committed (whatever Apply said)
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			s.lg.Warn().Err(err).Dur("waited", time.Since(start).Round(time.Second)).Msg("waiting for the cluster's metadata store (a majority of its nodes)")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
