package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/cluster/replica"
	"github.com/warrenmq/warren/wal"
)

// TopicReplica is the bus topic of queue-log replication.
const TopicReplica byte = 'r'

// Replication mirrors queue logs between nodes: for each replicated log this node leads it
// runs a replica.Leader over the local wal.Log and streams records to the followers on the bus;
// for each it follows, a replica.Follower that truncates and applies what the leader sends.
// The roles come from the metadata (the queue's placement: leader, replicas, epoch), which
// calls Lead, Follow and Stop on every node as it applies.
type Replication struct {
	n   *Node
	m   *wal.Manager
	dir string // epoch histories
	log zerolog.Logger

	mu    sync.Mutex
	logs  map[string]*rlog
	dirty map[*rlog]struct{} // logs with records made durable since the worker last looked
	kick  chan struct{}

	keepFor atomic.Int64 // nanoseconds, see defaultKeepFor

	stop chan struct{}
	wg   sync.WaitGroup
}

// rlog is one replicated log on this node.
type rlog struct {
	r    *Replication
	name string

	mu      sync.Mutex
	wl      *wal.Log
	epoch   uint64
	leader  string // the leader's node name
	lead    *replica.Leader
	fol     *replica.Follower
	waiting []waitDone // leader: appends answered once committed
	heard   time.Time  // follower: last message from the leader
	failed  error      // leader: the log failed; every append fails
	// synced is what is durable here, as OnAppend reported (the worker hands it on). Atomic:
	// OnAppend runs on the wal's commit goroutine and must never wait for mu, which is held
	// while a follower's log is removed and rebuilt (wal.Manager.Remove waits for that
	// goroutine: a deadlock). Every OnAppend of a removed log has returned once Remove has.
	synced atomic.Uint64
	hist   replica.History // as last saved
	// heardFrom: leader, when each follower last answered. A follower heard within keepFor
	// holds the log's reclamation back to what it still needs (Leader.Floor).
	heardFrom map[string]time.Time
	// async: an async leader answers appends once durable here, but only while a majority of
	// the replicas heard from each other within asyncLease (held: answers wait for it).
	async, held bool
}

// asyncLease bounds what an async leader cut off from its followers confirms: past it without
// an answer from enough of them, appends wait (and are nacked if the leader turns out deposed)
// instead of being confirmed by a leader that may already be replaced. A deposed async leader
// that was cut off would otherwise confirm what reached it right after the partition healed,
// before it learned of its successor, and those messages are cut from its log (warren-chaos,
// seed 80019: 13 messages confirmed 0.3 s after an isolation healed, lost).
var asyncLease = time.Second

// leaseLocked reports whether enough followers answered lately for an async leader to confirm:
// with itself, a majority of the replicas, each heard within asyncLease.
func (rl *rlog) leaseLocked() bool {
	fs := rl.lead.Followers()
	n := 1
	for _, f := range fs {
		if t, ok := rl.heardFrom[f]; ok && time.Since(t) <= asyncLease {
			n++
		}
	}
	return n >= (len(fs)+1)/2+1
}

type waitDone struct {
	off  uint64
	done func(uint64, error)
}

// ErrNotLeader: this node does not lead that log (any more).
var ErrNotLeader = errors.New("cluster: not the leader of this queue log")

