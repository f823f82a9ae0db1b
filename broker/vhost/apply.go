package vhost

import (
	"fmt"
	"strings"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/exchange"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/queue"
)

// Storage is what a vhost needs to persist messages: per-queue message logs and spills.
// Definitions go through the metadata store (VHost.Meta). Nil means nothing is persisted.
type Storage interface {
	// OpenQueueLog opens (or creates) the message log of a durable queue. Replay, when not nil,
	// is called with each live record in order before OpenQueueLog returns.
	OpenQueueLog(vhost, queue string, replay func(offset uint64, payload []byte, delivered bool) error) (queue.Log, error)
	// RemoveQueueLog deletes a queue's log.
	RemoveQueueLog(vhost, queue string) error
	// OpenSpill opens (creating) the spill of any queue: where the tail of a long backlog waits
	// on disk. Spills are caches, not durable; they are wiped when the node starts.
	OpenSpill(vhost, queue string) (queue.Spill, error)
	// RemoveSpill deletes a queue's spill (a no-op if it has none).
	RemoveSpill(vhost, queue string) error
}

// setupQueue connects a new queue to the vhost: auto-delete, spill and memory budget.
func (v *VHost) setupQueue(q *queue.Queue) {
	q.OnUnused = func(q *queue.Queue) { v.DeleteQueueObject(q) }
	q.OnDeadLetter = v.deadLetter
	q.OnSpillError = v.spillError
	q.SetExchangeKeys(xkeys{v})
	if v.store != nil {
		vh, name := v.Name, q.Name
		q.SetSpill(func() (queue.Spill, error) { return v.store.OpenSpill(vh, name) })
	}
	if v.Budget != nil {
		q.SetBudget(v.Budget)
	}
}

// propose hands a change to the metadata store, which persists it and applies it through
// Apply. Without a store (a vhost used on its own) the change is applied at once.
func (v *VHost) propose(rec meta.Record) (any, error) {
	rec.VHost = v.Name
	var res any
	var err error
	if v.Meta == nil {
		res, err = v.Apply(rec, meta.NoEffects)
	} else {
		res, err = v.Meta.Propose(rec)
	}
	if err != nil {
		if _, ok := err.(*amqp.Error); !ok {
			return nil, amqp.ConnErr(amqp.InternalError, "could not persist definition: %v", err)
		}
	}
	return res, err
}

func argsOrEmpty(a amqp.Table) amqp.Table {
	if a == nil {
		return amqp.Table{}
	}
	return a
}

// isDurable reports whether a binding destination survives a restart.
func isDurable(d exchange.Destination) bool {
	switch d := d.(type) {
	case *queue.Queue:
		return d.Durable && !d.Exclusive
	case *exchange.Exchange:
		return d.Durable
	}
	return false
}

// Records of the vhost's kinds.

func exchangeRecord(d ExchangeDecl) meta.Record {
	return meta.Record{Kind: meta.KindExchange, Name: d.Name, Transient: !d.Durable,
		Fields: amqp.Table{"t": d.Type, "du": d.Durable, "ad": d.AutoDelete, "i": d.Internal, "a": argsOrEmpty(d.Args)}}
}

func queueRecord(d QueueDecl) meta.Record {
	return meta.Record{Kind: meta.KindQueue, Name: d.Name, Transient: !d.Durable || d.Exclusive, Owner: d.Owner,
		Fields: amqp.Table{"du": d.Durable, "ex": d.Exclusive, "ad": d.AutoDelete, "a": argsOrEmpty(d.Args)}}
}

func deleteQueueRecord(q *queue.Queue) meta.Record {
	return meta.Record{Kind: meta.KindQueue, Delete: true, Name: q.Name, Transient: !isDurable(q), Object: q}
}

func bindingRecord(src *exchange.Exchange, dest exchange.Destination, key string, args amqp.Table, del bool) meta.Record {
	return meta.Record{Kind: meta.KindBinding, Delete: del, Transient: !src.Durable || !isDurable(dest),
		Fields: amqp.Table{"s": src.Name, "d": dest.DestName(), "de": dest.IsExchange(), "rk": key, "a": argsOrEmpty(args)}}
}

