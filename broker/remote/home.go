package remote

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
)

// home is the home side's state for one client node: the queues its refs opened here, its
// consumers (proxies attached to the local queues), and the deliveries it has not settled.
// Everything is dropped when the link with it breaks (reset): its consumers are detached and
// those deliveries go back to their queues, redelivered.
type home struct {
	n    *Node
	peer string

	processed atomic.Int64 // publish bytes processed and not yet reported (opWindow)
	// delivery numbers the deliveries to this client, for the process's life: a link that
	// broke and came back must not reuse an id, or a settle the client sends late for a
	// delivery of the old link (its consumer still held it unacked) would settle a new
	// delivery the client never saw, and the message was lost (warren-chaos -cluster found
	// confirmed messages of quorum and classic queues never delivered after partitions).
	delivery atomic.Uint64

	mu     sync.Mutex
	gen    uint64 // the client's link life, from its latest opOpen
	queues map[uint64]*served
	subs   map[uint64]*proxy
}

// served is a queue a client ref opened: the local queue, once found, and the deliveries to
// the client's consumers (and basic.gets) it has not settled, by delivery id.
type served struct {
	h           *home
	id          uint64
	vhost, name string
	q           atomic.Pointer[queue.Queue]
	caught      atomic.Bool // a miss caught up with the metadata log once

	mu  sync.Mutex
	out map[uint64]outEntry
}

type outEntry struct {
	e  queue.Entry
	px *proxy // nil for a basic.get
}

func (n *Node) home(peer string) *home {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := n.homes[peer]
	if h == nil {
		h = &home{n: n, peer: peer, queues: map[uint64]*served{}, subs: map[uint64]*proxy{}}
		n.homes[peer] = h
	}
	return h
}

// localQueue finds a queue homed on this node. A client may know of a queue before this
// node applied its declare (the declaring node answered, this one is a moment behind): with
// catchUp, a miss waits until this node applied everything committed, and looks again.
func (n *Node) localQueue(vh, name string, catchUp bool) *queue.Queue {
	v := n.vhost(vh)
	if v == nil {
		return nil
	}
	q := v.Queue(name)
	if q == nil && catchUp && v.CatchUp() {
		q = v.Queue(name)
	}
	if q == nil || v.Ref(q) != q.Ref() {
		return nil // unknown here, or not homed here
	}
	return q
}

// queue returns the local queue, looked up at the first use (and caught up with the metadata
// log once if it is not there).
func (s *served) queue() *queue.Queue {
	if q := s.q.Load(); q != nil {
		return q
	}
	q := s.h.n.localQueue(s.vhost, s.name, !s.caught.Swap(true))
	if q != nil {
		s.q.CompareAndSwap(nil, q)
	}
	return s.q.Load()
}

// fresh is queue, looked up again when the queue object it found was replaced (a replicated
// queue's leadership moved: this node's object for it changed) or deleted.
func (s *served) fresh() *queue.Queue {
	q := s.queue()
	if q != nil && q.Deleted() {
		s.q.CompareAndSwap(q, nil)
		q = s.queue()
	}
	return q
}

// replicated reports whether the queue is a replicated one (this node may not lead it now).
func (s *served) replicated() bool {
	v := s.h.n.vhost(s.vhost)
	if v == nil {
		return false
	}
	_, ok := v.PlacementOf(s.name)
	return ok
}

// errNotLeader answers a publish for a replicated queue this node does not lead (any more):
// a nack, so the publisher sends it again (its node's Ref follows the leader).
var errNotLeader = errors.New("remote: this node does not lead the replicated queue")

// errStarting answers a publish that reaches a node before it recovered its queues: a nack.
var errStarting = errors.New("remote: the queue's home is starting")