// NewReplication starts the node's replication over the queue logs of m. Wire m's
// Config.OnAppend to OnAppend.
func (n *Node) NewReplication(m *wal.Manager) (*Replication, error) {
	dir := filepath.Join(n.cfg.DataDir, "epochs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &Replication{n: n, m: m, dir: dir, log: n.log.With().Str("component", "replication").Logger(), logs: map[string]*rlog{},
		dirty: map[*rlog]struct{}{}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	r.keepFor.Store(int64(defaultKeepFor))
	n.bus.Handle(TopicReplica, r.receive)
	n.bus.OnDown(r.peerDown)
	r.wg.Add(2)
	go r.tick()
	go r.work()
	return r, nil
}

// Close stops replication (the logs stay open: their owner closes them).
func (r *Replication) Close() {
	close(r.stop)
	r.wg.Wait()
}

// ReplicatedLog is the leader's queue log: the queue appends through it, and an append is
// answered once a majority of the replicas hold it durably (or once it is durable here, for
// an async log).
type ReplicatedLog struct{ rl *rlog }

// Lead makes this node the leader of log name at epoch, with the given followers. The local
// log is opened (it holds what this replica had); the queue replays it and then appends
// through the returned log.
func (r *Replication) Lead(name string, epoch uint64, followers []string, async bool) (*ReplicatedLog, *wal.Log, error) {
	rl, err := r.open(name)
	if err != nil {
		return nil, nil, err
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.epoch, rl.leader, rl.fol = epoch, r.n.cfg.NodeName, nil
	rl.async, rl.held = async, false
	// A transfer's stop (PrepareTransfer) ended with the leadership it handed over: leading
	// again, this node takes appends (it nacked every publish after a move away and back).
	rl.failed = nil
	// Followers count for the lease from the start (they followed the previous leader, or are
	// about to be told): a new leader does not hold its first answers back.
	rl.heardFrom = map[string]time.Time{}
	for _, f := range followers {
		rl.heardFrom[f] = time.Now()
	}
	rl.lead = replica.NewLeader(replica.LeaderConfig{
		Epoch: epoch, History: rl.hist, First: rl.wl.FirstOffset(), End: rl.wl.SyncedOffset(),
		Durable: rl.wl.SyncedOffset(), Followers: followers, Async: async,
	})
	if err := r.saveHistory(name, rl.lead.History()); err != nil {
		return nil, nil, err
	}
	rl.hist = append(replica.History(nil), rl.lead.History()...)
	r.log.Info().Str("log", name).Uint64("epoch", epoch).Strs("followers", followers).Msg("leading queue log")
	// A follower that applied the placement before this node did has already asked, and its
	// query found no leader here (dropped; it would ask again only after 2 s without news).
	// Tell each follower to ask now; one that has not applied the placement yet ignores it (a
	// newer epoch than it knows) and asks when it does.
	for _, f := range followers {
		r.sendLocked(rl, replica.Msg{Kind: replica.Stale, Peer: f, Epoch: epoch})
	}
	return &ReplicatedLog{rl}, rl.wl, nil
}

// Follow makes this node a follower of log name, led by leader at epoch.
func (r *Replication) Follow(name string, epoch uint64, leader string) error {
	rl, err := r.open(name)
	if err != nil {
		return err
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.epoch, rl.leader, rl.lead = epoch, leader, nil
	rl.wl.KeepFrom(0) // a follower's log reclaims as its leader's retire records say
	rl.failWaitingLocked(ErrNotLeader)
	rl.startFollowerLocked()
	r.log.Info().Str("log", name).Uint64("epoch", epoch).Str("leader", leader).Msg("following queue log")
	return nil
}

// Stop ends this node's part in log name (the queue was deleted or moved away); remove
// deletes its files too.
func (r *Replication) Stop(name string, remove bool) {
	r.mu.Lock()
	rl := r.logs[name]
	delete(r.logs, name)
	r.mu.Unlock()
	if rl != nil {
		rl.mu.Lock()
		rl.lead, rl.fol = nil, nil
		rl.failWaitingLocked(ErrNotLeader)
		rl.mu.Unlock()
	}
	if remove {
		r.m.Remove(name)
		os.Remove(filepath.Join(r.dir, name))
	}
}

// Status reports this node's epoch and log end for log name (what the controller compares to
// pick a new leader: the highest epoch, then the highest offset).
func (r *Replication) Status(name string) (epoch, lastEpoch, end uint64, ok bool) {
	r.mu.Lock()
	rl := r.logs[name]
	r.mu.Unlock()
	if rl == nil {
		return 0, 0, 0, false
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	// The epoch of the last durable record, not the last epoch begun: a follower saves a new
	// epoch before that epoch's records are durable (and a leader saves its epoch before it
	// writes a record), so a replica killed in between would claim an epoch it holds nothing
	// of and win the next failover against a replica holding more committed records.
	synced := rl.wl.SyncedOffset()
	return rl.epoch, rl.hist.TruncateTo(synced).Last(), synced, true
}

func (r *Replication) open(name string) (*rlog, error) {
	r.mu.Lock()
	rl := r.logs[name]
	if rl == nil {
		rl = &rlog{r: r, name: name}
		r.logs[name] = rl
	}
	r.mu.Unlock()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.wl == nil {
		wl, err := r.m.Log(name)
		if err != nil {
			return nil, err
		}
		// The saved history can run ahead of the records (it is saved before them): what a
		// crash lost of a new epoch is no part of this log.
		rl.wl, rl.hist = wl, r.loadHistory(name).TruncateTo(wl.LastOffset())
		rl.synced.Store(wl.SyncedOffset())
	}
	return rl, nil
}

func (rl *rlog) startFollowerLocked() {
	f, ready := replica.NewFollower(replica.FollowerConfig{
		Epoch: rl.epoch, Leader: rl.leader, History: rl.hist, First: rl.wl.FirstOffset(),
		End: rl.wl.LastOffset(), Durable: rl.wl.SyncedOffset(),
	})
	rl.fol = f
	rl.heard = time.Now()
	rl.doLocked(ready, nil)
}

// ---- the leader's log

// Append appends a record and calls done once it is committed. A log this node no longer
// leads takes nothing (a deposed leader must not write into the log it now follows).
func (l *ReplicatedLog) Append(payload []byte, done func(offset uint64, err error)) uint64 {
	rl := l.rl
	rl.mu.Lock()
	if rl.lead == nil || rl.failed != nil {
		rl.mu.Unlock()
		if done != nil {
			done(0, ErrNotLeader)
		}
		return 0
	}
	off := rl.wl.Append(payload, func(off uint64, err error) {
		if err != nil && done != nil {
			rl.mu.Lock()
			rl.dropWaitingLocked(off)
			rl.mu.Unlock()
			done(off, err)
		}
	})
	if done == nil {
		rl.mu.Unlock()
		return off
	}
	if rl.lead.Commit() >= off {
		rl.mu.Unlock()
		done(off, nil)
		return off
	}
	rl.waiting = append(rl.waiting, waitDone{off, done})
	rl.mu.Unlock()
	return off
}

// Retire retires records (a replicated record like any other); nothing once not leading.
func (l *ReplicatedLog) Retire(offsets ...uint64) {
	l.rl.mu.Lock()
	if l.rl.lead != nil {
		l.rl.wl.Retire(offsets...)
	}
	l.rl.mu.Unlock()
}

// MarkDelivered marks records delivered; nothing once not leading.
func (l *ReplicatedLog) MarkDelivered(offsets ...uint64) {
	l.rl.mu.Lock()
	if l.rl.lead != nil {
		l.rl.wl.MarkDelivered(offsets...)
	}
	l.rl.mu.Unlock()
}

// Commit is the commit offset.
func (l *ReplicatedLog) Commit() uint64 {
	l.rl.mu.Lock()
	defer l.rl.mu.Unlock()
	if l.rl.lead == nil {
		return 0
	}
	return l.rl.lead.Commit()
}

// defaultKeepFor is how long a follower that stopped answering still holds the leader's log
// back (Replication.keepFor).
const defaultKeepFor = 10 * time.Second

// keepLocked keeps the leader's log from what its live followers still need.
func (rl *rlog) keepLocked() {
	if rl.lead == nil {
		return
	}
	now := time.Now()
	rl.wl.KeepFrom(rl.lead.Floor(func(f string) bool {
		t, ok := rl.heardFrom[f]
		return ok && now.Sub(t) < time.Duration(rl.r.keepFor.Load())
	}))
}

func (rl *rlog) dropWaitingLocked(off uint64) {
	for i, w := range rl.waiting {
		if w.off == off {
			rl.waiting = append(rl.waiting[:i], rl.waiting[i+1:]...)
			return
		}
	}
}

func (rl *rlog) failWaitingLocked(err error) {
	ws := rl.waiting
	rl.waiting = nil
	for _, w := range ws {
		go w.done(w.off, err) // never under rl.mu
	}
}

// OnAppend is wal.Config.OnAppend: a record of log name is durable here. It runs on the
// wal's commit goroutine, so it only notes the offset; the worker streams and answers.
//
// The offset is noted before the log is marked dirty: the worker may take the dirty set at
// any moment, and a log it takes must already show the new offset (marked first, a pass
// between the two steps would hand on the old offset and clear the mark, and the kick that
// follows would find nothing to do: the last append of a burst then waited forever).
func (r *Replication) OnAppend(name string, rec wal.Record) {
	r.mu.Lock()
	rl := r.logs[name]
	r.mu.Unlock()
	if rl == nil {
		return
	}
	for {
		cur := rl.synced.Load()
		if rec.Offset <= cur || rl.synced.CompareAndSwap(cur, rec.Offset) {
			break
		}
	}
	if h := testHookOnAppend.Load(); h != nil {
		(*h)(r)
	}
	r.mu.Lock()
	r.dirty[rl] = struct{}{}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// testHookOnAppend, when set (tests only), runs in OnAppend between noting the offset and
// marking the log dirty; testHookWorkPass at the end of each worker pass.
var testHookOnAppend, testHookWorkPass atomic.Pointer[func(*Replication)]

// work hands what became durable to the replication state machines: a leader streams it (one
// Append per batch of records, not per record) and may commit; a follower acknowledges it.
func (r *Replication) work() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.kick:
		}
		r.mu.Lock()
		ls := make([]*rlog, 0, len(r.dirty))
		for rl := range r.dirty {
			ls = append(ls, rl)
		}
		clear(r.dirty)
		r.mu.Unlock()
		for _, rl := range ls {
			rl.mu.Lock()
			var ready replica.Ready
			switch {
			case rl.lead != nil:
				rl.lead.Reclaimed(rl.wl.FirstOffset())
				synced := rl.synced.Load()
				ready = rl.lead.Appended(synced)
				d := rl.lead.Durable(synced)
				ready.CommitMoved = ready.CommitMoved || d.CommitMoved
				rl.keepLocked()
			case rl.fol != nil:
				ready = rl.fol.Durable(rl.synced.Load())
			}
			done := rl.doLocked(ready, nil)
			rl.mu.Unlock()
			for _, w := range done {
				w.done(w.off, nil)
			}
		}
		if h := testHookWorkPass.Load(); h != nil {
			(*h)(r)
		}
	}
}

// doLocked carries out a Ready: local log changes, then messages. It returns the appends the
// commit answered (to be called without the lock).
func (rl *rlog) doLocked(rd replica.Ready, recs []wal.Record) []waitDone {
	r := rl.r
	if rd.LeaderLostData && rl.fol != nil {
		r.log.Error().Str("log", rl.name).Str("leader", rl.leader).Uint64("epoch", rl.epoch).Uint64("held", rl.wl.SyncedOffset()).
			Msg("the queue log's leader holds fewer records of its own epoch than this follower (its disk was lost?): keeping ours, taking nothing from it")
	}
	if rd.StepDown {
		// A newer epoch exists: stop answering appends; the metadata will make us follow.
		rl.lead = nil
		rl.failWaitingLocked(ErrNotLeader)
		return nil
	}
	if rd.Truncate != nil && rl.fol != nil && *rd.Truncate < rl.wl.LastOffset() {
		// The wal cannot cut its tail yet: start the log over and take it all from the leader.
		r.log.Info().Str("log", rl.name).Uint64("to", *rd.Truncate).Msg("follower log diverged: rebuilding it from the leader")
		r.m.Remove(rl.name)
		os.Remove(filepath.Join(r.dir, rl.name))
		wl, err := r.m.Log(rl.name)
		if err != nil {
			r.log.Error().Err(err).Str("log", rl.name).Msg("cannot recreate follower log")
			rl.fol = nil
			return nil
		}
		rl.wl, rl.hist = wl, nil
		rl.synced.Store(0)
		rl.startFollowerLocked()
		return nil
	}
	if rd.RebuildAt != 0 && rl.fol != nil {
		r.m.Remove(rl.name)
		wl, err := r.m.LogAt(rl.name, rd.RebuildAt)
		if err != nil {
			r.log.Error().Err(err).Str("log", rl.name).Msg("cannot rebuild follower log")
			rl.fol = nil
			return nil
		}
		rl.wl = wl
		r.saveHistory(rl.name, nil)
		rl.hist = nil
		rl.synced.Store(0)
	}
	if rd.Write != nil && rl.fol != nil {
		var batch []wal.Record
		for _, rec := range recs {
			if rec.Offset >= rd.Write.From && rec.Offset <= rd.Write.To {
				batch = append(batch, rec)
			}
		}
		if h := rl.fol.History(); !slicesEqual(h, rl.hist) {
			if err := r.saveHistory(rl.name, h); err != nil {
				r.log.Error().Err(err).Str("log", rl.name).Msg("epoch history not saved")
				return nil
			}
			rl.hist = append(rl.hist[:0:0], h...)
		}
		if err := rl.wl.ApplyRaw(batch, nil); err != nil {
			r.log.Warn().Err(err).Str("log", rl.name).Msg("applying leader records failed: asking again")
			rl.startFollowerLocked()
			return nil
		}
	}
	for _, m := range rd.Msgs {
		r.sendLocked(rl, m)
	}
	if (rd.CommitMoved || rl.held) && rl.lead != nil {
		if rl.async && !rl.leaseLocked() {
			rl.held = true
			return nil
		}
		rl.held = false
		c := rl.lead.Commit()
		i := 0
		for i < len(rl.waiting) && rl.waiting[i].off <= c {
			i++
		}
		done := rl.waiting[:i:i]
		rl.waiting = rl.waiting[i:]
		return done
	}
	return nil
}

// ---- wire format: name, message fields, history, records

func (r *Replication) sendLocked(rl *rlog, m replica.Msg) {
	var recs []wal.Record
	if m.Kind == replica.Append {
		var err error
		recs, err = rl.wl.ReadRaw(m.From, int(m.To-m.From+1))
		if err != nil || len(recs) == 0 || recs[len(recs)-1].Offset != m.To {
			r.log.Warn().Err(err).Str("log", rl.name).Uint64("from", m.From).Uint64("to", m.To).Msg("cannot read records to replicate")
			return
		}
	}
	err := r.n.bus.SendBuf(m.Peer, TopicReplica, func(b []byte) []byte { return appendMsg(b, rl.name, m, recs) })
	if err != nil {
		r.log.Debug().Err(err).Str("log", rl.name).Str("peer", m.Peer).Msg("replication message not sent")
	}
}

func appendMsg(b []byte, name string, m replica.Msg, recs []wal.Record) []byte {
	b = append(b, byte(len(name)))
	b = append(b, name...)
	var flags byte
	if m.Rewind {
		flags = 1
	}
	b = append(b, byte(m.Kind), flags)
	for _, v := range []uint64{m.Epoch, m.LastEpoch, m.QEpoch, m.End, m.From, m.To, m.Commit, m.Held} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Hist)))
	for _, e := range m.Hist {
		b = binary.BigEndian.AppendUint64(b, e.Epoch)
		b = binary.BigEndian.AppendUint64(b, e.Start)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(recs)))
	for _, rec := range recs {
		b = binary.BigEndian.AppendUint64(b, rec.Offset)
		b = append(b, byte(rec.Kind))
		b = binary.BigEndian.AppendUint32(b, uint32(len(rec.Body)))
		b = append(b, rec.Body...)
	}
	return b
}

