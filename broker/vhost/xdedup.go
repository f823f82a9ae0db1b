package vhost

import (
	"sync"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
)

// Exchange-level deduplication (beyond RabbitMQ): an exchange declared with
// x-message-deduplication: true (window x-cache-size and/or x-cache-ttl, key the message-id
// property or the header named by x-deduplication-header) drops a message whose key it let
// through within its window, before routing: the publisher gets its confirm, no basic.return,
// and no queue sees the copy. Only the exchange a message is published to deduplicates.
//
// The window lives here, in memory; its durability comes from the queues the messages reached
// (queue/xdedup.go explains why and how). At startup the keys come back from those queues'
// logs: from the records of messages still queued, and from the key records that queues wrote
// when such messages left them.

// xWindow is one exchange's deduplication window.
type xWindow struct {
	size, ttl int64 // x-cache-size (0: no bound), x-cache-ttl in ms (0: no bound)
	header    string
	keys      map[string]xKey
	order     []string // insertion order, for eviction
	head      int
	drops     uint64
}

type xKey struct {
	seen int64 // unix ms
	refs []xRef
}

// xRef is a key record in a queue's log that holds a key of the window.
type xRef struct {
	q   *queue.Queue
	off uint64
}

// xdedup holds the vhost's exchange windows. Its lock is innermost: taken under the vhost's
// and a queue's lock, it never calls into queues while held.
type xdedup struct {
	mu      sync.Mutex
	windows map[string]*xWindow // by exchange name
	// Offered at startup, resolved by FinishRestore once every definition is back.
	pendingKeys []pendingKey
	pendingMsgs []*message.Message
}

type pendingKey struct {
	exchange, key string
	seen          int64
	ref           xRef
}

// dedupArgs parses and checks an exchange's deduplication arguments; nil when it does not
// deduplicate.
func dedupArgs(args amqp.Table, exchangeName, vhost string) (*xWindow, error) {
	on, ok := args["x-message-deduplication"]
	if !ok {
		return nil, nil
	}
	bad := func(arg string) error {
		return amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg '%s' for exchange '%s' in vhost '%s': %s", arg, exchangeName, vhost, amqp.TypeName(args[arg]))
	}
	b, ok := on.(bool)
	if !ok {
		return nil, bad("x-message-deduplication")
	}
	w := &xWindow{keys: make(map[string]xKey)}
	for _, a := range []struct {
		name string
		dst  *int64
	}{{"x-cache-size", &w.size}, {"x-cache-ttl", &w.ttl}} {
		if v, ok := args[a.name]; ok {
			n, ok := amqp.IntValue(v)
			if !ok || n < 0 {
				return nil, bad(a.name)
			}
			*a.dst = n
		}
	}
	if v, ok := args["x-deduplication-header"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, bad("x-deduplication-header")
		}
		w.header = s
	}
	if !b {
		return nil, nil
	}
	return w, nil
}

// evict drops the keys beyond the window and returns the key records that held them.
func (w *xWindow) evict(now int64, out []xRef) []xRef {
	for w.head < len(w.order) {
		k := w.order[w.head]
		e, ok := w.keys[k]
		if ok && !(w.size > 0 && int64(len(w.order)-w.head) > w.size) && !(w.ttl > 0 && now-e.seen >= w.ttl) {
			break
		}
		w.order[w.head] = ""
		w.head++
		if ok {
			delete(w.keys, k)
			out = append(out, e.refs...)
		}
	}
	if w.head > 1024 && w.head*2 > len(w.order) {
		w.order = append([]string(nil), w.order[w.head:]...)
		w.head = 0
	}
	return out
}

func (w *xWindow) add(key string, seen int64) {
	w.keys[key] = xKey{seen: seen}
	w.order = append(w.order, key)
}

// setExchangeDedup starts or ends the window of exchange name (with v.mu held).
func (v *VHost) setExchangeDedup(name string, w *xWindow) {
	d := &v.xd
	d.mu.Lock()
	var refs []xRef // the old window's key records go
	if old := d.windows[name]; old != nil {
		for _, e := range old.keys {
			refs = append(refs, e.refs...)
		}
	}
	if w == nil {
		delete(d.windows, name)
	} else {
		if d.windows == nil {
			d.windows = make(map[string]*xWindow)
		}
		d.windows[name] = w
	}
	v.xdOn.Store(len(d.windows) > 0)
	d.mu.Unlock()
	retireRefs(refs)
}

