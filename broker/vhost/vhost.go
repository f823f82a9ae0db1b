// Package vhost is the registry of one virtual host's exchanges, queues and bindings, with
// RabbitMQ's rules for declaring, deleting, binding and routing.
//
// It hands out queues as queue.Ref values (DeclareQueue, LookupQueue, routing), and it holds
// the one publish path (Publish, publish.go) that AMQP publishes, transactions, dead letters
// and the HTTP API share.
//
//	v := vhost.New("/", nil)
//	q, created, err := v.DeclareQueue(vhost.QueueDecl{Name: "jobs", Durable: true})
//	err = v.BindQueue("jobs", "amq.direct", "jobs", nil, owner)
//	var r vhost.Router
//	out, err := v.Publish(&r, msg, nil) // routed by msg.Exchange and msg.RoutingKey
package vhost

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/exchange"

	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/queue"
)

// VHost is one virtual host. mu guards the maps; exchanges and queues have their own locks.
// Lock order: vh.mu → exchange.mu → queue.mu.
//
// Every change of its exchanges, queues, bindings and policies is a meta.Record proposed to
// Meta, which persists it and applies it through Apply (apply.go): the public methods check
// what they can answer at once (passive declares, equivalence, permissions of exclusive
// queues) and propose the rest.
type VHost struct {
	Name string

	store Storage // message logs and spills; nil: nothing persisted
	// Budget is the node's memory budget for queued messages; set right after New.
	Budget *queue.Budget
	// Replicas is the cluster's queue-log replication (nil on a single node); set right
	// after New.
	Replicas ReplicaHost
	// Meta is the node's metadata store; set right after New. Nil applies changes at once
	// (a vhost used on its own).
	Meta meta.Store
	// Counters, when set (right after New), count queue churn (counters.go).
	Counters *QueueCounters
	// Log receives what the vhost handles on its own (a queue's failed spill); set right
	// after New (zero: silent).
	Log zerolog.Logger
	// Remote, in a cluster, reaches the queues homed on other nodes; set right after New. Nil
	// on a single node: every queue is local.
	Remote Remote
	// DefaultLocator places a new classic queue that neither its argument nor a policy
	// places (placeQueue); set right after New. Empty: client-local.
	DefaultLocator string

	mu          sync.RWMutex
	exchanges   map[string]*exchange.Exchange
	queues      map[string]*queue.Queue
	policies    map[string]*Policy
	queuePolicy map[*queue.Queue]string
	broken      map[string]error      // durable queues out of service (damaged log)
	home        map[string]string     // cluster node each queue was declared on (cluster only)
	placements  map[string]*Placement // replicated queues (replicated.go)
	maxQueues   int                   // RabbitMQ's vhost limit max-queues; negative: no limit

	refMu sync.RWMutex               // guards refs only (a leaf lock: nothing is called under it)
	refs  map[*queue.Queue]queue.Ref // queues this node reaches through Remote (refFor)

	xd   xdedup      // exchanges' deduplication windows (xdedup.go)
	xdOn atomic.Bool // some exchange deduplicates

	restoring atomic.Bool // BeginRestore..FinishRestore: dead letters wait (deadletter.go)
	parkMu    sync.Mutex
	parked    []parkedDead
}

// SetMaxQueues sets the vhost's max-queues limit (negative: none). Existing queues stay; new
// declares fail with 406 PRECONDITION_FAILED while the vhost holds n or more queues.
func (v *VHost) SetMaxQueues(n int) {
	v.mu.Lock()
	v.maxQueues = n
	v.mu.Unlock()
}

// ServerQueueName returns a fresh server-generated queue name ("amq.gen-..."), for callers
// that must check permissions on the name before declaring it (QueueDecl.ServerNamed).
func ServerQueueName() string { return "amq.gen-" + randomID() }

// New creates a virtual host with the predeclared exchanges (amq.direct, amq.fanout,
// amq.topic, amq.headers, amq.match) and the default exchange.
func New(name string, store Storage) *VHost {
	v := &VHost{Name: name, store: store, exchanges: make(map[string]*exchange.Exchange), queues: make(map[string]*queue.Queue),
		broken: make(map[string]error), home: make(map[string]string), placements: make(map[string]*Placement), maxQueues: -1, policies: make(map[string]*Policy), queuePolicy: make(map[*queue.Queue]string)}
	for _, p := range []struct{ name, typ string }{
		{"", exchange.Direct}, {"amq.direct", exchange.Direct}, {"amq.fanout", exchange.Fanout},
		{"amq.topic", exchange.Topic}, {"amq.headers", exchange.Headers}, {"amq.match", exchange.Headers},
	} {
		x, _ := exchange.New(p.name, p.typ, exchange.Options{Durable: true})
		v.exchanges[p.name] = x
	}
	return v
}