var errShortMsg = errors.New("cluster: short replication message")

func decodeMsg(p []byte) (name string, m replica.Msg, recs []wal.Record, err error) {
	if len(p) < 1 || len(p) < 1+int(p[0])+2+64+2 {
		return "", m, nil, errShortMsg
	}
	n := int(p[0])
	name = string(p[1 : 1+n])
	p = p[1+n:]
	m.Kind, m.Rewind = replica.Kind(p[0]), p[1]&1 != 0
	p = p[2:]
	vals := make([]uint64, 8)
	for i := range vals {
		vals[i] = binary.BigEndian.Uint64(p[8*i:])
	}
	m.Epoch, m.LastEpoch, m.QEpoch, m.End, m.From, m.To, m.Commit, m.Held = vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6], vals[7]
	p = p[64:]
	h := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	if len(p) < 16*h+4 {
		return "", m, nil, errShortMsg
	}
	for i := 0; i < h; i++ {
		m.Hist = append(m.Hist, replica.EpochStart{Epoch: binary.BigEndian.Uint64(p), Start: binary.BigEndian.Uint64(p[8:])})
		p = p[16:]
	}
	k := int(binary.BigEndian.Uint32(p))
	p = p[4:]
	for i := 0; i < k; i++ {
		if len(p) < 13 {
			return "", m, nil, errShortMsg
		}
		off, kind, l := binary.BigEndian.Uint64(p), wal.Kind(p[8]), int(binary.BigEndian.Uint32(p[9:]))
		p = p[13:]
		if len(p) < l {
			return "", m, nil, errShortMsg
		}
		recs = append(recs, wal.Record{Offset: off, Kind: kind, Body: p[:l]})
		p = p[l:]
	}
	return name, m, recs, nil
}