func policyRecord(p Policy) meta.Record {
	return meta.Record{Kind: meta.KindPolicy, Name: p.Name,
		Fields: amqp.Table{"p": p.Pattern, "at": p.ApplyTo, "pr": int64(p.Priority), "d": p.Definition}}
}

// bindingKey is the metadata key of a binding as stored (its own arguments, not a request's
// equal ones of other integer widths).
func (v *VHost) bindingKey(src *exchange.Exchange, b exchange.Binding) string {
	return meta.BindingKey(v.Name, src.Name, b.Dest.DestName(), b.Dest.IsExchange(), b.Key, b.Args)
}

// Apply applies a record of one of the vhost's kinds (exchange, queue, binding, policy): the
// one place where they change, live and when the node starts. It is the vhost's part of the
// node's meta.Applier. Errors are AMQP errors with RabbitMQ's texts.
func (v *VHost) Apply(rec meta.Record, fx meta.Effects) (any, error) {
	switch rec.Kind {
	case meta.KindExchange:
		if rec.Delete {
			return nil, v.applyDeleteExchange(rec, fx)
		}
		return v.applyExchange(rec, fx)
	case meta.KindQueue:
		if rec.Delete {
			return v.applyDeleteQueue(rec, fx), nil
		}
		return v.applyQueue(rec, fx)
	case meta.KindBinding:
		if rec.Delete {
			return nil, v.applyUnbind(rec, fx)
		}
		return nil, v.applyBind(rec, fx)
	case meta.KindPolicy:
		if rec.Delete {
			return v.applyDeletePolicy(rec, fx), nil
		}
		return nil, v.applyPolicy(rec, fx)
	case meta.KindPlacement:
		return nil, v.applyPlacement(rec, fx)
	}
	return nil, fmt.Errorf("%w: %q", meta.ErrUnknownKind, rec.Kind)
}

func (v *VHost) applyExchange(rec meta.Record, fx meta.Effects) (*exchange.Exchange, error) {
	d := ExchangeDecl{Name: rec.Name, Type: rec.Str("t"), Durable: rec.BoolOr("du", true), AutoDelete: rec.Bool("ad"),
		Internal: rec.Bool("i"), Args: rec.Table("a")}
	v.mu.Lock()
	defer v.mu.Unlock()
	if x := v.exchanges[d.Name]; x != nil {
		if err := v.equivalentExchange(x, d); err != nil {
			return nil, err
		}
		return x, nil
	}
	w, err := dedupArgs(d.Args, d.Name, v.Name)
	if err != nil {
		return nil, err
	}
	x, err := exchange.New(d.Name, d.Type, exchange.Options{Durable: d.Durable, AutoDelete: d.AutoDelete, Internal: d.Internal, Args: d.Args})
	if err != nil {
		return nil, err
	}
	v.exchanges[d.Name] = x
	v.setExchangeDedup(d.Name, w)
	fx.Keep()
	return x, nil
}

func (v *VHost) applyDeleteExchange(rec meta.Record, fx meta.Effects) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	x := v.exchanges[rec.Name]
	if x == nil || x.Name == "" || strings.HasPrefix(x.Name, "amq.") {
		return nil
	}
	if rec.Bool("iu") && x.BindingCount() > 0 {
		return amqp.ChannelErr(amqp.PreconditionFailed, "exchange '%s' in vhost '%s' in use", x.Name, v.Name)
	}
	v.deleteExchangeLocked(x, fx)
	return nil
}

// deleteExchangeLocked removes x, every binding from and to it, and auto-delete exchanges
// that lose their last binding with it.
func (v *VHost) deleteExchangeLocked(x *exchange.Exchange, fx meta.Effects) {
	delete(v.exchanges, x.Name)
	v.setExchangeDedup(x.Name, nil)
	// Dropped whether durable or not: a replicated store keeps transient records too (a
	// log store holds none, and dropping an absent key is a no-op).
	fx.Drop(meta.ExchangeKey(v.Name, x.Name))
	for _, b := range x.Bindings() {
		fx.Drop(v.bindingKey(x, b))
	}
	v.unbindDestLocked(x, fx)
}

