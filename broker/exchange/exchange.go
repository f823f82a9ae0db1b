// Package exchange holds exchanges and their bindings and routes messages to destinations.
// Routing is pure: a routing key and headers in, destinations out. One file per type.
//
//	x, _ := exchange.New("logs", "topic", exchange.Options{Durable: true})
//	x.Bind(exchange.Binding{Dest: q, Key: "*.error"})
//	dests := x.Route("app.error", nil, nil)
package exchange

import (
	"sync"
	"sync/atomic"

	"github.com/warrenmq/warren/amqp"
)

// Types of exchange.
const (
	Direct  = "direct"
	Fanout  = "fanout"
	Topic   = "topic"
	Headers = "headers"
)

// Destination is what a binding routes to: a queue or another exchange. Implemented by
// *queue.Queue and *Exchange; compared by identity.
type Destination interface {
	DestName() string
	IsExchange() bool
}

// Binding is one binding from an exchange to a destination.
type Binding struct {
	Dest Destination
	Key  string
	Args amqp.Table
}

// Options are an exchange's declared properties.
type Options struct {
	Durable    bool
	AutoDelete bool
	Internal   bool
	Args       amqp.Table
}

// router is one exchange type's binding index.
type router interface {
	add(b Binding) bool    // false if the same binding exists
	remove(b Binding) bool // false if absent
	has(b Binding) bool
	route(key string, headers func() amqp.Table, out []Destination) []Destination
}

// Exchange is a named exchange. Its bindings are guarded by mu; routing takes the read lock.
// A long topic match lets binding changes in part-way (yieldRead), so that neither they nor
// the routes queued behind them (RWMutex blocks new readers while a writer waits) wait for it.
type Exchange struct {
	Name string
	Type string
	Options

	writers  atomic.Int32 // goroutines waiting for or holding mu's write lock
	mu       sync.RWMutex
	r        router
	bindings []Binding // all bindings, in order of creation, for listing and unused checks

	// Messages published into the exchange, and deliveries out of it into queues (one per
	// queue reached), as management's message_stats publish_in / publish_out.
	PublishIn, PublishOut atomic.Uint64
}

// ValidType reports whether t is a supported exchange type.
func ValidType(t string) bool {
	switch t {
	case Direct, Fanout, Topic, Headers:
		return true
	}
	return false
}

// New creates an exchange of a supported type.
func New(name, typ string, o Options) (*Exchange, error) {
	x := &Exchange{Name: name, Type: typ, Options: o}
	switch typ {
	case Direct:
		x.r = newDirect()
	case Fanout:
		x.r = &fanout{}
	case Topic:
		t := newTopic()
		t.yield = x.yieldRead
		x.r = t
	case Headers:
		x.r = &headersRouter{}
	default:
		return nil, amqp.ConnErr(amqp.CommandInvalid, "unknown exchange type '%s'", typ)
	}
	return x, nil
}

// lock takes the write lock, announcing it to routes that yield.
func (x *Exchange) lock() {
	x.writers.Add(1)
	x.mu.Lock()
	x.writers.Add(-1)
}

// yieldRead is called with the read lock held, part-way through a long route: when a writer
// waits, it releases the read lock and takes it again after the writer.
func (x *Exchange) yieldRead() {
	if x.writers.Load() > 0 {
		x.mu.RUnlock()
		x.mu.RLock()
	}
}

// DestName returns the exchange name.
func (x *Exchange) DestName() string { return x.Name }

// IsExchange returns true.
func (x *Exchange) IsExchange() bool { return true }

// Bind adds a binding; it returns false if an identical one exists (binding is idempotent).
func (x *Exchange) Bind(b Binding) bool {
	x.lock()
	defer x.mu.Unlock()
	if !x.r.add(b) {
		return false
	}
	x.bindings = append(x.bindings, b)
	return true
}

// HasBinding reports whether a binding equal to b exists.
func (x *Exchange) HasBinding(b Binding) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.r.has(b)
}

// Unbind removes a binding and returns it as it was stored (its arguments may differ from
// b's in integer widths); false if it did not exist.
func (x *Exchange) Unbind(b Binding) (Binding, bool) {
	x.lock()
	defer x.mu.Unlock()
	if !x.r.remove(b) {
		return Binding{}, false
	}
	for i, e := range x.bindings {
		if sameBinding(e, b) {
			x.bindings = append(x.bindings[:i], x.bindings[i+1:]...)
			return e, true
		}
	}
	return b, true
}

// UnbindDest removes every binding to dest and returns them.
func (x *Exchange) UnbindDest(dest Destination) []Binding {
	x.lock()
	defer x.mu.Unlock()
	var removed []Binding
	kept := x.bindings[:0]
	for _, b := range x.bindings {
		if b.Dest == dest {
			x.r.remove(b)
			removed = append(removed, b)
			continue
		}
		kept = append(kept, b)
	}
	clear(x.bindings[len(kept):])
	x.bindings = kept
	return removed
}

// Bindings returns a copy of the exchange's bindings.
func (x *Exchange) Bindings() []Binding {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return append([]Binding(nil), x.bindings...)
}

// BindingCount returns the number of bindings from this exchange.
func (x *Exchange) BindingCount() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.bindings)
}

// Route appends to out the destinations bound for key (and headers, for headers exchanges;
// called only when needed) and returns it. Duplicates are possible across bindings; callers
// dedupe destinations.
func (x *Exchange) Route(key string, headers func() amqp.Table, out []Destination) []Destination {
	x.mu.RLock()
	out = x.r.route(key, headers, out)
	x.mu.RUnlock()
	return out
}

func hasBinding(list []Binding, b Binding) bool {
	for _, e := range list {
		if sameBinding(e, b) {
			return true
		}
	}
	return false
}

func sameBinding(a, b Binding) bool {
	return a.Dest == b.Dest && a.Key == b.Key && tablesEqual(a.Args, b.Args)
}

// tablesEqual compares binding arguments as RabbitMQ does (same keys, equal values).
func tablesEqual(a, b amqp.Table) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !valuesEqual(va, vb) {
			return false
		}
	}
	return true
}
