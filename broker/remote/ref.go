package remote

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
)

var (
	errNoBus   = errors.New("remote: not attached to the cluster's bus")
	errDown    = errors.New("remote: the link to the queue's home broke")
	errTimeout = errors.New("remote: the queue's home did not answer in time")
)

// peer is the client side's state for one home node: what waits for it, and the refs and
// subscriptions of its queues. gen counts the link's lives: a broken link (peerDown, or the
// home saying it lost us) ends one, and every ref opens its queue again in the next.
type peer struct {
	n    *Node
	name string
	gen  atomic.Uint64
	// isDown: the link broke, and the home has not answered a probe since; its queues answer
	// at once as RabbitMQ's answer for a queue whose node is down (available).
	isDown  atomic.Bool
	probed  atomic.Int64 // when the last probe went out (unix ns)
	probing atomic.Bool  // a probe goroutine runs

	mu       sync.Mutex
	room     *sync.Cond // the publish window has room (or the link broke)
	inflight int64      // publish bytes sent and not yet reported processed
	pubs     map[uint64]queue.Completion
	reqs     map[uint64]*request
	subs     map[uint64]*sub
	refs     map[uint64]*Ref
	back     chan struct{} // closed when the home answers a probe
}

// request is a request waiting for its reply.
type request struct {
	done chan struct{}
	err  error
	res  reader // the reply's result (aliasing the message)
	sub  *sub   // a subscribe: activated when accepted, before done is closed
}

// down ends link life g (nothing when it ended already): pending publishes fail (a nack),
// requests fail, consumers are cancelled, and the refs open their queues again when used.
func (p *peer) down(g uint64) {
	cur := p.gen.Load()
	if g != 0 && g != cur {
		return
	}
	if !p.gen.CompareAndSwap(cur, cur+1) {
		return
	}
	p.isDown.Store(true)
	if !p.probing.Swap(true) {
		p.n.wg.Add(1)
		go p.probe()
	}
	p.mu.Lock()
	pubs, reqs, subs := p.pubs, p.reqs, p.subs
	p.pubs, p.reqs, p.subs = map[uint64]queue.Completion{}, map[uint64]*request{}, map[uint64]*sub{}
	p.inflight = 0
	p.room.Broadcast()
	p.mu.Unlock()
	if len(pubs)+len(reqs)+len(subs) > 0 {
		p.n.log.Warn().Str("node", p.name).Int("publishes", len(pubs)).Int("consumers", len(subs)).Msg("link to queue home lost")
	}
	for _, c := range pubs {
		c.Completed(queue.PubQueued, errDown) // not known to be durable: nack
	}
	for _, rq := range reqs {
		rq.err = errDown
		close(rq.done)
	}
	for _, s := range subs {
		s.r.lost(s)
	}
}

// available reports whether the home counts as up. While it counts as down, one call every
// probeEvery asks it whether it is back (its answer marks it up); with wait, the call waits a
// moment for that answer (a request after the home came back succeeds at once).
func (p *peer) available(wait bool) bool {
	if !p.isDown.Load() {
		return true
	}
	now := time.Now().UnixNano()
	last := p.probed.Load()
	p.mu.Lock()
	back := p.back
	if back == nil {
		back = make(chan struct{})
		p.back = back
	}
	p.mu.Unlock()
	if now-last >= int64(probeEvery) && p.probed.CompareAndSwap(last, now) {
		p.n.send(p.name, topicHome, func(b []byte) []byte { return append(b, opPing) })
	}
	if !wait {
		return false
	}
	t := time.NewTimer(probeWait)
	defer t.Stop()
	select {
	case <-back:
		return true
	case <-t.C:
		return !p.isDown.Load()
	}
}

// probe asks a home that counts as down whether it is back, every probeEvery, until it
// answers (or the node closes).
func (p *peer) probe() {
	defer p.n.wg.Done()
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for p.isDown.Load() {
		p.probed.Store(time.Now().UnixNano())
		p.n.send(p.name, topicHome, func(b []byte) []byte { return append(b, opPing) })
		select {
		case <-t.C:
		case <-p.n.stop:
			p.probing.Store(false)
			return
		}
	}
	p.probing.Store(false)
	if p.isDown.Load() && !p.probing.Swap(true) { // went down again as this loop ended
		p.n.wg.Add(1)
		go p.probe()
	}
}

// up marks the home up (it answered a probe).
func (p *peer) up() {
	p.mu.Lock()
	p.isDown.Store(false)
	if p.back != nil {
		close(p.back)
		p.back = nil
	}
	p.mu.Unlock()
}

// request registers a request; the caller sends it and waits.
func (p *peer) request(s *sub) (uint64, *request) {
	id := p.n.nextID.Add(1)
	rq := &request{done: make(chan struct{}), sub: s}
	p.mu.Lock()
	p.reqs[id] = rq
	if s != nil {
		p.subs[s.id] = s
	}
	p.mu.Unlock()
	return id, rq
}