// unbindDestLocked removes every binding to d, dropping their records.
func (v *VHost) unbindDestLocked(d exchange.Destination, fx meta.Effects) {
	for _, other := range v.exchanges {
		removed := other.UnbindDest(d)
		if len(removed) == 0 {
			continue
		}
		for _, b := range removed {
			fx.Drop(v.bindingKey(other, b))
		}
		v.maybeAutoDeleteLocked(other, fx)
	}
}

// maybeAutoDeleteLocked deletes an auto-delete exchange that has lost its last binding.
func (v *VHost) maybeAutoDeleteLocked(x *exchange.Exchange, fx meta.Effects) {
	if x.AutoDelete && x.BindingCount() == 0 && v.exchanges[x.Name] == x {
		v.deleteExchangeLocked(x, fx)
	}
}

// declared is what applying a queue record returns.
type declared struct {
	q       *queue.Queue
	created bool
}

func (v *VHost) applyQueue(rec meta.Record, fx meta.Effects) (declared, error) {
	d := QueueDecl{Name: rec.Name, Durable: rec.BoolOr("du", true), Exclusive: rec.Bool("ex"), AutoDelete: rec.Bool("ad"),
		Args: rec.Table("a"), Owner: rec.Owner}
	v.mu.Lock()
	if err := v.brokenErrLocked(d.Name); err != nil {
		v.mu.Unlock()
		return declared{}, err
	}
	if q := v.queues[d.Name]; q != nil {
		defer v.mu.Unlock()
		if err := v.checkExclusiveLocked(q, d.Owner); err != nil {
			return declared{}, err
		}
		if q.Exclusive != d.Exclusive {
			return declared{}, v.lockedErr(q)
		}
		if err := v.equivalentQueue(q, d); err != nil {
			return declared{}, err
		}
		return declared{q, false}, nil
	}
	replay := fx.Replaying()
	if !replay && v.maxQueues >= 0 && len(v.queues) >= v.maxQueues {
		v.mu.Unlock()
		return declared{}, amqp.ChannelErr(amqp.PreconditionFailed, "cannot declare queue '%s': queue limit in vhost '%s' (%d) is reached", d.Name, v.Name, v.maxQueues)
	}
	o := queue.Options{Durable: d.Durable, Exclusive: d.Exclusive, AutoDelete: d.AutoDelete, Args: d.Args, VHost: v.Name}
	if d.Exclusive {
		o.Owner = d.Owner
	}
	if p := placementOf(rec); p != nil && v.Replicas != nil {
		o.Standby = !v.leadsHere(p) // startParts sets it again after a restart
	}
	q := queue.New(d.Name, o)
	home := queueHome(rec)
	refHome := home
	if p := placementOf(rec); p != nil && v.Replicas != nil {
		refHome = p.Leader // a replicated queue is reached at its leader (replicated.go)
	}
	remote := v.refFor(q, refHome) != nil
	v.setupQueue(q)
	if remote {
		// Its home keeps its messages, decides x-expires and auto-delete, dead-letters: this
		// node's Queue only holds the definition (bindings, declares, management).
		q.OnUnused = nil
	}
	if ok, err := v.openReplicatedLocked(q, rec); ok {
		if err != nil {
			delete(v.placements, q.Name)
			v.mu.Unlock()
			return declared{}, err
		}
	} else if v.store != nil && isDurable(q) && !remote {
		l, err := v.store.OpenQueueLog(v.Name, q.Name, func(off uint64, payload []byte, delivered bool) error {
			if err := q.RestoreRecord(off, payload, delivered); err != nil {
				return fmt.Errorf("queue '%s' record %d: %w", q.Name, off, err)
			}
			return nil
		})
		if err != nil {
			if replay {
				// Keep the definition (and its bindings'): an operator may repair the log.
				v.broken[q.Name] = err
				fx.Keep()
				v.mu.Unlock()
				return declared{}, fmt.Errorf("vhost: queue '%s' in vhost '%s' is out of service: %w", q.Name, v.Name, err)
			}
			v.mu.Unlock()
			return declared{}, amqp.ChannelErr(amqp.InternalError, "cannot open the log of queue '%s' in vhost '%s': %v", q.Name, v.Name, err)
		}
		q.SetLog(l)
	}
	v.queues[d.Name] = q
	if home != "" {
		v.home[d.Name] = home
	}
	fx.Keep()
	if v.Counters != nil && !replay {
		v.Counters.Created.Add(1)
	}
	var cfg queue.Config
	withPolicy := !replay && len(v.policies) > 0 // at start, policies apply once everything is back
	if withPolicy {
		cfg = v.queuePolicyLocked(q)
	}
	v.mu.Unlock()
	if withPolicy {
		q.Configure(cfg)
	}
	return declared{q, true}, nil
}