func (r *Replication) receive(peer string, payload []byte) {
	name, m, recs, err := decodeMsg(payload)
	if err != nil {
		r.log.Warn().Err(err).Str("peer", peer).Msg("bad replication message")
		return
	}
	m.Peer = peer
	r.mu.Lock()
	rl := r.logs[name]
	r.mu.Unlock()
	if rl == nil {
		return
	}
	rl.mu.Lock()
	var ready replica.Ready
	switch {
	case rl.lead != nil:
		rl.lead.Reclaimed(rl.wl.FirstOffset()) // a follower that lags behind it is rebuilt
		if rl.heardFrom == nil {
			rl.heardFrom = map[string]time.Time{}
		}
		if m.Epoch == rl.lead.Epoch() {
			rl.heardFrom[peer] = time.Now() // a follower of a newer leader does not count
		}
		ready = rl.lead.Step(m)
		rl.keepLocked()
	case rl.fol != nil:
		if peer == rl.leader {
			rl.heard = time.Now()
		}
		ready = rl.fol.Step(m)
	}
	done := rl.doLocked(ready, recs)
	rl.mu.Unlock()
	for _, w := range done {
		w.done(w.off, nil)
	}
}

// all lists the replicated logs (each is then locked on its own, never under r.mu).
func (r *Replication) all() []*rlog {
	r.mu.Lock()
	defer r.mu.Unlock()
	ls := make([]*rlog, 0, len(r.logs))
	for _, rl := range r.logs {
		ls = append(ls, rl)
	}
	return ls
}

