package vhost

import (
	"fmt"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/exchange"
	"github.com/warrenmq/warren/broker/queue"
)

// DefLog stores definition records: each durable exchange, queue and binding is one record,
// live until the entity is deleted, when the record is retired. Replaying the live records in
// order recreates every durable definition (declarations come before the bindings that use
// them). *wal.Log satisfies it (through the adapter in cmd/).
type DefLog interface {
	Append(payload []byte, done func(offset uint64, err error)) uint64
	Retire(offsets ...uint64)
}

// Storage is what a vhost needs to persist: the definitions log and per-queue message logs.
// Nil means nothing is persisted.
type Storage interface {
	Defs() DefLog
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

// Definition record kinds (field "k" of the record table).
const (
	recQueue    = "queue"
	recExchange = "exchange"
	recBinding  = "binding"
	recPolicy   = "policy"
)

// bindKey identifies a binding for its definition record.
type bindKey struct {
	src  *exchange.Exchange
	dest exchange.Destination
	key  string
	args string // encoded arguments
}

func makeBindKey(src *exchange.Exchange, dest exchange.Destination, key string, args amqp.Table) bindKey {
	return bindKey{src: src, dest: dest, key: key, args: string(amqp.AppendTable(nil, args))}
}

// persist appends a definition record; the returned wait blocks until it is durable. Call with
// v.mu held (records keep the order of changes); call wait after unlocking.
func (v *VHost) persist(rec amqp.Table) (uint64, func() error) {
	if v.store == nil {
		return 0, func() error { return nil }
	}
	rec["v"] = v.Name
	done := make(chan error, 1)
	off := v.store.Defs().Append(amqp.AppendTable(nil, rec), func(_ uint64, err error) { done <- err })
	return off, func() error {
		if err := <-done; err != nil {
			return amqp.ConnErr(amqp.InternalError, "could not persist definition: %v", err)
		}
		return nil
	}
}

func (v *VHost) retireDef(offsets ...uint64) {
	if v.store == nil {
		return
	}
	var live []uint64
	for _, o := range offsets {
		if o != 0 {
			live = append(live, o)
		}
	}
	if len(live) > 0 {
		v.store.Defs().Retire(live...)
	}
}

func noWait() error { return nil }

// persistQueueLocked records a new durable queue and attaches its log.
func (v *VHost) persistQueueLocked(q *queue.Queue) (func() error, error) {
	if v.store == nil || !q.Durable || q.Exclusive {
		return noWait, nil
	}
	l, err := v.store.OpenQueueLog(v.Name, q.Name, nil)
	if err != nil {
		return nil, amqp.ChannelErr(amqp.InternalError, "cannot open the log of queue '%s' in vhost '%s': %v", q.Name, v.Name, err)
	}
	q.SetLog(l)
	off, wait := v.persist(amqp.Table{"k": recQueue, "n": q.Name, "ad": q.AutoDelete, "a": argsOrEmpty(q.Args)})
	v.defOffsets[q] = off
	return wait, nil
}

// persistExchangeLocked records a new durable exchange.
func (v *VHost) persistExchangeLocked(x *exchange.Exchange) func() error {
	if v.store == nil || !x.Durable {
		return noWait
	}
	off, wait := v.persist(amqp.Table{"k": recExchange, "n": x.Name, "t": x.Type, "ad": x.AutoDelete, "i": x.Internal, "a": argsOrEmpty(x.Args)})
	v.defOffsets[x] = off
	return wait
}

func isDurable(d exchange.Destination) bool {
	switch d := d.(type) {
	case *queue.Queue:
		return d.Durable && !d.Exclusive
	case *exchange.Exchange:
		return d.Durable
	}
	return false
}

// persistBindingLocked records a new binding between durable ends.
func (v *VHost) persistBindingLocked(src *exchange.Exchange, dest exchange.Destination, key string, args amqp.Table) func() error {
	if v.store == nil || !src.Durable || !isDurable(dest) {
		return noWait
	}
	off, wait := v.persist(amqp.Table{"k": recBinding, "s": src.Name, "d": dest.DestName(), "de": dest.IsExchange(), "rk": key, "a": argsOrEmpty(args)})
	v.bindOffsets[makeBindKey(src, dest, key, args)] = off
	return wait
}

// forgetBindingLocked retires one binding's record.
func (v *VHost) forgetBindingLocked(src *exchange.Exchange, dest exchange.Destination, key string, args amqp.Table) {
	k := makeBindKey(src, dest, key, args)
	if off, ok := v.bindOffsets[k]; ok {
		delete(v.bindOffsets, k)
		v.retireDef(off)
	}
}

// forgetEntityLocked retires the record of a deleted queue or exchange and of every binding
// from or to it.
func (v *VHost) forgetEntityLocked(d exchange.Destination) {
	if off, ok := v.defOffsets[d]; ok {
		delete(v.defOffsets, d)
		v.retireDef(off)
	}
	for k, off := range v.bindOffsets {
		if k.dest == d || exchange.Destination(k.src) == d {
			delete(v.bindOffsets, k)
			v.retireDef(off)
		}
	}
}

func argsOrEmpty(a amqp.Table) amqp.Table {
	if a == nil {
		return amqp.Table{}
	}
	return a
}

// Restore applies one definition record from the log at startup (offset is its log offset,
// kept so that deleting the entity retires the record). Queues get their message logs opened
// and replayed through restoreMsg.
func (v *VHost) Restore(rec amqp.Table, offset uint64, restoreMsg func(q *queue.Queue, offset uint64, payload []byte, delivered bool) error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	str := func(k string) string { s, _ := rec[k].(string); return s }
	flag := func(k string) bool { b, _ := rec[k].(bool); return b }
	args, _ := rec["a"].(amqp.Table)
	if len(args) == 0 {
		args = nil
	}
	switch str("k") {
	case recExchange:
		x, err := exchange.New(str("n"), str("t"), exchange.Options{Durable: true, AutoDelete: flag("ad"), Internal: flag("i"), Args: args})
		if err != nil {
			return err
		}
		v.exchanges[x.Name] = x
		v.defOffsets[x] = offset
		if w, err := dedupArgs(args, x.Name, v.Name); err == nil && w != nil {
			v.setExchangeDedup(x.Name, w)
		}
	case recQueue:
		q := queue.New(str("n"), queue.Options{Durable: true, AutoDelete: flag("ad"), Args: args, VHost: v.Name})
		v.setupQueue(q)
		l, err := v.store.OpenQueueLog(v.Name, q.Name, func(off uint64, payload []byte, delivered bool) error {
			return restoreMsg(q, off, payload, delivered)
		})
		if err != nil {
			// Keep the definition (and its bindings' records): an operator may repair the log.
			v.broken[q.Name] = err
			v.brokenOffsets[q.Name] = offset
			return fmt.Errorf("vhost: queue '%s' in vhost '%s' is out of service: %w", q.Name, v.Name, err)
		}
		q.SetLog(l)
		v.queues[q.Name] = q
		v.defOffsets[q] = offset
	case recPolicy:
		return v.restorePolicyLocked(rec, offset)
	case recBinding:
		src := v.exchanges[str("s")]
		var dest exchange.Destination
		if flag("de") {
			if x := v.exchanges[str("d")]; x != nil {
				dest = x
			}
		} else if q := v.queues[str("d")]; q != nil {
			dest = q
		}
		if src == nil || dest == nil {
			if _, broken := v.broken[str("d")]; broken && !flag("de") {
				return nil // its queue is out of service: keep the record for when it is repaired
			}
			v.retireDef(offset) // an end is gone
			return nil
		}
		src.Bind(exchange.Binding{Dest: dest, Key: str("rk"), Args: args})
		v.bindOffsets[makeBindKey(src, dest, str("rk"), args)] = offset
	default:
		return fmt.Errorf("vhost: unknown definition record kind %q", str("k"))
	}
	return nil
}

// spillError handles a queue's spill failure (queue.SpillError): logged; a queue that lost
// persistent messages goes out of service, as a queue with a damaged log does at start: its log
// still holds them (the spill is a cache), and a restart recovers them, while the queue in
// memory no longer matches its log. Called without the queue's lock, never from Restore (only
// reading back loses messages, and Restore does not read back).
func (v *VHost) spillError(q *queue.Queue, err *queue.SpillError) {
	ev := v.Log.Error()
	if err.Lost == 0 {
		ev = v.Log.Warn() // nothing lost: the queue keeps its messages in memory
	}
	ev.Str("queue", q.Name).Int("lost", err.Lost).Bool("persistent", err.Persistent).Err(err.Err).Msg("queue spill failed")
	if err.Persistent {
		v.outOfService(q, err)
	}
}

// outOfService takes a durable queue out of service without touching its log or its
// definition records: lookups answer 404 with the reason until a restart recovers it from its
// log (or queue.delete drops it), as for a queue whose log is damaged at start. Its consumers
// are cancelled and its bindings leave the exchanges in memory only.
func (v *VHost) outOfService(q *queue.Queue, cause error) {
	v.mu.Lock()
	off, persisted := v.defOffsets[q]
	if v.queues[q.Name] != q || !persisted {
		v.mu.Unlock()
		return
	}
	delete(v.queues, q.Name)
	delete(v.defOffsets, q)
	v.broken[q.Name] = cause
	v.brokenOffsets[q.Name] = off
	delete(v.queuePolicy, q)
	for k := range v.bindOffsets {
		if k.dest == exchange.Destination(q) {
			delete(v.bindOffsets, k) // the record stays: the binding comes back with the queue
		}
	}
	for _, x := range v.exchanges {
		x.UnbindDest(q)
	}
	v.mu.Unlock()
	q.OutOfService()
	v.Log.Error().Str("queue", q.Name).Err(cause).Msg("queue out of service until restart")
	if v.store != nil {
		v.store.RemoveSpill(v.Name, q.Name)
	}
}
