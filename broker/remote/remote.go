package remote

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
	"github.com/warrenmq/warren/broker/vhost"
)

// Bus is what the node-to-node message bus gives (cluster.Bus satisfies it): one ordered,
// batched, authenticated link per peer. Send and SendBuf queue a frame and do not wait for
// the network; they fail when the peer is unknown or its link is broken. Handlers run on the
// reading goroutine of a peer's link, in that peer's order. OnDown is called when a link
// with a peer breaks (either way): what was in flight may be lost.
type Bus interface {
	Send(peer string, topic byte, payload []byte) error
	SendBuf(peer string, topic byte, fill func([]byte) []byte) error
	Handle(topic byte, h func(peer string, payload []byte))
	OnDown(fn func(peer string))
}

// Config configures a Node.
type Config struct {
	// Node is this node's name, as the bus and the metadata records name it.
	Node string
	// VHost finds a vhost by name (the server side's lookup of the queues homed here); it may
	// be set later with SetVHosts (the broker is created after the Node).
	VHost func(name string) *vhost.VHost
	Log   zerolog.Logger
	// Members returns the names of the cluster's live nodes (queue placement); nil: this
	// node alone.
	Members func() []string
	// RequestTimeout bounds a request to a queue's home (consume, get, purge, delete,
	// counts): past it, the home counts as down (default 10 s).
	RequestTimeout time.Duration
}

// Flow control. A publish window bounds the publish bytes on their way to one peer (a
// publisher without confirms waits for room: the backpressure a local durable queue applies
// by making it wait for its log); the home reports what it processed every reportEvery bytes.
// A consumer without a prefetch (or no-ack) gets windowMsgs deliveries and windowBytes ahead,
// and gives them back as it takes them (opCredit, every quarter of the window).
const (
	publishWindow = 8 << 20
	reportEvery   = 64 << 10
	windowMsgs    = 512
	windowBytes   = 16 << 20
	// probeEvery: while a home counts as down, the first use of one of its queues after this
	// long asks whether it is back (opPing); until it answers, its queues answer as down.
	probeEvery = 200 * time.Millisecond
	probeWait  = 300 * time.Millisecond // how long a request waits for the probe's answer
)

// Node reaches queues homed on other nodes (its Refs, the client side) and serves the other
// nodes' requests for the queues homed here (the home side). It implements vhost.Remote.
type Node struct {
	cfg     Config
	log     zerolog.Logger
	bus     atomic.Pointer[busBox]
	vhostFn atomic.Pointer[func(string) *vhost.VHost]
	replies atomic.Pointer[func(key string, m *message.Message) bool]

	nextID atomic.Uint64 // refs, subscriptions, requests, publishes: unique in this process

	mu    sync.Mutex
	peers map[string]*peer // client side, by home node
	homes map[string]*home // home side, by client node

	stop     chan struct{} // closed by Close: probes end
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type busBox struct{ b Bus }

// New creates a Node; Attach connects it to the bus.
func New(cfg Config) *Node {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	n := &Node{cfg: cfg, log: cfg.Log.With().Str("component", "remote").Logger(),
		peers: map[string]*peer{}, homes: map[string]*home{}, stop: make(chan struct{})}
	if cfg.VHost != nil {
		n.SetVHosts(cfg.VHost)
	}
	return n
}

// SetVHosts sets the vhost lookup of the home side.
func (n *Node) SetVHosts(f func(string) *vhost.VHost) { n.vhostFn.Store(&f) }

// Attach connects the node to the bus: it registers its topics and its link-down handler.
// Until then every remote queue answers as one whose home is down.
func (n *Node) Attach(b Bus) {
	b.Handle(topicHome, n.serveHome)
	b.Handle(topicClient, n.serveClient)
	b.Handle(topicReply, n.serveReply)
	b.OnDown(n.peerDown)
	n.bus.Store(&busBox{b})
}

// Close stops the node's background work (probes of homes that are down).
func (n *Node) Close() {
	n.stopOnce.Do(func() { close(n.stop) })
	n.wg.Wait()
}

// Nodes returns the live nodes' names, sorted (vhost.Remote).
func (n *Node) Nodes() []string {
	if n.cfg.Members == nil {
		return []string{n.cfg.Node}
	}
	ns := n.cfg.Members()
	sort.Strings(ns)
	return ns
}

// Node is this node's name (vhost.Remote).
func (n *Node) Node() string { return n.cfg.Node }

// Ref returns a new Ref of q, a queue of v homed on node home (vhost.Remote: the vhost asks
// once per queue).
func (n *Node) Ref(v *vhost.VHost, q *queue.Queue, home string) queue.Ref {
	p := n.peer(home)
	r := &Ref{n: n, id: n.nextID.Add(1), vhost: v.Name, q: q, subs: map[queue.Consumer]*sub{},
		replicated: q.Args["x-queue-type"] == "quorum"}
	r.pp.Store(p)
	p.mu.Lock()
	p.refs[r.id] = r
	p.mu.Unlock()
	return r
}

// Dropped tells a Ref its queue is gone here (vhost.Remote).
func (n *Node) Dropped(qr queue.Ref) {
	if r, ok := qr.(*Ref); ok {
		r.drop(nil)
	}
}

// Handover ends a replicated queue's Ref on the node that now leads the queue: its consumers
// move to to, the queue's own Ref here (vhost.Remote).
func (n *Node) Handover(qr queue.Ref, to queue.Ref) {
	if r, ok := qr.(*Ref); ok {
		r.drop(to)
	}
}

func (n *Node) send(peer string, topic byte, fill func([]byte) []byte) error {
	bb := n.bus.Load()
	if bb == nil {
		return errNoBus
	}
	return bb.b.SendBuf(peer, topic, fill)
}

func (n *Node) vhost(name string) *vhost.VHost {
	f := n.vhostFn.Load()
	if f == nil {
		return nil
	}
	return (*f)(name)
}

// peer returns the client side's state for a home node.
func (n *Node) peer(name string) *peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[name]
	if p == nil {
		p = &peer{n: n, name: name, pubs: map[uint64]queue.Completion{}, reqs: map[uint64]*request{},
			subs: map[uint64]*sub{}, refs: map[uint64]*Ref{}}
		p.gen.Store(1)
		p.room = sync.NewCond(&p.mu)
		n.peers[name] = p
	}
	return p
}