// wait waits for a request's reply, or the link's end, or the request timeout.
func (p *peer) wait(id uint64, rq *request) error {
	return p.waitFor(id, rq, p.n.cfg.RequestTimeout)
}

// waitFor is wait with its own timeout.
func (p *peer) waitFor(id uint64, rq *request, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-rq.done:
		return rq.err
	case <-t.C:
	}
	p.mu.Lock()
	_, mine := p.reqs[id]
	delete(p.reqs, id)
	p.mu.Unlock()
	if mine {
		return errTimeout
	}
	<-rq.done // being answered right now
	return rq.err
}

// forget drops a request that could not be sent.
func (p *peer) forget(id uint64) {
	p.mu.Lock()
	delete(p.reqs, id)
	p.mu.Unlock()
}

// reply handles opReply: req, ok, then an error or the result.
func (p *peer) reply(rd *reader) {
	id := rd.u64()
	ok := rd.bool()
	p.mu.Lock()
	rq := p.reqs[id]
	delete(p.reqs, id)
	p.mu.Unlock()
	if rq == nil {
		return // timed out, or the link broke: its waiter has gone
	}
	if !ok {
		rq.err = rd.err()
	} else {
		rq.res = *rd
		if s := rq.sub; s != nil {
			s.r.mu.Lock()
			if !s.gone {
				s.active = true
				if s.added != nil {
					s.added()
				}
			}
			s.r.mu.Unlock()
		}
	}
	close(rq.done)
}

// deliver handles opDeliver.
func (p *peer) deliver(rd *reader) {
	refID, sid, id, off := rd.u64(), rd.u64(), rd.u64(), rd.u64()
	redelivered, returns := rd.bool(), rd.u32()
	exchange, key, props, body := rd.str(), rd.str(), rd.bytes(), rd.rest()
	if rd.bad {
		return
	}
	p.mu.Lock()
	s := p.subs[sid]
	p.mu.Unlock()
	m, err := message.New(exchange, key, props, body)
	if s == nil || err != nil {
		p.giveBack(refID, []uint64{id})
		return
	}
	s.r.deliver(s, queue.Entry{Msg: m, Offset: off, LogOffset: id, Redelivered: redelivered, Returns: returns})
}

// unsend gives deliveries that never reached a consumer back to the home.
func (p *peer) unsend(refID uint64, ids []uint64) {
	p.n.send(p.name, topicHome, func(b []byte) []byte {
		b = append(b, opUnsend)
		b = putU64(b, refID)
		b = putU32(b, uint32(len(ids)))
		for _, id := range ids {
			b = putU64(b, id)
		}
		return b
	})
}

// giveBack returns deliveries that a consumer which has gone never took: requeued at the home
// as redelivered. Not as never sent (unsend): the home sent them ahead of the consumer's
// prefetch, and by the time they are back (over a slow or re-made link) the consumer's next
// subscription may have taken later messages; unflagged, they would come after those as first
// deliveries, out of the queue's order (warren-chaos -cluster -seed 1008). RabbitMQ sends
// nothing beyond the prefetch, so its queue keeps that order; the flag says "may have been
// delivered", which a consumer must tolerate anyway.
func (p *peer) giveBack(refID uint64, ids []uint64) {
	p.n.send(p.name, topicHome, func(b []byte) []byte {
		b = append(b, opSettle)
		b = putU64(b, refID)
		b = append(b, byte(queue.SettleRequeue))
		b = putU32(b, uint32(len(ids)))
		for _, id := range ids {
			b = putU64(b, id)
		}
		return b
	})
}

// Ref is a queue homed on another node, as the session sees it (queue.Ref): publishes go to
// the home batched on the bus, consumers are subscriptions at the home that push deliveries,
// and settlements, gets, purges, deletes and counts are requests to it. Its definition (name,
// type, arguments) is the queue's record, which this node has too (q).
//
// The Ref's lock (mu) guards its subscriptions; Consumer.Deliver and Subscription.Added run
// under it, on the bus reader of the home's link, or in Kick.
//
// An Entry it hands out carries the home's offset in Offset and the home's delivery id in
// LogOffset: that is what Settle sends back.
type Ref struct {
	n     *Node
	pp    atomic.Pointer[peer] // the home: fixed for a classic queue, the leader for a replicated one
	id    uint64
	vhost string
	q     *queue.Queue // this node's copy of the definition
	// replicated: a replicated queue's Ref, which follows its leader (Retarget): a leader
	// lost keeps its consumers waiting for the next one, and a publish it cannot take is
	// nacked, never dropped.
	replicated bool
	// inc counts the homes this Ref has had; the delivery ids it hands out carry it (the top
	// bits of Entry.LogOffset), so a settlement for an earlier home is not sent to a later one.
	inc atomic.Uint64

	openMu     sync.Mutex
	openGen    atomic.Uint64 // the link life the home knows this ref in (0: none)
	dropped    atomic.Bool
	recovering atomic.Bool // a goroutine subscribes the consumers that lost their home again

	mu   sync.Mutex
	subs map[queue.Consumer]*sub
}

