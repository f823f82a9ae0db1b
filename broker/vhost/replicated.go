package vhost

import (
	"errors"
	"fmt"
	"slices"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/exchange"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/queue"
)

// Replicated queues (x-queue-type: quorum) in a cluster: each has replicas on several nodes,
// one of them the leader at an epoch. The placement is metadata: the queue record carries the
// first one (chosen by the declaring node), KindPlacement records move the leader. On every
// node, applying them gives the node its part: the leader runs the queue over a log that
// answers appends once a majority of the replicas hold them; a follower mirrors the log; the
// other nodes hold the queue's definition only.

// ReplicaHost is the cluster's queue-log replication as a vhost sees it (nil on a single node).
// Its methods are called while the vhost applies metadata, in log order.
type ReplicaHost interface {
	// Self is this node's name.
	Self() string
	// DataID is the id of a node's data folder ("" when not known): recorded with each leader
	// in the placement, so that a leader back with another folder (its disk lost) is known
	// not to hold the log.
	DataID(node string) string
	// Place picks n nodes for a new replicated queue, this node first (its leader), then the
	// live nodes with the fewest replicas.
	Place(n int) []string
	// Lead makes this node the leader of the queue's log at epoch, followed by followers;
	// replay is called with every live record the local log holds, in order, before the log
	// is returned. The log answers an append once a majority holds it (async: once durable
	// here).
	Lead(vhost, queue string, epoch uint64, followers []string, async bool, replay func(off uint64, payload []byte, delivered bool) error) (queue.Log, error)
	// Follow makes this node a follower of the queue's log, led by leader at epoch.
	Follow(vhost, queue string, epoch uint64, leader string) error
	// Stop ends this node's part in the queue's log; remove deletes the log.
	Stop(vhost, queue string, remove bool)
	// SetMembers changes the followers of a log this node leads.
	SetMembers(vhost, queue string, followers []string) error
	// PrepareTransfer stops appends to a log this node leads and waits until target holds
	// every record; resume undoes the stop when the move does not happen.
	PrepareTransfer(vhost, queue, target string) (resume func(), err error)
	// InSync returns the followers of a log this node leads that hold every record now, the
	// most up to date first.
	InSync(vhost, queue string) []string
}

// Placement is a replicated queue's leader, replicas and epoch.
type Placement struct {
	Queue    string
	Leader   string
	Replicas []string
	Epoch    uint64
	Async    bool
	// LeaderData is the leader's data folder id when it was made leader ("" if unknown).
	LeaderData string
}

// Replicated reports whether declaring with these arguments makes a replicated queue.
func replicatedType(args amqp.Table) bool { return args["x-queue-type"] == "quorum" }

// placeLocked adds the first placement of a new replicated queue to its record.
func (v *VHost) place(rec *meta.Record, d QueueDecl) {
	if v.Replicas == nil || !replicatedType(d.Args) {
		return
	}
	n := 3
	if x, ok := amqp.IntValue(d.Args["x-quorum-initial-group-size"]); ok && x > 0 {
		n = int(x)
	}
	reps := v.Replicas.Place(n)
	names := make([]any, len(reps))
	for i, r := range reps {
		names[i] = r
	}
	rec.Fields["rep"] = names
	rec.Fields["ld"] = reps[0]
	if id := v.Replicas.DataID(reps[0]); id != "" {
		rec.Fields["ldd"] = id
	}
	rec.Fields["ep"] = int64(1)
	mode, ok := d.Args["x-warren-replication"].(string)
	if !ok {
		// Else the policy key warren-replication, as it stands when the queue is declared
		// (the mode is part of the placement: a later policy change does not move it).
		v.mu.RLock()
		if p := v.policyForLocked("queues", d.Name); p != nil {
			mode, _ = p.Definition["warren-replication"].(string)
		}
		v.mu.RUnlock()
	}
	if mode == "async" {
		rec.Fields["as"] = true
	}
}