// peerDown handles a broken link with a peer, on both sides: as a client, every consumer of a
// queue homed there is cancelled and everything waiting for it fails (its refs open again at
// their next use); as a home, the peer's consumers are detached and the deliveries it had not
// settled go back to their queues, redelivered.
func (n *Node) peerDown(name string) {
	n.mu.Lock()
	p := n.peers[name]
	h := n.homes[name]
	n.mu.Unlock()
	if p != nil {
		p.down(p.gen.Load())
	}
	if h != nil {
		h.reset()
	}
}

// serveClient handles a message from a queue's home.
func (n *Node) serveClient(from string, payload []byte) {
	p := n.peer(from)
	rd := reader{b: payload}
	switch rd.u8() {
	case opDeliver:
		p.deliver(&rd)
	case opAnswer:
		seq, st := rd.u64(), queue.PubStatus(rd.u8())
		var err error
		if rd.bool() {
			err = rd.err()
		}
		p.mu.Lock()
		c := p.pubs[seq]
		delete(p.pubs, seq)
		p.mu.Unlock()
		if c != nil {
			c.Completed(st, err)
		}
	case opWindow:
		b := int64(rd.u64())
		p.mu.Lock()
		if p.inflight -= b; p.inflight < 0 {
			p.inflight = 0
		}
		p.room.Broadcast()
		p.mu.Unlock()
	case opReply:
		p.reply(&rd)
	case opCancelled:
		if s := p.sub(rd.u64()); s != nil {
			s.r.cancelled(s, true)
		}
	case opMoved:
		if s := p.sub(rd.u64()); s != nil {
			s.r.moved(s)
		}
	case opHeld:
		if s := p.sub(rd.u64()); s != nil {
			s.r.heldAtHome(s)
		}
	case opUnknown:
		p.down(rd.u64())
	case opPong:
		p.up()
	}
}

// sub returns the subscription id at this home, or nil.
func (p *peer) sub(id uint64) *sub {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.subs[id]
}

// homeDown is the error of an operation on a queue whose home did not answer, with
// RabbitMQ's text for a durable classic queue whose node is down; a non-durable queue's
// record is gone in RabbitMQ when its node is (404 no queue).
func homeDown(r *Ref) error {
	if r.q.Durable && !r.q.Exclusive {
		return amqp.ChannelErr(amqp.NotFound, "home node '%s' of durable queue '%s' in vhost '%s' is down or inaccessible", r.peer().name, r.q.Name, r.vhost)
	}
	return amqp.ChannelErr(amqp.NotFound, "no queue '%s' in vhost '%s'", r.q.Name, r.vhost)
}

// SetReplies sets where replies for this node's direct reply-to channels go (the session's
// ReplyRegistry.Deliver).
func (n *Node) SetReplies(f func(key string, m *message.Message) bool) { n.replies.Store(&f) }

// SendReply hands a direct reply-to reply to the node whose channel owns key. Like a publish
// to an RPC client on one node, it is fire and forget: a reply for a channel gone meanwhile
// is dropped there.
func (n *Node) SendReply(node, key string, m *message.Message) error {
	return n.send(node, topicReply, func(b []byte) []byte {
		b = putStr(b, key)
		b = putStr(b, m.Exchange)
		b = putStr(b, m.RoutingKey)
		b = putBytes(b, m.RawProps)
		return append(b, m.Body...)
	})
}

func (n *Node) serveReply(from string, payload []byte) {
	rd := reader{b: payload}
	key, exchange, rk, props, body := rd.str(), rd.str(), rd.str(), rd.bytes(), rd.rest()
	f := n.replies.Load()
	if rd.bad || f == nil {
		return
	}
	m, err := message.New(exchange, rk, props, body)
	if err != nil {
		n.log.Warn().Err(err).Str("node", from).Msg("direct reply-to reply from another node dropped")
		return
	}
	if !(*f)(key, m) {
		n.log.Debug().Str("node", from).Str("key", key).Msg("direct reply-to reply for a channel gone")
	}
}