// sub is one consumer's subscription at the home.
type sub struct {
	r      *Ref
	p      *peer // the home it subscribes at
	id     uint64
	c      queue.Consumer
	added  func()
	window bool               // credit comes back as deliveries are taken (no-ack, or no prefetch)
	spec   queue.Subscription // how it subscribed (Added cleared), to subscribe again at a new leader

	// under r.mu
	active     bool // the home accepted it
	orphan     bool // its home was lost or replaced: it waits to subscribe at the leader
	gone       bool // unsubscribed, cancelled or refused: deliveries go back
	buf        []queue.Entry
	taken      uint32
	takenBytes int64
	// A consumer whose channel-wide prefetch holds it back gives back what the home sent
	// ahead, as never sent, and the home sends it nothing until resumed (opHold, opResume):
	// the messages stay ready there, for other consumers and in the counts, as RabbitMQ's
	// queue sends nothing past its consumer's channel limit.
	held       bool   // opHold sent; deliveries that arrive go back
	heldAtHome bool   // the home answered opHeld: nothing more arrives until opResume
	resume     bool   // the consumer has room again: opResume once the home answered
	chanCredit uint32 // credit from the channel's prefetch (no prefetch of its own), 0: none
}

// channelFull is a consumer that can say whether its channel's prefetch holds it back
// (session's consumer).
type channelFull interface {
	ChannelFull() bool
}

var _ queue.Ref = (*Ref)(nil)

// Home is the node the queue lives on.
func (r *Ref) Home() string { return r.peer().name }

// peer is the current home's state.
func (r *Ref) peer() *peer { return r.pp.Load() }

// open makes sure the home knows this ref in the current link life, sending opOpen first if
// not; it returns that life.
func (r *Ref) open() uint64 {
	p := r.peer()
	g := p.gen.Load()
	if r.openGen.Load() == g {
		return g
	}
	r.openMu.Lock()
	defer r.openMu.Unlock()
	if p = r.peer(); r.openGen.Load() != p.gen.Load() {
		g = p.gen.Load()
		err := r.n.send(p.name, topicHome, func(b []byte) []byte {
			b = append(b, opOpen)
			b = putU64(b, r.id)
			b = putU64(b, g)
			b = putStr(b, r.vhost)
			return putStr(b, r.q.Name)
		})
		if err == nil {
			r.openGen.Store(g)
		}
	}
	return g
}

func (r *Ref) Name() string                      { return r.q.Name }
func (r *Ref) IsStream() bool                    { return r.q.IsStream() }
func (r *Ref) StreamUnsupported(op string) error { return r.q.StreamUnsupported(op) }

// DeliveryProps computes what the home's queue would, from the definition (a quorum-type
// queue's x-delivery-count from e.Returns).
func (r *Ref) DeliveryProps(e queue.Entry) []byte { return r.q.DeliveryProps(e) }

// Publish sends m to the home. With c it answers PubPending and c gets the home's answer
// (after its durable write); without, it answers PubQueued once the message is on its way,
// after waiting for room in the publish window. A home that cannot be reached: see unreachable.
func (r *Ref) Publish(m *message.Message, c queue.Completion) queue.PubStatus {
	return r.publish(m, c, true)
}

// PublishUnthrottled is Publish without waiting for the publish window: for dead letters,
// which a queue publishes from the goroutines that serve other nodes' requests (waiting there
// could wait for itself). RabbitMQ does not flow-control dead letters either.
func (r *Ref) PublishUnthrottled(m *message.Message, c queue.Completion) queue.PubStatus {
	return r.publish(m, c, false)
}

func (r *Ref) publish(m *message.Message, c queue.Completion, throttle bool) queue.PubStatus {
	p := r.peer()
	if r.dropped.Load() || !p.available(false) {
		return r.unreachable(c) // its node is down
	}
	size := int64(m.Size())
	var seq uint64
	p.mu.Lock()
	if c != nil {
		seq = r.n.nextID.Add(1)
		p.pubs[seq] = c
	} else if throttle {
		g := p.gen.Load()
		for p.inflight > reportEvery && p.inflight+size > publishWindow && p.gen.Load() == g {
			p.room.Wait()
		}
	}
	p.inflight += size
	p.mu.Unlock()
	r.open()
	err := r.n.send(p.name, topicHome, func(b []byte) []byte {
		b = append(b, opPublish)
		b = putU64(b, r.id)
		b = putU64(b, seq)
		b = putStr(b, m.Exchange)
		b = putStr(b, m.RoutingKey)
		b = putBytes(b, m.RawProps)
		return append(b, m.Body...)
	})
	if err != nil {
		p.mu.Lock()
		_, mine := p.pubs[seq]
		delete(p.pubs, seq)
		if p.inflight -= size; p.inflight < 0 {
			p.inflight = 0
		}
		p.mu.Unlock()
		if c != nil && !mine {
			return queue.PubPending // the link's end answered it
		}
		return r.unreachable(c) // the home is unreachable
	}
	if c != nil {
		return queue.PubPending
	}
	return queue.PubQueued
}