// applyDeleteQueue removes a queue (rec.Object, when set, must still be the queue of that
// name), its messages, its log and every binding to it; it returns the messages it held.
func (v *VHost) applyDeleteQueue(rec meta.Record, fx meta.Effects) int {
	v.mu.RLock()
	q := v.queues[rec.Name]
	v.mu.RUnlock()
	if obj, ok := rec.Object.(*queue.Queue); ok && obj != q {
		return 0 // already gone; the name may be another queue's now
	}
	if q == nil {
		v.mu.Lock()
		defer v.mu.Unlock()
		if _, ok := v.broken[rec.Name]; ok {
			// Deleting an out-of-service queue drops its definition and its damaged log.
			delete(v.broken, rec.Name)
			fx.Drop(meta.QueueKey(v.Name, rec.Name))
			if v.store != nil {
				v.store.RemoveQueueLog(v.Name, rec.Name)
			}
		}
		return 0
	}
	n, _ := q.Delete(false, false) // outside v.mu: it cancels consumers (channel locks)
	v.dropRef(q)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.removeQueueLocked(q, fx)
	return n
}

// removeQueueLocked unregisters a deleted queue and removes its bindings and files.
func (v *VHost) removeQueueLocked(q *queue.Queue, fx meta.Effects) {
	if v.queues[q.Name] == q {
		delete(v.queues, q.Name)
		if v.Counters != nil {
			v.Counters.Deleted.Add(1)
		}
	}
	delete(v.queuePolicy, q)
	durable := isDurable(q)
	fx.Drop(meta.QueueKey(v.Name, q.Name))
	if v.home[q.Name] != "" && v.queues[q.Name] == nil {
		delete(v.home, q.Name)
	}
	remote := v.Ref(q) != q.Ref()
	v.forgetRef(q)
	v.unbindDestLocked(q, fx)
	if _, replicated := v.placements[q.Name]; replicated {
		v.dropReplicatedLocked(q, fx)
		durable = false // its log went with its replication
	}
	if v.store != nil && !remote {
		if durable {
			v.store.RemoveQueueLog(v.Name, q.Name)
		}
		v.store.RemoveSpill(v.Name, q.Name)
	}
}

// bindingEnds finds a binding record's exchange and destination (nil when missing).
func (v *VHost) bindingEndsLocked(rec meta.Record) (*exchange.Exchange, exchange.Destination, error) {
	src := v.exchanges[rec.Str("s")]
	if src == nil {
		return nil, nil, v.notFoundExchange(rec.Str("s"))
	}
	name := rec.Str("d")
	if rec.Bool("de") {
		if x := v.exchanges[name]; x != nil {
			return src, x, nil
		}
		return src, nil, v.notFoundExchange(name)
	}
	if q := v.queues[name]; q != nil {
		return src, q, nil
	}
	return src, nil, v.notFoundQueue(name)
}

func (v *VHost) applyBind(rec meta.Record, fx meta.Effects) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if rec.Str("s") == "" {
		return amqp.ChannelErr(amqp.AccessRefused, "operation not permitted on the default exchange")
	}
	src, dest, err := v.bindingEndsLocked(rec)
	if err != nil {
		if fx.Replaying() {
			if _, broken := v.broken[rec.Str("d")]; broken && !rec.Bool("de") && src != nil {
				fx.Keep() // its queue is out of service: keep the record for when it is repaired
			}
			return nil // an end is gone: the record is dropped
		}
		return err
	}
	if q, ok := dest.(*queue.Queue); ok {
		if err := v.checkExclusiveLocked(q, rec.Owner); err != nil {
			return err
		}
	}
	args := rec.Table("a")
	if err := checkBindArgs(src, args); err != nil {
		return err
	}
	if src.Bind(exchange.Binding{Dest: dest, Key: rec.Str("rk"), Args: args}) {
		fx.Keep()
	}
	return nil
}