func placementOf(rec meta.Record) *Placement {
	reps, ok := rec.Fields["rep"].([]any)
	if !ok || len(reps) == 0 {
		return nil
	}
	p := &Placement{Queue: rec.Name, Leader: rec.Str("ld"), Epoch: uint64(rec.Int("ep", 1)), Async: rec.Bool("as"), LeaderData: rec.Str("ldd")}
	for _, r := range reps {
		if s, ok := r.(string); ok {
			p.Replicas = append(p.Replicas, s)
		}
	}
	return p
}

func (p *Placement) followers() []string {
	var out []string
	for _, r := range p.Replicas {
		if r != p.Leader {
			out = append(out, r)
		}
	}
	return out
}

// openReplicatedLocked gives a new replicated queue its part on this node: the leader's log
// (with the local log's records restored into q) or a follower's mirror. It returns false when
// rec has no placement (not a replicated queue, or no cluster).
func (v *VHost) openReplicatedLocked(q *queue.Queue, rec meta.Record) (bool, error) {
	p := placementOf(rec)
	if p == nil || v.Replicas == nil {
		return false, nil
	}
	v.placements[q.Name] = p
	if v.restoring.Load() {
		// The node is catching up on the metadata: the placement may change again before it
		// is done. Its part is taken once, for the final placement (startParts): leading a
		// log for a moment here would let the queue write into a log it only follows.
		return true, nil
	}
	return true, v.takePartLocked(q, p)
}

// startParts takes this node's part in every replicated queue once the metadata is back
// (FinishRestore).
func (v *VHost) startParts() {
	if v.Replicas == nil {
		return
	}
	v.mu.Lock()
	var olds []*queue.Queue
	var moves []refMove
	type conf struct {
		q   *queue.Queue
		cfg queue.Config
	}
	var confs []conf
	for name, p := range v.placements {
		q := v.queues[name]
		if q == nil {
			continue
		}
		if standby := !v.leadsHere(p); q.Standby != standby {
			olds = append(olds, q)
			r := v.remoteRef(q)
			if r != nil {
				v.forgetRef(q)
			}
			q = v.swapQueueLocked(q, standby)
			if r != nil {
				moves = append(moves, v.handoverLocked(r, q))
			}
			if len(v.policies) > 0 {
				confs = append(confs, conf{q, v.queuePolicyLocked(q)})
			}
		}
		moves = append(moves, v.leaderRefLocked(q, p.Leader))
		if err := v.takePartLocked(q, p); err != nil {
			v.Log.Error().Err(err).Str("queue", name).Msg("replicated queue not started")
		}
	}
	v.mu.Unlock()
	v.moveRefs(moves)
	for _, c := range confs {
		c.q.Configure(c.cfg)
	}
	for _, q := range olds {
		q.OutOfService()
	}
}

// refMove is a change of a replicated queue's remote Ref, made once the vhost's lock is
// released: point it at the new leader, or drop it: this node leads the queue now (to: its
// consumers move there) or nobody does (they are cancelled).
type refMove struct {
	r      queue.Ref
	leader string
	to     queue.Ref
}

// handoverLocked ends r, a remote Ref of q's queue, once this node holds q: when q leads, r's
// consumers move to it.
func (v *VHost) handoverLocked(r queue.Ref, q *queue.Queue) refMove {
	if q.Standby {
		return refMove{r: r}
	}
	return refMove{r: r, to: q.Ref()}
}

// leaderRefLocked makes this node reach q, a replicated queue, at its leader: through q's own
// Ref when this node leads it (a remote Ref q had is dropped), else through a remote Ref to
// leader (a new one, or q's, pointed at the new leader).
func (v *VHost) leaderRefLocked(q *queue.Queue, leader string) refMove {
	r := v.remoteRef(q)
	switch {
	case v.Remote == nil:
	case v.homedHere(leader):
		if r != nil {
			v.forgetRef(q)
			return v.handoverLocked(r, q)
		}
	case r != nil:
		return refMove{r: r, leader: leader}
	default:
		v.refFor(q, leader)
	}
	return refMove{}
}