// unreachable answers a publish the home cannot be sent. A publisher that waits for an answer
// (confirms, a transaction, a dead-lettering queue) gets a nack: the message is not stored, so
// it must send it again. RabbitMQ confirms a message for a classic queue whose node is down
// (and loses it); Warren never confirms a message it did not store. A publisher that waits
// for nothing loses it, as on RabbitMQ (a classic queue's is returned when mandatory). A queue
// known deleted takes nothing: dropped, as a publish racing a delete on one node.
func (r *Ref) unreachable(c queue.Completion) queue.PubStatus {
	if r.dropped.Load() || c == nil {
		return queue.PubDropped
	}
	c.Completed(queue.PubQueued, errDown)
	return queue.PubPending
}

// Subscribe opens a subscription at the home, with the consumer's prefetch as credit (credit
// comes back as the consumer settles), or a window of deliveries for a consumer without one
// (credit comes back as the consumer takes them). It returns once the home accepted or
// refused; s.Added has run by then, on the reader of the home's link.
func (r *Ref) Subscribe(c queue.Consumer, s queue.Subscription) error {
	if r.dropped.Load() {
		return amqp.ChannelErr(amqp.NotFound, "no queue '%s' in vhost '%s'", r.q.Name, r.vhost)
	}
	p := r.peer()
	if !p.available(true) {
		return homeDown(r)
	}
	spec := s
	spec.Added = nil
	window := s.NoAck || (s.Prefetch == 0 && s.ChannelPrefetch == 0)
	sb := &sub{r: r, p: p, id: r.n.nextID.Add(1), c: c, added: s.Added, window: window, spec: spec}
	r.mu.Lock()
	r.subs[c] = sb
	r.mu.Unlock()
	err := r.subscribeAt(p, sb)
	if err == nil {
		return nil
	}
	r.mu.Lock()
	if r.subs[c] == sb {
		delete(r.subs, c)
	}
	sb.gone = true
	r.mu.Unlock()
	var ae *amqp.Error
	if errors.As(err, &ae) {
		return err
	}
	return homeDown(r)
}

// subscribeAt opens sb at home p and waits for its answer; on failure, sb is no longer
// registered at p.
func (r *Ref) subscribeAt(p *peer, sb *sub) error {
	s := sb.spec
	credit := s.Prefetch
	var flags byte
	if sb.window {
		credit = windowMsgs
	} else {
		flags |= subSettleCredit
	}
	r.mu.Lock()
	sb.held, sb.heldAtHome, sb.resume = false, false, false
	if !sb.window && s.Prefetch == 0 {
		credit = sb.chanCredit // a resubscription (new leader) keeps the channel's latest
		if credit == 0 {
			credit = s.ChannelPrefetch
			sb.chanCredit = credit
		}
	}
	r.mu.Unlock()
	if s.Exclusive {
		flags |= subExclusive
	}
	if s.NoAck {
		flags |= subNoAck
	}
	if s.GlobalQos {
		flags |= subGlobalQos
	}
	reqID, rq := p.request(sb)
	r.open()
	err := r.n.send(p.name, topicHome, func(b []byte) []byte {
		b = append(b, opSubscribe)
		b = putU64(b, r.id)
		b = putU64(b, sb.id)
		b = putU64(b, reqID)
		b = append(b, flags)
		b = putU64(b, uint64(s.Priority))
		b = putU32(b, s.Prefetch)
		b = putU32(b, credit)
		b = putStr(b, sb.c.Tag())
		return amqp.AppendTable(b, s.Args)
	})
	if err != nil {
		p.forget(reqID)
	} else {
		err = p.wait(reqID, rq)
	}
	if err == nil {
		return nil
	}
	p.mu.Lock()
	delete(p.subs, sb.id)
	p.mu.Unlock()
	if errors.Is(err, errTimeout) {
		r.sendCancelTo(p, sb.id) // in case the home accepts it after all
	}
	return err
}

func (r *Ref) sendCancelTo(p *peer, sid uint64) {
	r.n.send(p.name, topicHome, func(b []byte) []byte {
		b = append(b, opCancel)
		b = putU64(b, r.id)
		return putU64(b, sid)
	})
}

// Unsubscribe ends c's subscription: no Deliver to c after it returns. What the home sent
// that c did not take goes back to it, as never delivered.
func (r *Ref) Unsubscribe(c queue.Consumer) {
	r.mu.Lock()
	sb := r.subs[c]
	if sb == nil {
		r.mu.Unlock()
		return
	}
	delete(r.subs, c)
	sb.gone = true
	buf := sb.buf
	sb.buf = nil
	r.mu.Unlock()
	p := sb.p
	p.mu.Lock()
	delete(p.subs, sb.id)
	p.mu.Unlock()
	r.sendCancelTo(p, sb.id)
	if len(buf) > 0 {
		p.giveBack(r.id, entryIDs(buf))
	}
}