func retireRefs(refs []xRef) {
	for _, r := range refs {
		r.q.RetireRecords(r.off)
	}
}

// duplicate checks a message published to exchange name against its window (letting the key
// in when it is new); true means drop it. The caller holds v.mu (read): queues' locks may be
// taken, for retiring key records.
func (v *VHost) duplicate(name string, m *message.Message) bool {
	if !v.xdOn.Load() {
		return false
	}
	d := &v.xd
	d.mu.Lock()
	w := d.windows[name]
	if w == nil {
		d.mu.Unlock()
		return false
	}
	key := queue.DedupKey(w.header, m)
	if key == "" {
		d.mu.Unlock()
		return false
	}
	now := time.Now().UnixMilli()
	refs := w.evict(now, nil)
	_, dup := w.keys[key]
	if dup {
		w.drops++
	} else {
		w.add(key, now)
		refs = w.evict(now, refs) // the window holds at most x-cache-size keys
	}
	d.mu.Unlock()
	retireRefs(refs)
	return dup
}

// ExchangeDuplicates returns how many duplicates the named exchange dropped, and whether it
// deduplicates at all.
func (v *VHost) ExchangeDuplicates(name string) (uint64, bool) {
	d := &v.xd
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.windows[name]
	if w == nil {
		return 0, false
	}
	return w.drops, true
}

// xkeys is the vhost as its queues see it (queue.ExchangeKeys).
type xkeys struct{ v *VHost }

func (k xkeys) Held(m *message.Message) (string, int64, bool) {
	v := k.v
	if !v.xdOn.Load() {
		return "", 0, false
	}
	d := &v.xd
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.windows[m.Exchange]
	if w == nil {
		return "", 0, false
	}
	key := queue.DedupKey(w.header, m)
	e, ok := w.keys[key]
	if key == "" || !ok {
		return "", 0, false
	}
	return key, e.seen, true
}

func (k xkeys) Kept(exchange, key string, q *queue.Queue, off uint64) {
	d := &k.v.xd
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.windows[exchange]; w != nil {
		if e, ok := w.keys[key]; ok {
			e.refs = append(e.refs, xRef{q, off})
			w.keys[key] = e
			return
		}
	}
	// The key left the window between Held and now (a publish evicted it): the record is not
	// needed. Retiring takes the queue's lock, which our caller holds: do it on the side.
	go q.RetireRecords(off)
}

func (k xkeys) RestoredKey(exchange, key string, seen int64, q *queue.Queue, off uint64) {
	d := &k.v.xd
	d.mu.Lock()
	d.pendingKeys = append(d.pendingKeys, pendingKey{exchange: exchange, key: key, seen: seen, ref: xRef{q, off}})
	d.mu.Unlock()
}

func (k xkeys) RestoredMessage(m *message.Message) {
	d := &k.v.xd
	d.mu.Lock()
	d.pendingMsgs = append(d.pendingMsgs, m)
	d.mu.Unlock()
}

// FinishRestore runs once every definition is back at startup: it puts the keys found in the
// queues' logs into their exchanges' windows (key records no window wants, because the
// exchange is gone, no longer deduplicates or the key expired, are retired), and dead-letters
// what expired meanwhile (BeginRestore).
func (v *VHost) FinishRestore() {
	v.startParts() // replicated queues: leaders restore their queues from their logs here
	defer v.releaseParked()
	d := &v.xd
	now := time.Now().UnixMilli()
	var drop []xRef
	d.mu.Lock()
	for _, p := range d.pendingKeys {
		w := d.windows[p.exchange]
		if w == nil {
			drop = append(drop, p.ref)
			continue
		}
		e, ok := w.keys[p.key]
		if !ok {
			w.add(p.key, p.seen)
			e = w.keys[p.key]
		}
		e.refs = append(e.refs, p.ref)
		w.keys[p.key] = e
	}
	for _, m := range d.pendingMsgs {
		if w := d.windows[m.Exchange]; w != nil {
			if key := queue.DedupKey(w.header, m); key != "" {
				if _, ok := w.keys[key]; !ok {
					w.add(key, now)
				}
			}
		}
	}
	d.pendingKeys, d.pendingMsgs = nil, nil
	for _, w := range d.windows {
		drop = w.evict(now, drop)
	}
	d.mu.Unlock()
	retireRefs(drop)
}