func (v *VHost) moveRefs(moves []refMove) {
	for _, m := range moves {
		switch {
		case m.r == nil:
		case m.to != nil:
			v.Remote.Handover(m.r, m.to)
		case m.leader == "":
			v.Remote.Dropped(m.r)
		default:
			v.Remote.Retarget(m.r, m.leader)
		}
	}
}

// swapQueueLocked puts a new object for a replicated queue in old's place (its bindings move
// to it); the caller takes the new one's part and then lets old go (OutOfService, outside the
// lock), which never touches the log.
func (v *VHost) swapQueueLocked(old *queue.Queue, standby bool) *queue.Queue {
	q := queue.New(old.Name, queue.Options{Durable: old.Durable, Args: old.Args, VHost: v.Name, Standby: standby})
	v.setupQueue(q)
	v.queues[q.Name] = q
	for _, x := range v.exchanges {
		for _, b := range x.UnbindDest(old) {
			b.Dest = exchange.Destination(q)
			x.Bind(b)
		}
	}
	delete(v.queuePolicy, old)
	return q
}

// leadsHere reports whether this node is to lead a replicated queue: it is the placement's
// leader, with the data folder it was made leader with.
func (v *VHost) leadsHere(p *Placement) bool {
	return p.Leader == v.Replicas.Self() && !v.lostLeadData(p)
}

// lostLeadData reports whether this node, a queue's leader, runs on another data folder than
// the one it was made leader with (it came back from a lost disk): it holds none of the log.
func (v *VHost) lostLeadData(p *Placement) bool {
	if p.LeaderData == "" || p.Leader != v.Replicas.Self() {
		return false
	}
	id := v.Replicas.DataID(p.Leader)
	return id != "" && id != p.LeaderData
}

func (v *VHost) takePartLocked(q *queue.Queue, p *Placement) error {
	self := v.Replicas.Self()
	switch {
	case v.lostLeadData(p):
		// Leading an empty log would make the followers cut theirs to it: the queue waits
		// (standby: publishes are nacked) until the controller moves the leader to a replica
		// that holds the log; this node then follows it and is rebuilt.
		v.Log.Error().Str("queue", q.Name).Uint64("epoch", p.Epoch).
			Msg("this node leads the queue but came back with another data folder (its disk was lost): not leading it; waiting for a replica that holds the log to take over")
	case p.Leader == self:
		// After a leader change (epoch > 1) every message comes back redelivered: an earlier
		// leader may have delivered one before its delivered mark reached a majority (a
		// consumer would otherwise see it twice with redelivered=false), as a RabbitMQ mirror
		// promoted to master marks its messages redelivered.
		takeover := p.Epoch > 1
		l, err := v.Replicas.Lead(v.Name, q.Name, p.Epoch, p.followers(), p.Async, func(off uint64, payload []byte, delivered bool) error {
			if err := q.RestoreRecord(off, payload, delivered || takeover); err != nil {
				return fmt.Errorf("queue '%s' record %d: %w", q.Name, off, err)
			}
			return nil
		})
		if err != nil {
			return amqp.ChannelErr(amqp.InternalError, "cannot lead the log of queue '%s' in vhost '%s': %v", q.Name, v.Name, err)
		}
		q.SetLog(l)
	case slices.Contains(p.Replicas, self):
		if err := v.Replicas.Follow(v.Name, q.Name, p.Epoch, p.Leader); err != nil {
			return amqp.ChannelErr(amqp.InternalError, "cannot follow the log of queue '%s' in vhost '%s': %v", q.Name, v.Name, err)
		}
	}
	return nil
}