func entryIDs(es []queue.Entry) []uint64 {
	ids := make([]uint64, len(es))
	for i, e := range es {
		ids[i] = e.LogOffset & idMask
	}
	return ids
}

// A delivery id as the Ref hands it out (Entry.LogOffset): the home's id in the low bits, the
// Ref's home count (inc) above them.
const (
	incShift = 40
	idMask   = 1<<incShift - 1
)

func (r *Ref) tag(id uint64) uint64 { return r.inc.Load()<<incShift | id&idMask }

// deliver offers a delivery from the home to its consumer, keeping it when the consumer
// refuses (until Kick). On the home link's reader.
func (r *Ref) deliver(s *sub, e queue.Entry) {
	r.mu.Lock()
	if s.gone {
		r.mu.Unlock()
		s.p.giveBack(r.id, []uint64{e.LogOffset})
		return
	}
	if s.held {
		// Sent before the home took the hold in: back, as never sent.
		r.mu.Unlock()
		s.p.unsend(r.id, []uint64{e.LogOffset})
		return
	}
	e.LogOffset = r.tag(e.LogOffset)
	if len(s.buf) == 0 {
		if s.c.Deliver(r, e) != queue.Refused {
			r.tookLocked(s, e, false)
			r.mu.Unlock()
			return
		}
	}
	s.buf = append(s.buf, e)
	r.holdIfFullLocked(s)
	r.mu.Unlock()
}

// holdIfFullLocked holds s at its home when its channel's prefetch is what refuses it: what
// it holds here goes back, and the home sends nothing more until Kick resumes it.
func (r *Ref) holdIfFullLocked(s *sub) {
	if s.held || s.spec.NoAck || r.q.IsStream() {
		return
	}
	cf, ok := s.c.(channelFull)
	if !ok || !cf.ChannelFull() {
		return
	}
	s.held, s.heldAtHome, s.resume = true, false, false
	ids := entryIDs(s.buf)
	clear(s.buf)
	s.buf = s.buf[:0]
	r.n.send(s.p.name, topicHome, func(b []byte) []byte {
		b = append(b, opHold)
		b = putU64(b, r.id)
		b = putU64(b, s.id)
		b = putU32(b, uint32(len(ids)))
		for _, id := range ids {
			b = putU64(b, id)
		}
		return b
	})
}

// heldAtHome handles opHeld: nothing of s follows from the home; resumed at once if its
// consumer has room again.
func (r *Ref) heldAtHome(s *sub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.gone || !s.held {
		return
	}
	s.heldAtHome = true
	if s.resume {
		r.resumeLocked(s)
	}
}

func (r *Ref) resumeLocked(s *sub) {
	s.held, s.heldAtHome, s.resume = false, false, false
	r.n.send(s.p.name, topicHome, func(b []byte) []byte {
		b = append(b, opResume)
		b = putU64(b, r.id)
		return putU64(b, s.id)
	})
}

// ChannelPrefetch follows a change of the channel-wide prefetch of c's channel: a consumer
// without a prefetch of its own gets as much credit at the home (basic.qos global, which
// Celery's worker raises while it holds tasks with an ETA). A limit lifted leaves it the window.
func (r *Ref) ChannelPrefetch(c queue.Consumer, n uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.subs[c]
	if s == nil || s.gone || s.window || s.spec.Prefetch != 0 {
		return
	}
	if n == 0 {
		n = windowMsgs
	}
	old := s.chanCredit
	s.chanCredit = n
	if s.orphan || !s.active || n == old {
		return // subscribes with chanCredit
	}
	delta := int32(int64(n) - int64(old))
	r.n.send(s.p.name, topicHome, func(b []byte) []byte {
		b = append(b, opCredit)
		b = putU64(b, r.id)
		b = putU64(b, s.id)
		b = putU32(b, uint32(delta))
		return putU64(b, 0)
	})
}

// tookLocked counts a delivery a window consumer took, and gives the credit back to the home
// a quarter of the window at a time (flush: whatever was counted).
func (r *Ref) tookLocked(s *sub, e queue.Entry, flush bool) {
	if !s.window {
		return
	}
	if e.Msg != nil {
		s.taken++
		s.takenBytes += int64(e.Msg.Size())
	}
	if s.taken == 0 || (!flush && s.taken < windowMsgs/4 && s.takenBytes < windowBytes/4) {
		return
	}
	n, bytes := s.taken, s.takenBytes
	s.taken, s.takenBytes = 0, 0
	r.n.send(s.p.name, topicHome, func(b []byte) []byte {
		b = append(b, opCredit)
		b = putU64(b, r.id)
		b = putU64(b, s.id)
		b = putU32(b, n)
		return putU64(b, uint64(bytes))
	})
}