// missing is the error for a queue this node does not have: 404, as RabbitMQ answers for
// a queue whose home node is down while this node is still starting (its queues are not back
// yet), else as for a queue that does not exist.
func (s *served) missing() error {
	if s.replicated() {
		return errNotLeader // not a 404: the asking node tries the leader again
	}
	if s.h.n.vhostFn.Load() == nil {
		return amqp.ChannelErr(amqp.NotFound, "home node '%s' of durable queue '%s' in vhost '%s' is down or inaccessible", s.h.n.cfg.Node, s.name, s.vhost)
	}
	return amqp.ChannelErr(amqp.NotFound, "no queue '%s' in vhost '%s'", s.name, s.vhost)
}

// track records a delivery awaiting settlement and returns its id (under the queue's lock).
func (s *served) track(e queue.Entry, px *proxy) uint64 {
	id := s.h.delivery.Add(1)
	s.mu.Lock()
	if s.out == nil {
		s.out = map[uint64]outEntry{}
	}
	s.out[id] = outEntry{e, px}
	s.mu.Unlock()
	return id
}

// take removes the deliveries of ids (unknown ones are skipped).
func (s *served) take(ids []uint64) []outEntry {
	out := make([]outEntry, 0, len(ids))
	s.mu.Lock()
	for _, id := range ids {
		if oe, ok := s.out[id]; ok {
			delete(s.out, id)
			out = append(out, oe)
		}
	}
	s.mu.Unlock()
	return out
}

func (s *served) takeAll() []queue.Entry {
	s.mu.Lock()
	es := make([]queue.Entry, 0, len(s.out))
	for _, oe := range s.out {
		es = append(es, oe.e)
	}
	s.out = nil
	s.mu.Unlock()
	return es
}

// reset forgets the client (its link broke): consumers detached, unsettled deliveries back
// in their queues as redelivered.
func (h *home) reset() {
	h.mu.Lock()
	subs, queues := h.subs, h.queues
	h.subs, h.queues = map[uint64]*proxy{}, map[uint64]*served{}
	h.mu.Unlock()
	for _, px := range subs {
		px.closed.Store(true)
		if q := px.s.q.Load(); q != nil {
			q.Ref().Unsubscribe(px)
		}
	}
	for _, s := range queues {
		s.requeueAll()
	}
	h.processed.Store(0)
}

func (s *served) requeueAll() {
	es := s.takeAll()
	if q := s.q.Load(); q != nil && len(es) > 0 {
		sortByOffset(es)
		q.Ref().Settle(es, queue.SettleRequeue)
	}
}

func sortByOffset(es []queue.Entry) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].Offset < es[j-1].Offset; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

func (h *home) send(fill func([]byte) []byte) error { return h.n.send(h.peer, topicClient, fill) }

func (h *home) replyOK(req uint64, fill func([]byte) []byte) {
	h.send(func(b []byte) []byte {
		b = append(b, opReply)
		b = putU64(b, req)
		b = putBool(b, true)
		if fill != nil {
			b = fill(b)
		}
		return b
	})
}

func (h *home) replyErr(req uint64, err error) {
	h.send(func(b []byte) []byte {
		b = append(b, opReply)
		b = putU64(b, req)
		b = putBool(b, false)
		return putErr(b, err)
	})
}

func (h *home) answer(seq uint64, st queue.PubStatus, err error) {
	h.send(func(b []byte) []byte {
		b = append(b, opAnswer)
		b = putU64(b, seq)
		b = append(b, byte(st))
		b = putBool(b, err != nil)
		if err != nil {
			b = putErr(b, err)
		}
		return b
	})
}

// pubAnswer answers a remote publisher once the queue answered (queue.Completion).
type pubAnswer struct {
	h   *home
	seq uint64
}

func (a *pubAnswer) Completed(st queue.PubStatus, err error) { a.h.answer(a.seq, st, err) }

// processedBytes counts a processed publish and reports the window every reportEvery bytes.
func (h *home) processedBytes(n int64) {
	if h.processed.Add(n) < reportEvery {
		return
	}
	if b := h.processed.Swap(0); b > 0 {
		h.send(func(p []byte) []byte { return putU64(append(p, opWindow), uint64(b)) })
	}
}