func (v *VHost) notFoundExchange(name string) error {
	return amqp.ChannelErr(amqp.NotFound, "no exchange '%s' in vhost '%s'", name, v.Name)
}

func (v *VHost) notFoundQueue(name string) error {
	return amqp.ChannelErr(amqp.NotFound, "no queue '%s' in vhost '%s'", name, v.Name)
}

// ExchangeDecl is exchange.declare's arguments.
type ExchangeDecl struct {
	Name, Type                             string
	Passive, Durable, AutoDelete, Internal bool
	Args                                   amqp.Table
}

// DeclareExchange declares (or checks, when passive) an exchange.
func (v *VHost) DeclareExchange(d ExchangeDecl) (*exchange.Exchange, error) {
	if x, done, err := v.checkExchangeDecl(d); done {
		return x, err
	}
	res, err := v.propose(exchangeRecord(d))
	if err != nil {
		return nil, err
	}
	return res.(*exchange.Exchange), nil
}

// checkExchangeDecl answers what a declare can answer without a change: done is false when
// the exchange must be created.
func (v *VHost) checkExchangeDecl(d ExchangeDecl) (x *exchange.Exchange, done bool, err error) {
	if d.Passive && d.Name != "" && v.Exchange(d.Name) == nil {
		v.caughtUp()
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	x = v.exchanges[d.Name]
	if d.Name == "" {
		return nil, true, amqp.ChannelErr(amqp.AccessRefused, "operation not permitted on the default exchange")
	}
	if d.Passive {
		if x == nil {
			return nil, true, v.notFoundExchange(d.Name)
		}
		return x, true, nil
	}
	if strings.HasPrefix(d.Name, "amq.") && x == nil {
		return nil, true, amqp.ChannelErr(amqp.AccessRefused, "exchange name '%s' contains reserved prefix 'amq.*'", d.Name)
	}
	if !exchange.ValidType(d.Type) {
		return nil, true, amqp.ConnErr(amqp.CommandInvalid, "unknown exchange type '%s'", d.Type)
	}
	if x != nil {
		if err := v.equivalentExchange(x, d); err != nil {
			return nil, true, err
		}
		return x, true, nil
	}
	if ae, ok := d.Args["alternate-exchange"]; ok {
		if _, ok := ae.(string); !ok {
			return nil, true, amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg 'alternate-exchange' for exchange '%s' in vhost '%s'", d.Name, v.Name)
		}
	}
	if _, err := dedupArgs(d.Args, d.Name, v.Name); err != nil {
		return nil, true, err
	}
	return nil, false, nil
}

func (v *VHost) equivalentExchange(x *exchange.Exchange, d ExchangeDecl) error {
	mismatch := func(arg string, got, cur any) error {
		return amqp.ChannelErr(amqp.PreconditionFailed, "inequivalent arg '%s' for exchange '%s' in vhost '%s': received '%v' but current is '%v'", arg, d.Name, v.Name, got, cur)
	}
	switch {
	case x.Type != d.Type:
		return mismatch("type", d.Type, x.Type)
	case x.Durable != d.Durable:
		return mismatch("durable", d.Durable, x.Durable)
	case x.AutoDelete != d.AutoDelete:
		return mismatch("auto_delete", d.AutoDelete, x.AutoDelete)
	case x.Internal != d.Internal:
		return mismatch("internal", d.Internal, x.Internal)
	}
	if a, b := x.Args["alternate-exchange"], d.Args["alternate-exchange"]; a != b {
		got, cur := argText(b, b != nil), argText(a, a != nil) // RabbitMQ's wording with one side absent
		if a != nil && b != nil {
			got, cur = fmt.Sprintf("'%v'", b), fmt.Sprintf("'%v'", a)
		}
		return amqp.ChannelErr(amqp.PreconditionFailed, "inequivalent arg 'alternate-exchange' for exchange '%s' in vhost '%s': received %s but current is %s", d.Name, v.Name, got, cur)
	}
	// Deduplication (Warren's extension) cannot change on redeclare either.
	for _, k := range []string{"x-message-deduplication", "x-cache-size", "x-cache-ttl", "x-deduplication-header"} {
		a, aok := x.Args[k]
		b, bok := d.Args[k]
		if ai, ok := amqp.IntValue(a); ok {
			a = ai
		}
		if bi, ok := amqp.IntValue(b); ok {
			b = bi
		}
		if aok != bok || a != b {
			return amqp.ChannelErr(amqp.PreconditionFailed, "inequivalent arg '%s' for exchange '%s' in vhost '%s'", k, d.Name, v.Name)
		}
	}
	return nil
}

// DeleteExchange deletes an exchange and every binding to and from it. Deleting a missing
// exchange succeeds, as in RabbitMQ.
func (v *VHost) DeleteExchange(name string, ifUnused bool) error {
	if name == "" || strings.HasPrefix(name, "amq.") {
		if name == "" {
			return amqp.ChannelErr(amqp.AccessRefused, "operation not permitted on the default exchange")
		}
		return amqp.ChannelErr(amqp.AccessRefused, "deletion of system exchange '%s' in vhost '%s' not allowed", name, v.Name)
	}
	x := v.Exchange(name)
	if x == nil {
		return nil
	}
	if ifUnused && x.BindingCount() > 0 {
		return amqp.ChannelErr(amqp.PreconditionFailed, "exchange '%s' in vhost '%s' in use", name, v.Name)
	}
	_, err := v.propose(meta.Record{Kind: meta.KindExchange, Delete: true, Name: name, Transient: !x.Durable,
		Fields: amqp.Table{"iu": ifUnused}})
	return err
}

// Exchange returns the named exchange or nil.
func (v *VHost) Exchange(name string) *exchange.Exchange {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.exchanges[name]
}

// Exchanges returns all exchanges.
func (v *VHost) Exchanges() []*exchange.Exchange {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]*exchange.Exchange, 0, len(v.exchanges))
	for _, x := range v.exchanges {
		out = append(out, x)
	}
	return out
}