// peerDown restarts the follower sessions with a peer whose link broke (messages may be lost).
func (r *Replication) peerDown(peer string) {
	for _, rl := range r.all() {
		rl.mu.Lock()
		if rl.fol != nil && rl.leader == peer {
			rl.startFollowerLocked()
		}
		rl.mu.Unlock()
	}
}

// tick restarts follower sessions that heard nothing from their leader for a while (a lost
// query, a leader that was down when we asked).
func (r *Replication) tick() {
	defer r.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		for _, rl := range r.all() {
			rl.mu.Lock()
			if rl.fol != nil && time.Since(rl.heard) > 2*time.Second {
				rl.startFollowerLocked()
			}
			rl.mu.Unlock()
		}
	}
}

// ---- epoch histories: DATA_DIR/cluster/epochs/<log>, pairs of u64, written atomically

func (r *Replication) loadHistory(name string) replica.History {
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		return nil
	}
	var h replica.History
	for len(b) >= 16 {
		h = append(h, replica.EpochStart{Epoch: binary.BigEndian.Uint64(b), Start: binary.BigEndian.Uint64(b[8:])})
		b = b[16:]
	}
	return h
}

func (r *Replication) saveHistory(name string, h replica.History) error {
	var b []byte
	for _, e := range h {
		b = binary.BigEndian.AppendUint64(b, e.Epoch)
		b = binary.BigEndian.AppendUint64(b, e.Start)
	}
	p := filepath.Join(r.dir, name)
	if old, err := os.ReadFile(p); err == nil && string(old) == string(b) {
		return nil
	}
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("cluster: epoch history: %w", err)
	}
	if _, err := f.Write(b); err == nil {
		err = f.Sync()
	}
	f.Close()
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("cluster: epoch history: %w", err)
	}
	return nil
}