// applyPlacement moves a replicated queue's leader (the controller's failover, a rebalance) or
// changes its members. A record for an epoch the queue no longer has changes nothing.
func (v *VHost) applyPlacement(rec meta.Record, fx meta.Effects) error {
	v.mu.Lock()
	old := v.queues[rec.Name]
	p := v.placements[rec.Name]
	if old == nil || p == nil || p.Epoch != uint64(rec.Int("pe", 0)) || v.Replicas == nil {
		v.mu.Unlock()
		return nil
	}
	np := &Placement{Queue: p.Queue, Leader: p.Leader, Replicas: p.Replicas, Epoch: uint64(rec.Int("ep", int64(p.Epoch))), Async: p.Async, LeaderData: p.LeaderData}
	if ld := rec.Str("ld"); ld != "" {
		np.Leader, np.LeaderData = ld, rec.Str("ldd")
	}
	if reps, ok := rec.Fields["rep"].([]any); ok {
		np.Replicas = nil
		for _, r := range reps {
			if s, ok := r.(string); ok {
				np.Replicas = append(np.Replicas, s)
			}
		}
	}
	v.placements[rec.Name] = np
	fx.Keep()
	if v.restoring.Load() {
		v.mu.Unlock()
		return nil // taken when the metadata is back (startParts)
	}
	self := v.Replicas.Self()
	if np.Leader == p.Leader && np.Epoch == p.Epoch {
		// Members changed, the leader stays.
		defer v.mu.Unlock()
		was, is := slices.Contains(p.Replicas, self), slices.Contains(np.Replicas, self)
		switch {
		case np.Leader == self:
			return v.Replicas.SetMembers(v.Name, rec.Name, np.followers())
		case is && !was:
			return v.Replicas.Follow(v.Name, rec.Name, np.Epoch, np.Leader)
		case was && !is:
			v.Replicas.Stop(v.Name, rec.Name, true)
		}
		return nil
	}
	if p.Leader != self && np.Leader != self {
		// Not this node's log to run: follow the new leader if a replica. Its Ref here
		// follows the leader, consumers included.
		err := v.takePartLocked(old, np)
		m := v.leaderRefLocked(old, np.Leader)
		v.mu.Unlock()
		v.moveRefs([]refMove{m})
		return err
	}
	// This node leads it now, or led it until now: a new queue object takes the old one's
	// place (bindings move to it); the old one goes without touching the log (a new leader's
	// queue is restored from its log; a deposed one's log now follows). A deposed leader
	// reaches the new one through a remote Ref, where its consumers move; a new leader's remote
	// Ref hands its consumers to the new queue object.
	var moves []refMove
	r := v.remoteRef(old)
	if r != nil {
		v.forgetRef(old)
	}
	q := v.swapQueueLocked(old, np.Leader != self)
	if r != nil {
		moves = append(moves, v.handoverLocked(r, q))
	}
	moves = append(moves, v.leaderRefLocked(q, np.Leader))
	defer v.moveRefs(moves) // runs after every return below, which all unlock v.mu first
	if np.Leader != self {
		if !slices.Contains(np.Replicas, self) {
			v.Replicas.Stop(v.Name, q.Name, true)
		} else if err := v.Replicas.Follow(v.Name, q.Name, np.Epoch, np.Leader); err != nil {
			v.mu.Unlock()
			return err
		}
	} else if err := v.takePartLocked(q, np); err != nil {
		v.mu.Unlock()
		return err
	}
	var cfg queue.Config
	withPolicy := len(v.policies) > 0
	if withPolicy {
		cfg = v.queuePolicyLocked(q)
	}
	v.mu.Unlock()
	if withPolicy {
		q.Configure(cfg)
	}
	// The deposed leader's consumers move to the Ref that reaches the new leader (they
	// subscribe there once it answers); a new leader's old object had none.
	var next queue.Ref
	if np.Leader != self {
		next = v.Ref(q)
	}
	old.OutOfServiceTo(next)
	return nil
}

// dropReplicatedLocked ends this node's part in a deleted replicated queue.
func (v *VHost) dropReplicatedLocked(q *queue.Queue, fx meta.Effects) {
	if _, ok := v.placements[q.Name]; !ok {
		return
	}
	delete(v.placements, q.Name)
	fx.Drop(meta.PlacementKey(v.Name, q.Name))
	if v.Replicas != nil {
		v.Replicas.Stop(v.Name, q.Name, true)
	}
}

// Placements lists the replicated queues of the vhost.
func (v *VHost) Placements() []Placement {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Placement, 0, len(v.placements))
	for _, p := range v.placements {
		out = append(out, *p)
	}
	return out
}