// QueueDecl is queue.declare's arguments. Owner identifies the declaring connection.
type QueueDecl struct {
	Name                                    string
	Passive, Durable, Exclusive, AutoDelete bool
	Args                                    amqp.Table
	Owner                                   any
	ServerNamed                             bool // Name came from ServerQueueName: skip the amq.* check
}

// DeclareQueue declares (or checks, when passive) a queue. An empty name gets a server name
// "amq.gen-...". created tells whether the queue is new.
func (v *VHost) DeclareQueue(d QueueDecl) (queue.Ref, bool, error) {
	q, created, err := v.declareQueue(d, false)
	if err != nil {
		return nil, false, err
	}
	return v.Ref(q), created, nil
}

// Ref returns the reference the registry hands out for q: what refFor decided when q's record
// was applied (a queue homed here, and every queue of a single node: q.Ref()). It takes no
// lock of the vhost's (callers may hold v.mu).
func (v *VHost) Ref(q *queue.Queue) queue.Ref {
	if v.Remote == nil {
		return q.Ref()
	}
	v.refMu.RLock()
	r := v.refs[q]
	v.refMu.RUnlock()
	if r == nil {
		return q.Ref()
	}
	return r
}

// Remote reaches the queues homed on other cluster nodes (broker/remote implements it).
type Remote interface {
	// Node is this node's name: the home of the queues declared here.
	Node() string
	// Ref returns the Ref through which this node reaches q, a queue of vhost v homed on node
	// home (another node). One Ref per queue: refFor asks once, when the record is applied.
	Ref(v *VHost, q *queue.Queue, home string) queue.Ref
	// Nodes returns the names of the cluster's live nodes, sorted (queue placement).
	Nodes() []string
	// Dropped tells a Ref that Ref returned that its queue is gone here (deleted, or its
	// vhost): its consumers are cancelled and what waits for the home fails. Called without
	// the vhost's locks.
	Dropped(r queue.Ref)
	// Retarget points r, the Ref of a replicated queue (one Ref returned), at the queue's new
	// leader, node home: its consumers follow. Called without the vhost's locks.
	Retarget(r queue.Ref, home string)
	// Handover ends r, the Ref of a replicated queue this node now leads: its consumers move
	// to to, the queue's own Ref here (queue.MoveOrCancel). Called without the vhost's locks.
	Handover(r queue.Ref, to queue.Ref)
}