// serveHome handles a message from a client node about a queue homed here.
func (n *Node) serveHome(from string, payload []byte) {
	h := n.home(from)
	rd := reader{b: payload}
	op := rd.u8()
	if op == opPing {
		h.send(func(b []byte) []byte { return append(b, opPong) })
		return
	}
	if op == opOpen {
		id, g, vh, name := rd.u64(), rd.u64(), rd.str(), rd.str()
		if rd.bad {
			return
		}
		h.mu.Lock()
		if g > h.gen {
			h.gen = g
		}
		if h.queues[id] == nil {
			h.queues[id] = &served{h: h, id: id, vhost: vh, name: name}
		}
		h.mu.Unlock()
		return
	}
	refID := rd.u64()
	h.mu.Lock()
	s := h.queues[refID]
	g := h.gen
	h.mu.Unlock()
	if s == nil {
		// A ref this node does not know: it lost the client's link (and all it knew) while
		// the client did not notice. The client starts over.
		if op == opPublish {
			h.processedBytes(int64(len(payload)))
		}
		h.send(func(b []byte) []byte { return putU64(append(b, opUnknown), g) })
		return
	}
	switch op {
	case opPublish:
		h.publish(s, &rd)
	case opSettle:
		how := queue.Settlement(rd.u8())
		es := s.take(readIDs(&rd))
		q := s.q.Load()
		if len(es) == 0 || q == nil {
			return
		}
		entries := make([]queue.Entry, len(es))
		for i, oe := range es {
			entries[i] = oe.e
			if oe.px != nil && oe.px.settleCredit && how != queue.SettleRequeueClosing {
				oe.px.credit.Add(1) // before Settle, which dispatches
			}
		}
		q.Ref().Settle(entries, how)
	case opUnsend:
		s.unsend(readIDs(&rd))
	case opHold:
		sid := rd.u64()
		px := h.proxy(sid)
		if px != nil {
			px.held.Store(true) // before the unsend, which dispatches
		}
		s.unsend(readIDs(&rd))
		h.send(func(b []byte) []byte { return putU64(append(b, opHeld), sid) })
	case opResume:
		sid := rd.u64()
		px := h.proxy(sid)
		if px == nil {
			return
		}
		px.held.Store(false)
		if q := s.q.Load(); q != nil {
			q.Ref().Kick()
		}
	case opCredit:
		sid, k, bytes := rd.u64(), int32(rd.u32()), int64(rd.u64())
		px := h.proxy(sid)
		if px == nil {
			return
		}
		px.credit.Add(int64(k))
		px.bytes.Add(-bytes)
		if q := s.q.Load(); q != nil && k > 0 {
			q.Ref().Kick()
		}
	case opSubscribe:
		h.subscribe(s, &rd)
	case opCancel:
		sid := rd.u64()
		h.mu.Lock()
		px := h.subs[sid]
		delete(h.subs, sid)
		h.mu.Unlock()
		if px != nil {
			px.closed.Store(true)
			if q := s.q.Load(); q != nil {
				q.Ref().Unsubscribe(px)
			}
		}
	case opGet, opPurge, opDelete, opCounts, opFigures:
		req := rd.u64()
		q := s.fresh()
		if q == nil {
			h.replyErr(req, s.missing())
			return
		}
		h.request(s, q, op, req, &rd)
	case opTouch:
		if q := s.queue(); q != nil {
			q.Touch()
		}
	case opClose:
		h.mu.Lock()
		delete(h.queues, refID)
		h.mu.Unlock()
		s.requeueAll()
	}
}

// unsend takes back deliveries that never reached their consumer: ready again, as never sent,
// and their credit back.
func (s *served) unsend(ids []uint64) {
	es := s.take(ids)
	q := s.q.Load()
	if len(es) == 0 || q == nil {
		return
	}
	entries := make([]queue.Entry, len(es))
	for i, oe := range es {
		entries[i] = oe.e
		if px := oe.px; px != nil {
			px.credit.Add(1)
			if !px.settleCredit {
				px.bytes.Add(-int64(oe.e.Msg.Size()))
			}
		}
	}
	sortByOffset(entries)
	q.Unsend(entries)
}