// Kick offers the deliveries consumers refused again (a consumer has room again), and resumes
// the consumers held for their channel's prefetch that have room.
func (r *Ref) Kick() {
	r.mu.Lock()
	for _, s := range r.subs {
		if s.held {
			if !s.resume && !s.c.(channelFull).ChannelFull() {
				s.resume = true
				if s.heldAtHome {
					r.resumeLocked(s)
				}
			}
			continue
		}
		if len(s.buf) == 0 {
			continue
		}
		k := 0
		for k < len(s.buf) && s.c.Deliver(r, s.buf[k]) != queue.Refused {
			r.tookLocked(s, s.buf[k], false)
			k++
		}
		if k > 0 {
			n := copy(s.buf, s.buf[k:])
			clear(s.buf[n:])
			s.buf = s.buf[:n]
		}
		if len(s.buf) > 0 {
			r.holdIfFullLocked(s)
		}
	}
	r.mu.Unlock()
}

// Settle sends the entries' delivery ids back to the home (fire and forget), then offers again
// what consumers refused (a settle frees channel-wide credit, as a local queue's settle
// dispatches). Entries a home this Ref no longer uses delivered are skipped: a replicated
// queue's new leader delivers again what the old one had not seen settled.
func (r *Ref) Settle(es []queue.Entry, how queue.Settlement) {
	r.settle(es, how)
	r.Kick()
}

func (r *Ref) settle(es []queue.Entry, how queue.Settlement) {
	if len(es) == 0 || r.dropped.Load() || r.peer().isDown.Load() {
		return // the home took back what the lost link had not settled
	}
	inc := r.inc.Load()
	k := 0
	for _, e := range es {
		if e.LogOffset>>incShift == inc {
			k++
		}
	}
	if k == 0 {
		return
	}
	r.open()
	r.n.send(r.peer().name, topicHome, func(b []byte) []byte {
		b = append(b, opSettle)
		b = putU64(b, r.id)
		b = append(b, byte(how))
		b = putU32(b, uint32(k))
		for _, e := range es {
			if e.LogOffset>>incShift == inc {
				b = putU64(b, e.LogOffset&idMask)
			}
		}
		return b
	})
}

// call sends a request (op, the ref, the request id, then what fill appends) and waits for
// its reply.
func (r *Ref) call(op byte, fill func([]byte) []byte) (reader, error) {
	return r.callFor(op, fill, r.n.cfg.RequestTimeout)
}

// callFor is call with its own timeout.
func (r *Ref) callFor(op byte, fill func([]byte) []byte, d time.Duration) (reader, error) {
	if r.dropped.Load() {
		return reader{}, amqp.ChannelErr(amqp.NotFound, "no queue '%s' in vhost '%s'", r.q.Name, r.vhost)
	}
	p := r.peer()
	if !p.available(true) {
		return reader{}, homeDown(r)
	}
	id, rq := p.request(nil)
	r.open()
	err := r.n.send(p.name, topicHome, func(b []byte) []byte {
		b = append(b, op)
		b = putU64(b, r.id)
		b = putU64(b, id)
		if fill != nil {
			b = fill(b)
		}
		return b
	})
	if err != nil {
		p.forget(id)
		return reader{}, homeDown(r)
	}
	if err := p.waitFor(id, rq, d); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) {
			return reader{}, err
		}
		return reader{}, homeDown(r)
	}
	return rq.res, nil
}

// Get takes a message at the home (basic.get).
func (r *Ref) Get(noAck bool) (queue.Entry, int, bool, error) {
	inc := r.inc.Load()
	res, err := r.call(opGet, func(b []byte) []byte { return putBool(b, noAck) })
	if err != nil {
		return queue.Entry{}, 0, false, err
	}
	if !res.bool() {
		return queue.Entry{}, 0, false, nil
	}
	remaining := int(res.u64())
	id, off, redelivered, returns := res.u64(), res.u64(), res.bool(), res.u32()
	exchange, key, props, body := res.str(), res.str(), res.bytes(), res.rest()
	m, err := message.New(exchange, key, props, body)
	if err != nil || res.bad {
		if !noAck {
			r.peer().unsend(r.id, []uint64{id})
		}
		return queue.Entry{}, 0, false, homeDown(r)
	}
	return queue.Entry{Msg: m, Offset: off, LogOffset: inc<<incShift | id, Redelivered: redelivered, Returns: returns}, remaining, true, nil
}

// Purge purges the queue at the home.
func (r *Ref) Purge() (int, error) {
	res, err := r.call(opPurge, nil)
	if err != nil {
		return 0, err
	}
	return int(res.u64()), nil
}

// Delete deletes the queue's contents at the home and cancels its consumers; the caller
// removes the definition (VHost.DeleteQueue).
func (r *Ref) Delete(ifUnused, ifEmpty bool) (int, error) {
	res, err := r.call(opDelete, func(b []byte) []byte { return putBool(putBool(b, ifUnused), ifEmpty) })
	if err != nil {
		return 0, err
	}
	return int(res.u64()), nil
}