// caughtUp waits until this node has applied every metadata change committed so far, when its
// metadata store is replicated (a cluster: another node may have declared what a lookup here
// just missed), and reports whether it did; false at once on a single node. Only the paths
// where a miss is an error call it (a 404 would be wrong), never routing to the default
// exchange, where a miss is a normal unroutable message.
func (v *VHost) caughtUp() bool {
	s, ok := v.Meta.(interface{ Sync() error })
	return ok && s.Sync() == nil
}

// CatchUp waits until this node has applied every metadata change committed so far (in a
// cluster: a barrier through the metadata log) and reports whether it did; false at once on a
// single node. For a node asked about a queue it does not know yet (the queue's home, asked by
// another node that applied the declare first).
func (v *VHost) CatchUp() bool { return v.caughtUp() }

// caughtUpFor catches up for a message that routed nowhere, and reports whether routing
// again may find more. Such messages may be frequent (events nobody binds to), so only a
// mandatory one waits for a barrier through the metadata log (caughtUp); any other waits
// only until this node applied the changes it holds (no message to other nodes): a change
// another node committed a few milliseconds ago may not be here yet. False at once on a
// single node.
func (v *VHost) caughtUpFor(mandatory bool) bool {
	if mandatory {
		return v.caughtUp()
	}
	s, ok := v.Meta.(interface{ CatchUp() bool })
	return ok && s.CatchUp()
}

// homedHere reports whether a queue homed on node home lives on this node (always on a single
// node, and for records without a node).
func (v *VHost) homedHere(home string) bool {
	return v.Remote == nil || home == "" || home == v.Remote.Node()
}

// refFor decides how this node reaches q, homed on node home (from its record): the one place
// of the local-or-remote decision. A queue homed here is reached through its own Ref (nil is
// returned: Ref then answers q.Ref()); one homed elsewhere through Remote, one Ref per queue,
// which Ref hands out from then on. Called under v.mu when the queue's record is applied.
func (v *VHost) refFor(q *queue.Queue, home string) queue.Ref {
	if v.homedHere(home) {
		return nil
	}
	r := v.Remote.Ref(v, q, home)
	v.refMu.Lock()
	if v.refs == nil {
		v.refs = make(map[*queue.Queue]queue.Ref)
	}
	v.refs[q] = r
	v.refMu.Unlock()
	return r
}

// dropRef tells the remote Ref of q, if q has one, that its queue is gone here (deleted, or
// its vhost). The Ref stays in refs until the queue is unregistered (removeQueueLocked), so
// that a route that still finds q reaches a Ref that drops what it is given. Called without
// v.mu, after q.Delete (a route that finds q after refs forgot it gets q's own Ref, deleted).
func (v *VHost) dropRef(q *queue.Queue) {
	if v.Remote == nil {
		return
	}
	v.refMu.RLock()
	r := v.refs[q]
	v.refMu.RUnlock()
	if r != nil {
		v.Remote.Dropped(r)
	}
}

// remoteRef returns q's remote Ref (nil: q is reached locally).
func (v *VHost) remoteRef(q *queue.Queue) queue.Ref {
	if v.Remote == nil {
		return nil
	}
	v.refMu.RLock()
	defer v.refMu.RUnlock()
	return v.refs[q]
}

// forgetRef removes q's remote Ref from refs (q is unregistered).
func (v *VHost) forgetRef(q *queue.Queue) {
	if v.Remote == nil {
		return
	}
	v.refMu.Lock()
	delete(v.refs, q)
	v.refMu.Unlock()
}