// proxy returns the consumer subscribed here as sid, or nil.
func (h *home) proxy(sid uint64) *proxy {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs[sid]
}

func readIDs(rd *reader) []uint64 {
	k := rd.u32()
	if rd.bad || int(k) > len(rd.b)/8 {
		return nil
	}
	ids := make([]uint64, k)
	for i := range ids {
		ids[i] = rd.u64()
	}
	return ids
}

// publish hands a client's message to the local queue and answers when the queue does.
func (h *home) publish(s *served, rd *reader) {
	seq := rd.u64()
	exchange, key, props, body := rd.str(), rd.str(), rd.bytes(), rd.rest()
	st := queue.PubDropped
	var perr error
	if m, err := message.New(exchange, key, props, body); err == nil && !rd.bad {
		var c queue.Completion
		if seq != 0 {
			c = &pubAnswer{h, seq}
		}
		q := s.queue()
		if q != nil {
			st = q.Ref().Publish(m, c)
		}
		if st == queue.PubDropped || st == queue.PubRejected && (q.Standby || q.Deleted()) {
			// The queue object found first was replaced (a replicated queue's leader moved),
			// or this node never had it: look again once.
			if q2 := s.fresh(); q2 != nil && q2 != q {
				st = q2.Ref().Publish(m, c)
			} else if q2 == nil && s.replicated() {
				st, perr = queue.PubQueued, errNotLeader
			} else if q2 == nil && h.n.vhostFn.Load() == nil {
				// This node is starting: its queues are not back yet. The queue may well be
				// here (a classic queue's home restarting): a nack, never a drop, which the
				// publisher would take as a confirm of a message nobody stored.
				st, perr = queue.PubQueued, errStarting
			}
		}
	}
	if seq != 0 && st != queue.PubPending {
		h.answer(seq, st, perr)
	}
	h.processedBytes(pubSize(exchange, key, props, body))
}

// subscribe attaches a client's consumer (a proxy) to the local queue.
func (h *home) subscribe(s *served, rd *reader) {
	sid, req := rd.u64(), rd.u64()
	flags := rd.u8()
	prio, prefetch, credit := int64(rd.u64()), rd.u32(), rd.u32()
	tag := rd.str()
	args, _, err := amqp.ReadTable(rd.rest())
	if rd.bad || err != nil {
		h.replyErr(req, amqp.ConnErr(amqp.InternalError, "malformed subscription from node %s", h.peer))
		return
	}
	q := s.fresh()
	if q == nil {
		h.replyErr(req, s.missing())
		return
	}
	px := &proxy{s: s, id: sid, tag: tag, noAck: flags&subNoAck != 0, settleCredit: flags&subSettleCredit != 0}
	px.credit.Store(int64(credit))
	h.mu.Lock()
	h.subs[sid] = px
	h.mu.Unlock()
	err = q.Ref().Subscribe(px, queue.Subscription{
		Exclusive: flags&subExclusive != 0, Priority: prio, Prefetch: prefetch, NoAck: px.noAck,
		GlobalQos: flags&subGlobalQos != 0, Args: args,
		Added: func() { h.replyOK(req, nil) },
	})
	if err != nil {
		h.mu.Lock()
		if h.subs[sid] == px {
			delete(h.subs, sid)
		}
		h.mu.Unlock()
		h.replyErr(req, err)
	}
}