func slicesEqual(a, b replica.History) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Reconfigure changes the followers of a log this node leads (a member added or removed).
func (r *Replication) Reconfigure(name string, followers []string) error {
	r.mu.Lock()
	rl := r.logs[name]
	r.mu.Unlock()
	if rl == nil {
		return ErrNotLeader
	}
	rl.mu.Lock()
	if rl.lead == nil {
		rl.mu.Unlock()
		return ErrNotLeader
	}
	ready := rl.lead.SetFollowers(followers)
	// Start the new followers at once (Appended sends to those that reported; the others ask).
	a := rl.lead.Appended(rl.synced.Load())
	ready.Msgs = append(ready.Msgs, a.Msgs...)
	done := rl.doLocked(ready, nil)
	rl.mu.Unlock()
	for _, w := range done {
		w.done(w.off, nil)
	}
	r.log.Info().Str("log", name).Strs("followers", followers).Msg("queue log members changed")
	return nil
}

// ErrTransfer: a leadership transfer could not bring the target up to date in time.
var ErrTransfer = errors.New("cluster: the target replica did not catch up in time")

// PrepareTransfer readies a log this node leads for a new leader: it stops taking appends
// (they fail with ErrNotLeader: the publisher is nacked and may retry) and waits until the
// target follower holds every record, so that nothing committed here is missing there when it
// leads. resume undoes the stop if the move is not made.
func (r *Replication) PrepareTransfer(name, target string, timeout time.Duration) (resume func(), err error) {
	r.mu.Lock()
	rl := r.logs[name]
	r.mu.Unlock()
	if rl == nil {
		return nil, ErrNotLeader
	}
	rl.mu.Lock()
	if rl.lead == nil {
		rl.mu.Unlock()
		return nil, ErrNotLeader
	}
	rl.failed = ErrNotLeader
	rl.mu.Unlock()
	resume = func() {
		rl.mu.Lock()
		if rl.failed == ErrNotLeader {
			rl.failed = nil
		}
		rl.mu.Unlock()
	}
	if err := rl.wl.Sync(); err != nil {
		resume()
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		rl.mu.Lock()
		done := rl.lead != nil && rl.lead.Match(target) >= rl.wl.LastOffset()
		lost := rl.lead == nil
		rl.mu.Unlock()
		if done {
			return resume, nil
		}
		if lost {
			return nil, ErrNotLeader
		}
		if time.Now().After(deadline) {
			resume()
			return nil, ErrTransfer
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// InSync returns the followers of a log this node leads that hold everything it has written,
// then the others, most up to date first.
func (r *Replication) InSync(name string) (inSync []string) {
	r.mu.Lock()
	rl := r.logs[name]
	r.mu.Unlock()
	if rl == nil {
		return nil
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.lead == nil {
		return nil
	}
	end := rl.wl.LastOffset()
	type f struct {
		name  string
		match uint64
	}
	var fs []f
	for _, name := range rl.lead.Followers() {
		fs = append(fs, f{name, rl.lead.Match(name)})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].match > fs[j].match })
	_ = end
	for _, x := range fs { // PrepareTransfer waits for the chosen one to catch up
		inSync = append(inSync, x.name)
	}
	return inSync
}