// declareQueue is DeclareQueue; synced: the node caught up with the metadata log already (a
// passive declare that missed looks again once).
func (v *VHost) declareQueue(d QueueDecl, synced bool) (q *queue.Queue, created bool, err error) {
	if !d.Passive && v.Counters != nil {
		v.Counters.Declared.Add(1)
	}
	serverNamed := d.ServerNamed || (d.Name == "" && !d.Passive)
	if d.Name == "" && !d.Passive {
		d.Name = "amq.gen-" + randomID()
	} else if strings.HasPrefix(d.Name, "amq.") && !d.Passive && !d.ServerNamed {
		// Checked before the name is looked up, as RabbitMQ does: redeclaring an existing
		// amq.gen-... queue by name is refused too (passive declares are fine).
		return nil, false, amqp.ChannelErr(amqp.AccessRefused, "queue name '%s' contains reserved prefix 'amq.*'", d.Name)
	}
	if !d.Passive {
		if err := queue.CheckTypeDeclare(d.Name, v.Name, serverNamed, d.Durable, d.Exclusive, d.AutoDelete, d.Args); err != nil {
			return nil, false, err // stream rules, ahead of the generic checks as in RabbitMQ
		}
		if err := ValidateQueueArgs(d.Args); err != nil {
			if ae, ok := err.(*amqp.Error); ok {
				where := fmt.Sprintf("queue '%s' in vhost '%s'", d.Name, v.Name)
				ae.Text = strings.Replace(ae.Text, "for queue:", "for "+where+":", 1)
				if t, ok := strings.CutSuffix(ae.Text, "in queue:"); ok {
					ae.Text = t + "in " + where
				}
			}
			return nil, false, err
		}
		if d.Args["x-queue-type"] == "quorum" {
			bad := func(prop string) error {
				return amqp.ChannelErr(amqp.PreconditionFailed, "invalid property '%s' for queue '%s' in vhost '%s'", prop, d.Name, v.Name)
			}
			if _, ok := d.Args["x-max-priority"]; ok {
				return nil, false, amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg 'x-max-priority' for queue '%s' in vhost '%s' of queue type rabbit_quorum_queue", d.Name, v.Name)
			}
			switch {
			case !d.Durable:
				return nil, false, bad("non-durable")
			case d.Exclusive:
				return nil, false, bad("exclusive-owner")
			case d.AutoDelete:
				return nil, false, bad("auto-delete")
			}
		}
	}
	v.mu.RLock()
	if err := v.brokenErrLocked(d.Name); err != nil {
		v.mu.RUnlock()
		return nil, false, err
	}
	q = v.queues[d.Name]
	if q != nil {
		defer v.mu.RUnlock()
		if err := v.checkExclusiveLocked(q, d.Owner); err != nil {
			return nil, false, err
		}
		if !d.Passive && q.Exclusive != d.Exclusive {
			return nil, false, v.lockedErr(q)
		}
		if d.Passive {
			return q, false, nil
		}
		if err := v.equivalentQueue(q, d); err != nil {
			return nil, false, err
		}
		return q, false, nil
	}
	if d.Passive {
		v.mu.RUnlock()
		if !synced && v.caughtUp() {
			return v.declareQueue(d, true)
		}
		return nil, false, v.notFoundQueue(d.Name)
	}
	if v.maxQueues >= 0 && len(v.queues) >= v.maxQueues {
		v.mu.RUnlock()
		return nil, false, amqp.ChannelErr(amqp.PreconditionFailed, "cannot declare queue '%s': queue limit in vhost '%s' (%d) is reached", d.Name, v.Name, v.maxQueues)
	}
	v.mu.RUnlock()
	rec := queueRecord(d)
	if home := v.placeQueue(d); home != "" {
		rec.Fields["hn"] = home
	}
	v.place(&rec, d)
	res, err := v.propose(rec)
	if err != nil {
		return nil, false, err
	}
	r := res.(declared)
	return r.q, r.created, nil
}

func (v *VHost) checkExclusiveLocked(q *queue.Queue, owner any) error {
	if q.Exclusive && q.Owner != owner {
		return v.lockedErr(q)
	}
	return nil
}

// brokenErrLocked returns the error for a durable queue that is out of service.
func (v *VHost) brokenErrLocked(name string) error {
	if err, ok := v.broken[name]; ok {
		return amqp.ChannelErr(amqp.NotFound, "queue '%s' in vhost '%s' is out of service (%v); see the broker log", name, v.Name, err)
	}
	return nil
}

func (v *VHost) lockedErr(q *queue.Queue) error {
	return amqp.ChannelErr(amqp.ResourceLocked, "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.", q.Name, v.Name)
}

func (v *VHost) equivalentQueue(q *queue.Queue, d QueueDecl) error {
	mismatch := func(arg string, got, cur any) error {
		return amqp.ChannelErr(amqp.PreconditionFailed, "inequivalent arg '%s' for queue '%s' in vhost '%s': received '%v' but current is '%v'", arg, d.Name, v.Name, got, cur)
	}
	switch {
	case q.Durable != d.Durable:
		return mismatch("durable", d.Durable, q.Durable)
	case q.Exclusive != d.Exclusive:
		return mismatch("exclusive", d.Exclusive, q.Exclusive)
	case q.AutoDelete != d.AutoDelete:
		return mismatch("auto_delete", d.AutoDelete, q.AutoDelete)
	}
	return equivalentArgs(q.Name, v.Name, q.Args, d.Args)
}