// request answers a get, purge, delete or counts request.
func (h *home) request(s *served, q *queue.Queue, op byte, req uint64, rd *reader) {
	r := q.Ref()
	switch op {
	case opGet:
		noAck := rd.bool()
		e, remaining, ok, err := r.Get(noAck)
		if err != nil {
			h.replyErr(req, err)
			return
		}
		if !ok {
			h.replyOK(req, func(b []byte) []byte { return putBool(b, false) })
			return
		}
		var id uint64
		if !noAck {
			id = s.track(e, nil)
		}
		h.replyOK(req, func(b []byte) []byte {
			b = putBool(b, true)
			b = putU64(b, uint64(remaining))
			return appendEntry(b, id, e)
		})
	case opPurge:
		k, err := r.Purge()
		if err != nil {
			h.replyErr(req, err)
			return
		}
		h.replyOK(req, func(b []byte) []byte { return putU64(b, uint64(k)) })
	case opDelete:
		ifUnused, ifEmpty := rd.bool(), rd.bool()
		k, err := r.Delete(ifUnused, ifEmpty)
		if err != nil {
			h.replyErr(req, err)
			return
		}
		h.replyOK(req, func(b []byte) []byte { return putU64(b, uint64(k)) })
	case opFigures:
		f := q.Figures()
		h.replyOK(req, func(b []byte) []byte { return appendFigures(b, f) })
	case opCounts:
		ready, unacked, consumers, err := r.Counts()
		if err != nil {
			h.replyErr(req, err)
			return
		}
		h.replyOK(req, func(b []byte) []byte {
			return putU64(putU64(putU64(b, uint64(ready)), uint64(unacked)), uint64(consumers))
		})
	}
}

// proxy is a client node's consumer attached to a local queue: it takes what its credit
// allows and sends it to the client.
type proxy struct {
	s            *served
	id           uint64
	tag          string
	noAck        bool
	settleCredit bool

	credit atomic.Int64 // deliveries it may still send
	bytes  atomic.Int64 // window consumers: bytes sent and not yet given back
	closed atomic.Bool
	held   atomic.Bool // its channel's prefetch holds it back (opHold until opResume)
}

var _ queue.Consumer = (*proxy)(nil)

// Tag is the client's consumer tag.
func (px *proxy) Tag() string { return px.tag }

// Deliver sends e to the client when the consumer has credit (under the queue's lock).
func (px *proxy) Deliver(_ queue.Ref, e queue.Entry) queue.Result {
	if px.closed.Load() || px.held.Load() || px.credit.Load() <= 0 {
		return queue.Refused
	}
	size := int64(e.Msg.Size())
	if !px.settleCredit {
		if b := px.bytes.Load(); b > 0 && b+size > windowBytes {
			return queue.Refused
		}
	}
	s := px.s
	var id uint64
	if !px.noAck {
		id = s.track(e, px)
	}
	err := s.h.send(func(b []byte) []byte {
		b = append(b, opDeliver)
		b = putU64(b, s.id)
		b = putU64(b, px.id)
		return appendEntry(b, id, e)
	})
	if err != nil {
		if id != 0 {
			s.take([]uint64{id})
		}
		px.closed.Store(true) // the link broke: reset detaches it
		return queue.Refused
	}
	px.credit.Add(-1)
	if !px.settleCredit {
		px.bytes.Add(size)
	}
	if px.noAck {
		return queue.Settled
	}
	return queue.Taken
}

// Cancelled tells the client its consumer was cancelled (the queue was deleted).
func (px *proxy) Cancelled(queue.Ref) { px.end(opCancelled) }

// Moved tells the client that this node no longer leads the consumer's replicated queue
// (queue.Mover): its Ref subscribes the consumer at the new leader, without a basic.cancel.
// Sent by the deposed leader, which may apply the move before the client's node does.
func (px *proxy) Moved(_, _ queue.Ref) { px.end(opMoved) }

func (px *proxy) end(op byte) {
	if px.closed.Swap(true) {
		return
	}
	h := px.s.h
	h.mu.Lock()
	if h.subs[px.id] == px {
		delete(h.subs, px.id)
	}
	h.mu.Unlock()
	h.send(func(b []byte) []byte { return putU64(append(b, op), px.id) })
}