// PlacementOf returns a replicated queue's placement (false for other queues).
func (v *VHost) PlacementOf(name string) (Placement, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	p, ok := v.placements[name]
	if !ok {
		return Placement{}, false
	}
	return *p, true
}

// MoveLeader proposes a new leader at the next epoch for a replicated queue whose placement
// is still at epoch.
func (v *VHost) MoveLeader(name string, epoch uint64, leader string) error {
	f := amqp.Table{"ld": leader, "ep": int64(epoch + 1), "pe": int64(epoch)}
	if v.Replicas != nil {
		if id := v.Replicas.DataID(leader); id != "" {
			f["ldd"] = id
		}
	}
	_, err := v.propose(meta.Record{Kind: meta.KindPlacement, Name: name, Fields: f})
	return err
}

// AddMember adds a replica on node to a replicated queue (it catches up from the leader and
// counts in the majority from then on).
func (v *VHost) AddMember(name, node string) error {
	p, ok := v.PlacementOf(name)
	if !ok {
		return amqp.ChannelErr(amqp.NotFound, "no replicated queue '%s' in vhost '%s'", name, v.Name)
	}
	if slices.Contains(p.Replicas, node) {
		return nil
	}
	return v.setMembers(p, append(slices.Clone(p.Replicas), node))
}

// DeleteMember removes the replica on node from a replicated queue. The leader's replica is
// not removed (move the leader first), nor the last one.
func (v *VHost) DeleteMember(name, node string) error {
	p, ok := v.PlacementOf(name)
	if !ok {
		return amqp.ChannelErr(amqp.NotFound, "no replicated queue '%s' in vhost '%s'", name, v.Name)
	}
	if !slices.Contains(p.Replicas, node) {
		return nil
	}
	if node == p.Leader {
		return amqp.ChannelErr(amqp.PreconditionFailed, "node '%s' leads queue '%s' in vhost '%s': move the leader first", node, name, v.Name)
	}
	var reps []string
	for _, r := range p.Replicas {
		if r != node {
			reps = append(reps, r)
		}
	}
	return v.setMembers(p, reps)
}

func (v *VHost) setMembers(p Placement, reps []string) error {
	names := make([]any, len(reps))
	for i, r := range reps {
		names[i] = r
	}
	_, err := v.propose(meta.Record{Kind: meta.KindPlacement, Name: p.Queue,
		Fields: amqp.Table{"rep": names, "ep": int64(p.Epoch), "pe": int64(p.Epoch)}})
	return err
}

// TransferLeader moves a replicated queue's leadership from this node (its leader) to target,
// one of its replicas, without losing a committed message: appends stop (publishers are nacked
// meanwhile), target catches up, then the placement moves. An empty target picks the most up
// to date replica.
func (v *VHost) TransferLeader(name, target string) error {
	p, ok := v.PlacementOf(name)
	if !ok || v.Replicas == nil {
		return amqp.ChannelErr(amqp.NotFound, "no replicated queue '%s' in vhost '%s'", name, v.Name)
	}
	if p.Leader != v.Replicas.Self() {
		return ErrNotLeaderHere
	}
	if target == "" {
		in := v.Replicas.InSync(v.Name, name)
		if len(in) == 0 {
			return amqp.ChannelErr(amqp.PreconditionFailed, "queue '%s' in vhost '%s' has no replica in sync to lead it", name, v.Name)
		}
		target = in[0]
	}
	if target == p.Leader {
		return nil
	}
	if !slices.Contains(p.Replicas, target) {
		return amqp.ChannelErr(amqp.PreconditionFailed, "node '%s' holds no replica of queue '%s' in vhost '%s'", target, name, v.Name)
	}
	resume, err := v.Replicas.PrepareTransfer(v.Name, name, target)
	if err != nil {
		return amqp.ChannelErr(amqp.InternalError, "queue '%s' in vhost '%s': %v", name, v.Name, err)
	}
	if err := v.MoveLeader(name, p.Epoch, target); err != nil {
		resume()
		return err
	}
	return nil
}

// ErrNotLeaderHere: the operation runs on the queue's leader node.
var ErrNotLeaderHere = errors.New("vhost: this node does not lead the queue")