// Queue returns the named queue or nil.
func (v *VHost) Queue(name string) *queue.Queue {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.queues[name]
}

// LookupQueue returns the named queue, checking exclusive ownership (404 / 405).
func (v *VHost) LookupQueue(name string, owner any) (queue.Ref, error) {
	if v.Queue(name) == nil {
		v.caughtUp()
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	q := v.queues[name]
	if q == nil {
		if err := v.brokenErrLocked(name); err != nil {
			return nil, err
		}
		return nil, v.notFoundQueue(name)
	}
	if err := v.checkExclusiveLocked(q, owner); err != nil {
		return nil, err
	}
	return v.Ref(q), nil
}

// Queues returns all queues.
func (v *VHost) Queues() []*queue.Queue {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]*queue.Queue, 0, len(v.queues))
	for _, q := range v.queues {
		out = append(out, q)
	}
	return out
}

// DeleteQueue deletes a queue by name (queue.delete); a missing queue is not an error (count 0).
func (v *VHost) DeleteQueue(name string, ifUnused, ifEmpty bool, owner any) (int, error) {
	if v.Queue(name) == nil {
		v.caughtUp()
	}
	v.mu.RLock()
	q := v.queues[name]
	_, broken := v.broken[name]
	var err error
	if q != nil {
		err = v.checkExclusiveLocked(q, owner)
	}
	v.mu.RUnlock()
	if q == nil {
		if broken {
			// Deleting an out-of-service queue drops its definition and its damaged log.
			_, err := v.propose(meta.Record{Kind: meta.KindQueue, Delete: true, Name: name})
			return 0, err
		}
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := v.Ref(q).Delete(ifUnused, ifEmpty)
	if err != nil {
		return 0, err
	}
	if _, err := v.propose(deleteQueueRecord(q)); err != nil {
		return 0, err
	}
	return n, nil
}

// DeleteQueueObject deletes q if it is still registered (auto-delete, exclusive owner gone).
func (v *VHost) DeleteQueueObject(q *queue.Queue) {
	v.mu.RLock()
	cur := v.queues[q.Name]
	v.mu.RUnlock()
	if cur != q {
		return
	}
	q.Delete(false, false)
	v.propose(deleteQueueRecord(q)) // a failure to persist is the store's to report; q is gone here
}

// DeleteQueueRef deletes the queue r refers to if it is still the queue of that name (an
// exclusive queue whose connection closed).
func (v *VHost) DeleteQueueRef(r queue.Ref) {
	v.mu.RLock()
	q := v.queues[r.Name()]
	v.mu.RUnlock()
	if q != nil && v.Ref(q) == r {
		v.DeleteQueueObject(q)
	}
}

// BindQueue binds queue to exchange with key and args.
func (v *VHost) BindQueue(queueName, exchangeName, key string, args amqp.Table, owner any) error {
	if v.Queue(queueName) == nil || v.Exchange(exchangeName) == nil {
		v.caughtUp()
	}
	v.mu.RLock()
	// RabbitMQ's order: the default exchange, the exchange, the queue, then exclusivity.
	if exchangeName == "" {
		v.mu.RUnlock()
		return amqp.ChannelErr(amqp.AccessRefused, "operation not permitted on the default exchange")
	}
	x := v.exchanges[exchangeName]
	if x == nil {
		v.mu.RUnlock()
		return v.notFoundExchange(exchangeName)
	}
	q := v.queues[queueName]
	if q == nil {
		v.mu.RUnlock()
		return v.notFoundQueue(queueName)
	}
	err := v.checkExclusiveLocked(q, owner)
	v.mu.RUnlock()
	if err != nil {
		return err
	}
	return v.bind(x, q, key, args, owner)
}

// bind proposes a new binding (nothing when an equal one exists).
func (v *VHost) bind(x *exchange.Exchange, dest exchange.Destination, key string, args amqp.Table, owner any) error {
	if err := checkBindArgs(x, args); err != nil {
		return err
	}
	if x.HasBinding(exchange.Binding{Dest: dest, Key: key, Args: args}) {
		return nil
	}
	rec := bindingRecord(x, dest, key, args, false)
	rec.Owner = owner
	_, err := v.propose(rec)
	return err
}

// unbind proposes removing a binding (nothing when there is none).
func (v *VHost) unbind(x *exchange.Exchange, dest exchange.Destination, key string, args amqp.Table) error {
	if !x.HasBinding(exchange.Binding{Dest: dest, Key: key, Args: args}) {
		return nil
	}
	_, err := v.propose(bindingRecord(x, dest, key, args, true))
	return err
}

// UnbindQueue removes a binding; unbinding what is not bound succeeds, as in RabbitMQ, even
// when the queue or exchange does not exist. As in RabbitMQ 3.10, another connection's
// exclusive queue can be unbound.
func (v *VHost) UnbindQueue(queueName, exchangeName, key string, args amqp.Table) error {
	if exchangeName == "" {
		return amqp.ChannelErr(amqp.AccessRefused, "operation not permitted on the default exchange")
	}
	v.mu.RLock()
	q, x := v.queues[queueName], v.exchanges[exchangeName]
	v.mu.RUnlock()
	if q == nil || x == nil {
		return nil
	}
	return v.unbind(x, q, key, args)
}

// exchangePair looks up the ends of an exchange-to-exchange binding.
func (v *VHost) exchangePair(dst, src string) (*exchange.Exchange, *exchange.Exchange, error) {
	if dst == "" || src == "" {
		return nil, nil, amqp.ChannelErr(amqp.AccessRefused, "operation not permitted on the default exchange")
	}
	if v.Exchange(dst) == nil || v.Exchange(src) == nil {
		v.caughtUp()
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	d := v.exchanges[dst]
	if d == nil {
		return nil, nil, v.notFoundExchange(dst)
	}
	s := v.exchanges[src]
	if s == nil {
		return nil, nil, v.notFoundExchange(src)
	}
	return d, s, nil
}

// BindExchange binds destination exchange dst to source src (exchange.bind).
func (v *VHost) BindExchange(dst, src, key string, args amqp.Table) error {
	d, s, err := v.exchangePair(dst, src)
	if err != nil {
		return err
	}
	return v.bind(s, d, key, args, nil)
}

// UnbindExchange removes an exchange-to-exchange binding.
func (v *VHost) UnbindExchange(dst, src, key string, args amqp.Table) error {
	d, s, err := v.exchangePair(dst, src)
	if err != nil {
		return err
	}
	return v.unbind(s, d, key, args)
}

// Router holds scratch space for routing, reused across publishes on one channel.
type Router struct {
	dests   []exchange.Destination
	visited []*exchange.Exchange
	Queues  []queue.Ref
	BCC     bool // the message has a BCC header (strip it before delivery)
	// Duplicate: the exchange deduplicates and let this message's key through before; the
	// message is dropped (and confirmed), Queues is empty.
	Duplicate bool
	// NoDedup: route without consulting (or entering) the exchange's deduplication window
	// (a transaction's early check: the window is consulted at commit).
	NoDedup bool
	// Mandatory: the publisher wants an unroutable message back (basic.return). In a cluster,
	// Publish then checks an unroutable message against every change committed before it
	// (a barrier through the metadata log); otherwise against what this node holds.
	Mandatory bool
}

// Route finds the queues a message published to exchangeName with key goes to (following
// exchange-to-exchange bindings and alternate exchanges), into r.Queues. It fails with 404 for
// a missing exchange and 403 for an internal one.
//
// Sender-selected distribution (RabbitMQ): routing keys in the CC and BCC headers (arrays of
// strings) are routed too; r.BCC reports a BCC header, which the publisher strips.
//
// VHost.mu is held only for the lookups by name (the exchange, a default-exchange queue, an
// alternate exchange), never while an exchange matches: a slow topic match delays only its
// own publisher, not declares, other publishers or management (issue 18). A route that runs
// beside a delete can still return the deleted queue; its Publish refuses it (PubDropped).
// Publishers call Publish, which routes with Route; Route alone checks a publish (a
// transaction's early check) or finds its queues.
func (v *VHost) Route(r *Router, exchangeName, key string, m *message.Message) error {
	return v.route1(r, exchangeName, key, m, false)
}

// route1 is Route; synced: the node caught up with the metadata log already (a missing
// exchange is looked up again once).
func (v *VHost) route1(r *Router, exchangeName, key string, m *message.Message, synced bool) error {
	r.Queues = r.Queues[:0]
	r.BCC, r.Duplicate = false, false
	var x *exchange.Exchange
	v.mu.RLock()
	if exchangeName != "" {
		x = v.exchanges[exchangeName]
		if x == nil {
			v.mu.RUnlock()
			if !synced && v.caughtUp() {
				return v.route1(r, exchangeName, key, m, true)
			}
			return v.notFoundExchange(exchangeName)
		}
		if x.Internal {
			v.mu.RUnlock()
			return amqp.ChannelErr(amqp.AccessRefused, "cannot publish to internal exchange '%s' in vhost '%s'", exchangeName, v.Name)
		}
	}
	var counted *exchange.Exchange // message_stats; none for a transaction's early check
	if !r.NoDedup {
		if counted = x; counted == nil {
			counted = v.exchanges[""]
		}
	}
	v.mu.RUnlock()
	if counted != nil {
		counted.PublishIn.Add(1)
	}
	if x != nil && !r.NoDedup && v.duplicate(exchangeName, m) {
		r.Duplicate = true
		return nil
	}
	v.routeKey(r, x, key, m)
	if m.Props.Headers != nil && (amqp.TableHasKey(m.Props.Headers, "CC") || amqp.TableHasKey(m.Props.Headers, "BCC")) {
		h := m.Headers()
		for _, name := range []string{"CC", "BCC"} {
			keys, ok := h[name].([]any)
			if !ok {
				continue
			}
			if name == "BCC" {
				r.BCC = true
			}
			for _, k := range keys {
				switch k := k.(type) {
				case string:
					v.routeKey(r, x, k, m)
				case []byte:
					v.routeKey(r, x, string(k), m)
				}
			}
		}
	}
	if counted != nil && len(r.Queues) > 0 {
		counted.PublishOut.Add(uint64(len(r.Queues)))
	}
	return nil
}

// routeKey adds the queues for one routing key (x nil: the default exchange).
func (v *VHost) routeKey(r *Router, x *exchange.Exchange, key string, m *message.Message) {
	if x == nil {
		v.mu.RLock()
		q := v.queues[key]
		v.mu.RUnlock()
		if q != nil {
			r.add(v.Ref(q))
		}
		return
	}
	r.visited = r.visited[:0]
	v.route(r, x, key, m)
	clear(r.visited)
}

// route adds the queues x routes key to; called without v.mu.
func (v *VHost) route(r *Router, x *exchange.Exchange, key string, m *message.Message) {
	for _, seen := range r.visited {
		if seen == x {
			return
		}
	}
	r.visited = append(r.visited, x)
	before := len(r.Queues)
	start := len(r.dests)
	r.dests = x.Route(key, m.Headers, r.dests)
	for i := start; i < len(r.dests); i++ {
		switch d := r.dests[i].(type) {
		case *queue.Queue:
			r.add(v.Ref(d))
		case *exchange.Exchange:
			v.route(r, d, key, m)
		}
	}
	clear(r.dests[start:])
	r.dests = r.dests[:start]
	if len(r.Queues) == before {
		v.mu.RLock()
		var ax *exchange.Exchange
		if ae, ok := v.alternateLocked(x); ok {
			ax = v.exchanges[ae]
		}
		v.mu.RUnlock()
		if ax != nil {
			v.route(r, ax, key, m)
		}
	}
}

// add adds q to the queues routed to, once.
func (r *Router) add(q queue.Ref) {
	for _, have := range r.Queues {
		if have == q {
			return
		}
	}
	r.Queues = append(r.Queues, q)
}

// Bindings lists every binding in the vhost as (source, destination, key, args).
type BindingInfo struct {
	Source, Destination string
	DestIsExchange      bool
	Key                 string
	Args                amqp.Table
}

// Bindings returns every binding, including the implicit default-exchange ones.
func (v *VHost) Bindings() []BindingInfo {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []BindingInfo
	for _, q := range v.queues {
		out = append(out, BindingInfo{Source: "", Destination: q.Name, Key: q.Name})
	}
	for _, x := range v.exchanges {
		for _, b := range x.Bindings() {
			out = append(out, BindingInfo{Source: x.Name, Destination: b.Dest.DestName(), DestIsExchange: b.Dest.IsExchange(), Key: b.Key, Args: b.Args})
		}
	}
	return out
}

// checkBindArgs validates x-match on headers exchanges (406 otherwise, as RabbitMQ).
func checkBindArgs(x *exchange.Exchange, args amqp.Table) error {
	if x.Type != exchange.Headers {
		return nil
	}
	if v, ok := args["x-match"]; ok {
		s, _ := v.(string)
		switch s {
		case "all", "any", "all-with-x", "any-with-x":
		default:
			return amqp.ChannelErr(amqp.PreconditionFailed, "Invalid x-match field value %v; expected all, any, all-with-x, or any-with-x", v)
		}
	}
	return nil
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