// Counts asks the home for the queue's counts.
func (r *Ref) Counts() (ready, unacked, consumers int, err error) {
	res, err := r.call(opCounts, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	return int(res.u64()), int(res.u64()), int(res.u64()), nil
}

// figuresTimeout bounds management's wait for a home's figures: a page of queues must not
// hang for a home that is paused or partitioned (it shows the queue as down instead).
const figuresTimeout = 2 * time.Second

// Figures asks the home for the queue's counts and counters (management).
func (r *Ref) Figures() (queue.Figures, error) {
	res, err := r.callFor(opFigures, nil, min(figuresTimeout, r.n.cfg.RequestTimeout))
	if err != nil {
		return queue.Figures{}, err
	}
	return readFigures(&res), nil
}

// Touch counts a use of the queue at the home (x-expires).
func (r *Ref) Touch() {
	if r.dropped.Load() || !r.peer().available(false) {
		return
	}
	r.open()
	r.n.send(r.peer().name, topicHome, func(b []byte) []byte {
		return putU64(append(b, opTouch), r.id)
	})
}

// cancelled ends a subscription the home cancelled (the queue was deleted) or lost (the
// link broke: nothing goes back then), and tells its consumer.
func (r *Ref) cancelled(s *sub, giveBack bool) { r.cancelledTo(s, giveBack, nil) }

// cancelledTo is cancelled for a consumer that may move to another Ref (to not nil).
func (r *Ref) cancelledTo(s *sub, giveBack bool, to queue.Ref) {
	r.mu.Lock()
	if s.gone {
		r.mu.Unlock()
		return
	}
	s.gone = true
	// A subscription not yet accepted fails in Subscribe instead; one waiting for a new
	// leader (orphan) was accepted once: its consumer is told.
	notify := s.active || s.orphan
	if r.subs[s.c] == s {
		delete(r.subs, s.c)
	}
	buf := s.buf
	s.buf = nil
	r.mu.Unlock()
	p := s.p
	p.mu.Lock()
	delete(p.subs, s.id)
	p.mu.Unlock()
	if giveBack && len(buf) > 0 {
		p.giveBack(r.id, entryIDs(buf))
	}
	if notify {
		queue.MoveOrCancel(s.c, r, to)
	}
}

// drop ends the ref: its queue is gone here, or (to not nil) reached through to from now on
// (this node leads it). Consumers are cancelled or move to to (queue.MoveOrCancel), the home
// forgets the ref.
func (r *Ref) drop(to queue.Ref) {
	if r.dropped.Swap(true) {
		return
	}
	r.mu.Lock()
	subs := make([]*sub, 0, len(r.subs))
	for _, s := range r.subs {
		subs = append(subs, s)
	}
	r.mu.Unlock()
	for _, s := range subs {
		r.cancelledTo(s, true, to)
	}
	p := r.peer()
	p.mu.Lock()
	delete(p.refs, r.id)
	p.mu.Unlock()
	if r.openGen.Load() == p.gen.Load() {
		r.n.send(p.name, topicHome, func(b []byte) []byte { return putU64(append(b, opClose), r.id) })
	}
}

// failoverWait is how long a replicated queue's consumers wait for a leader after theirs was
// lost: past it they are cancelled (basic.cancel), as for a queue without a leader.
var failoverWait = 30 * time.Second

// lost handles a subscription whose home's link broke. A replicated queue's consumer waits
// for the next leader (the Ref subscribes it there: recover); any other is cancelled.
func (r *Ref) lost(s *sub) {
	if !r.replicated || r.dropped.Load() {
		r.cancelled(s, false)
		return
	}
	r.mu.Lock()
	if s.gone || !s.active || r.subs[s.c] != s {
		r.mu.Unlock()
		r.cancelled(s, false) // not yet accepted: its Subscribe fails
		return
	}
	r.orphanLocked(s)
	r.mu.Unlock()
	r.startRecover()
}

// moved handles opMoved: s's home no longer leads its replicated queue. The consumer waits for
// the leader as when the link is lost (this node may not know the new leader yet), unless it
// asked for x-cancel-on-ha-failover.
func (r *Ref) moved(s *sub) {
	if b, _ := s.spec.Args["x-cancel-on-ha-failover"].(bool); b || !r.replicated {
		r.cancelled(s, true)
		return
	}
	r.lost(s)
}

// orphanLocked ends s (its home is gone or replaced) and puts a subscription waiting for the
// leader in its place. What s held back goes with its home (the new leader has it).
func (r *Ref) orphanLocked(s *sub) *sub {
	s.gone = true
	s.buf = nil
	ns := &sub{r: r, p: r.peer(), id: r.n.nextID.Add(1), c: s.c, window: s.window, spec: s.spec, orphan: true, chanCredit: s.chanCredit}
	r.subs[s.c] = ns
	return ns
}

// Retarget points a replicated queue's Ref at its new leader (vhost.Remote): new requests and
// publishes go there, settlements of what the old leader delivered are dropped (the new leader
// delivers those messages again, redelivered), and each consumer subscribes there again
// without its client noticing, unless it asked for x-cancel-on-ha-failover, which cancels it
// (basic.cancel) as RabbitMQ does for a mirrored queue's failover.
func (n *Node) Retarget(qr queue.Ref, home string) {
	r, ok := qr.(*Ref)
	if !ok || r.dropped.Load() {
		return
	}
	np := n.peer(home)
	r.openMu.Lock()
	old := r.pp.Load()
	if old == np {
		r.openMu.Unlock()
		return
	}
	r.mu.Lock()
	r.pp.Store(np)
	r.openGen.Store(0)
	r.inc.Add(1)
	var olds []*sub
	var cancel []*sub
	for _, s := range r.subs {
		if s.gone || s.orphan || !s.active {
			if s.orphan {
				s.p = np
			}
			continue
		}
		olds = append(olds, s)
		ns := r.orphanLocked(s)
		if b, _ := s.spec.Args["x-cancel-on-ha-failover"].(bool); b {
			cancel = append(cancel, ns)
		}
	}
	r.mu.Unlock()
	r.openMu.Unlock()
	old.mu.Lock()
	delete(old.refs, r.id)
	for _, s := range olds {
		delete(old.subs, s.id)
	}
	old.mu.Unlock()
	np.mu.Lock()
	np.refs[r.id] = r
	np.mu.Unlock()
	for _, s := range olds {
		r.sendCancelTo(old, s.id)
	}
	for _, s := range cancel {
		r.cancelOrphan(s)
	}
	r.startRecover()
}

// Adopt takes a consumer moving here from this node's former part in the queue (it led it):
// it waits for the leader as a consumer whose leader was lost does, and subscribes there as
// soon as the leader answers (queue.Mover).
func (r *Ref) Adopt(c queue.Consumer, spec queue.Subscription) {
	spec.Added = nil
	r.mu.Lock()
	if r.dropped.Load() {
		r.mu.Unlock()
		c.Cancelled(r)
		return
	}
	window := spec.NoAck || (spec.Prefetch == 0 && spec.ChannelPrefetch == 0)
	r.subs[c] = &sub{r: r, p: r.peer(), id: r.n.nextID.Add(1), c: c, window: window, spec: spec, orphan: true}
	r.mu.Unlock()
	r.startRecover()
}

// cancelOrphan cancels a consumer waiting for a leader (basic.cancel).
func (r *Ref) cancelOrphan(s *sub) {
	r.mu.Lock()
	if s.gone {
		r.mu.Unlock()
		return
	}
	s.gone = true
	if r.subs[s.c] == s {
		delete(r.subs, s.c)
	}
	r.mu.Unlock()
	s.c.Cancelled(r)
}

func (r *Ref) startRecover() {
	if r.recovering.Swap(true) {
		return
	}
	r.n.wg.Add(1)
	go r.recover()
}

// recover subscribes the consumers that lost their home at the queue's leader, as soon as it
// answers; those it refuses, and all of them after failoverWait without a leader, are
// cancelled.
func (r *Ref) recover() {
	defer r.n.wg.Done()
	deadline := time.Now().Add(failoverWait)
	for {
		r.mu.Lock()
		var orphans []*sub
		for _, s := range r.subs {
			if s.orphan && !s.gone {
				orphans = append(orphans, s)
			}
		}
		r.mu.Unlock()
		if len(orphans) == 0 {
			r.recovering.Store(false)
			r.mu.Lock()
			again := false
			for _, s := range r.subs {
				again = again || (s.orphan && !s.gone)
			}
			r.mu.Unlock()
			if again && !r.recovering.Swap(true) {
				continue
			}
			return
		}
		if r.dropped.Load() || time.Now().After(deadline) {
			for _, s := range orphans {
				r.cancelOrphan(s)
			}
			continue
		}
		p := r.peer()
		if p.available(true) {
			for _, s := range orphans {
				r.mu.Lock()
				ok := !s.gone && s.p == p
				r.mu.Unlock()
				if !ok {
					continue // retargeted meanwhile: the next round
				}
				err := r.subscribeAt(p, s)
				r.mu.Lock()
				if err == nil && s.active {
					s.orphan = false
				}
				r.mu.Unlock()
				var ae *amqp.Error
				if errors.As(err, &ae) && ae.Code != amqp.ResourceLocked {
					// (ResourceLocked: the node is not the leader yet, it has not applied the
					// placement; tried again.)
					r.n.log.Warn().Err(err).Str("queue", r.q.Name).Str("leader", p.name).Msg("consumer not taken by the queue's new leader: cancelled")
					r.cancelOrphan(s)
				}
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-r.n.stop:
			r.recovering.Store(false)
			return
		}
	}
}