func (v *VHost) applyUnbind(rec meta.Record, fx meta.Effects) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	src, dest, err := v.bindingEndsLocked(rec)
	if err != nil {
		return nil // unbinding what does not exist succeeds, as in RabbitMQ
	}
	if b, ok := src.Unbind(exchange.Binding{Dest: dest, Key: rec.Str("rk"), Args: rec.Table("a")}); ok {
		fx.Drop(v.bindingKey(src, b))
		v.maybeAutoDeleteLocked(src, fx)
	}
	return nil
}

func (v *VHost) applyPolicy(rec meta.Record, fx meta.Effects) error {
	p := Policy{Name: rec.Name, Pattern: rec.Str("p"), ApplyTo: rec.Str("at"), Priority: int(rec.Int("pr", 0)), Definition: rec.Table("d")}
	if err := ValidatePolicy(&p); err != nil {
		return err
	}
	v.mu.Lock()
	if old := v.policies[p.Name]; old != nil && old.same(&p) {
		v.mu.Unlock()
		return nil
	}
	v.policies[p.Name] = &p
	fx.Keep()
	if fx.Replaying() {
		v.mu.Unlock() // ApplyPolicies runs once every definition is back
		return nil
	}
	apply := v.reapplyPoliciesLocked()
	v.mu.Unlock()
	apply()
	return nil
}

func (v *VHost) applyDeletePolicy(rec meta.Record, fx meta.Effects) bool {
	v.mu.Lock()
	if _, ok := v.policies[rec.Name]; !ok {
		v.mu.Unlock()
		return false
	}
	delete(v.policies, rec.Name)
	fx.Drop(meta.PolicyKey(v.Name, rec.Name))
	apply := v.reapplyPoliciesLocked()
	v.mu.Unlock()
	apply()
	return true
}

// Drop removes everything the vhost holds, as deleting it does: queues with their messages
// and logs, exchanges, bindings and policies, dropping their records. The vhost's part of
// applying a vhost's deletion.
func (v *VHost) Drop(fx meta.Effects) {
	for _, q := range v.Queues() {
		q.Delete(false, false)
		v.dropRef(q)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, q := range v.queues {
		v.removeQueueLocked(q, fx)
	}
	for name := range v.broken {
		fx.Drop(meta.QueueKey(v.Name, name))
		if v.store != nil {
			v.store.RemoveQueueLog(v.Name, name)
		}
		delete(v.broken, name)
	}
	for _, x := range v.exchanges {
		if x.Name != "" && !strings.HasPrefix(x.Name, "amq.") {
			v.deleteExchangeLocked(x, fx)
		}
	}
	for name := range v.policies {
		fx.Drop(meta.PolicyKey(v.Name, name))
		delete(v.policies, name)
	}
}

// queueHome is the node a queue record puts the queue on: the node its declare chose (the
// queue's locator, field "hn"), else the node that declared it ("" on a single node).
func queueHome(rec meta.Record) string {
	if h := rec.Str("hn"); h != "" {
		return h
	}
	return rec.Node
}

// Home returns the cluster node a queue lives on ("" on a single node).
func (v *VHost) Home(queue string) string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.home[queue]
}

// DropNode removes what lived only in the memory of cluster node `node`, which has restarted:
// its exclusive and non-durable queues (with their bindings), as RabbitMQ loses a node's
// transient queues when the node goes down.
func (v *VHost) DropNode(node string, fx meta.Effects) {
	v.mu.RLock()
	var gone []*queue.Queue
	for name, h := range v.home {
		if q := v.queues[name]; h == node && q != nil && !isDurable(q) {
			gone = append(gone, q)
		}
	}
	v.mu.RUnlock()
	for _, q := range gone {
		v.applyDeleteQueue(meta.Record{Kind: meta.KindQueue, Delete: true, Name: q.Name, Object: q}, fx)
	}
}
