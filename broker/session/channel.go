package session

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
	"github.com/warrenmq/warren/broker/vhost"
)

// Channel is one AMQP channel. Fields above mu are touched only by the connection's reader
// goroutine; fields below mu are shared with delivering goroutines.
type Channel struct {
	id uint16
	c  *Conn

	closing bool // we sent channel.close and wait for close-ok

	// Pipelined queue.declare nowait (a cluster: each declare is a metadata commit, and a
	// client declaring many queues does not wait for each). The reader goroutine counts them;
	// any other method waits until they are committed, and the first failure closes the
	// channel then (nowait errors arrive late on RabbitMQ too).
	decls struct {
		n   int // in flight (reader goroutine only)
		wg  sync.WaitGroup
		sem chan struct{}
		mu  sync.Mutex
		err error
	}

	// content assembly (spec 4.2.6)
	pub struct {
		active    bool // basic.publish seen, waiting for header/body
		header    bool // header seen
		exchange  string
		key       string
		mandatory bool
		size      uint64
		data      []byte // properties then body, one allocation of the announced size
		propsLen  int
		inflight  int64 // a large body's size, counted in the memory budget until published
	}
	router vhost.Router

	confirm bool
	cf      confirms
	pw      *pubWait // reused for the next confirmed publish unless a queue still holds it

	tx        bool
	txPublish []txPublish
	txSettle  []settle

	consumers map[string]*consumer
	consMu    sync.Mutex // guards consumers' changes, for readers off the channel's goroutine (management)
	prefetch  uint16     // per-consumer prefetch for consumers created from now on
	lastQueue string     // the last queue declared on this channel (spec 1.7.2: empty name means it)
	replyTag  string     // direct reply-to consumer tag ("" when none)
	replyKey  string     // amq.rabbitmq.reply-to.<token> routing to this channel

	mu             sync.Mutex
	nextTag        uint64
	unacked        unackedList
	globalPrefetch uint32
	globalUnacked  uint32
	released       bool

	stats Stats // message counters for management
}

type txPublish struct {
	msg       *message.Message
	mandatory bool
}

// settle is a recorded ack/nack/reject inside a transaction.
type settle struct {
	entries  []unackedEntry
	requeue  bool
	retire   bool // ack or nack/reject without requeue
	rejected bool // nack/reject without requeue: dead-lettered
}

func newChannel(c *Conn, id uint16) *Channel {
	return &Channel{id: id, c: c, consumers: make(map[string]*consumer)}
}

// ID returns the channel number.
func (ch *Channel) ID() uint16 { return ch.id }

func (ch *Channel) handleFrame(f amqp.Frame) error {
	if ch.closing {
		return ch.handleClosingFrame(f)
	}
	var err error
	switch f.Type {
	case amqp.FrameMethod:
		if ch.pub.active {
			return publishErr(amqp.ConnErr(amqp.UnexpectedFrame, "expected content header for class 60, got non content header frame instead"))
		}
		err = ch.handleMethod(f.Payload)
	case amqp.FrameHeader:
		err = ch.handleHeader(f.Payload)
	case amqp.FrameBody:
		err = ch.handleBody(f.Payload)
	}
	if err == nil {
		return nil
	}
	ae, ok := err.(*amqp.Error)
	if !ok || ae.Scope == amqp.ScopeConnection {
		return err
	}
	ch.closeWithError(ae)
	return nil
}

// handleClosingFrame handles a frame on a channel we closed (spec 1.5.2.5: after sending
// channel.close, discard every frame but channel.close and close-ok). The channel ends with
// the client's close-ok. A channel.close means the client closed the channel at the same
// time as we did: it gets its close-ok, and the channel still waits for the close-ok to ours
// (RabbitMQ does the same; freeing the number now would make that close-ok a frame on an
// unopened channel, a connection error). channel.open is a 504 connection error, as RabbitMQ
// answers it on a channel still in use.
func (ch *Channel) handleClosingFrame(f amqp.Frame) error {
	if f.Type != amqp.FrameMethod || len(f.Payload) < 4 || f.Payload[0] != 0 || f.Payload[1] != 20 || f.Payload[2] != 0 {
		return nil
	}
	switch f.Payload[3] {
	case 10:
		return &amqp.Error{Code: amqp.ChannelError, Text: "CHANNEL_ERROR - second 'channel.open' seen", ClassID: 20, MethodID: 10, Scope: amqp.ScopeConnection}
	case 40:
		ch.c.send(ch.id, &amqp.ChannelCloseOk{})
	case 41:
		ch.c.dropChannel(ch.id)
	}
	return nil
}

// closeWithError sends channel.close for a soft error and releases the channel's resources.
func (ch *Channel) closeWithError(ae *amqp.Error) {
	ch.c.log.Debug().Uint16("channel", ch.id).Uint16("code", uint16(ae.Code)).Str("text", ae.Text).Msg("channel closed by server")
	ch.flushConfirms()
	ch.release()
	ch.closing = true
	ch.c.send(ch.id, &amqp.ChannelClose{ReplyCode: uint16(ae.Code), ReplyText: amqp.ReplyText(ae.Text), CauseClassID: ae.ClassID, CauseMethodID: ae.MethodID})
}

func (ch *Channel) handleMethod(payload []byte) error {
	m, err := ch.c.dec.Decode(payload)
	if err != nil {
		return err
	}
	if ch.decls.n > 0 && !ch.pipelined(m) {
		if err := ch.waitDeclares(); err != nil {
			return err
		}
	}
	err = ch.dispatch(m)
	if ae, ok := err.(*amqp.Error); ok && ae.ClassID == 0 {
		ae.ClassID, ae.MethodID = m.ClassID(), m.MethodID()
	}
	return err
}

func (ch *Channel) dispatch(m amqp.Method) error {
	c := ch.c
	vh := c.vh
	switch m := m.(type) {
	case *amqp.BasicPublish:
		if m.Immediate {
			return amqp.ConnErr(amqp.NotImplemented, "immediate=true")
		}
		if c.env.Alarm != nil {
			c.waitAlarm()
		}
		if c.unconfirmed.Load() > int64(c.env.MaxUnconfirmedBytes) {
			c.waitUnconfirmed()
		}
		ch.pub.active = true
		ch.pub.header = false
		ch.pub.exchange = m.Exchange
		ch.pub.key = m.RoutingKey
		ch.pub.mandatory = m.Mandatory
		return nil
	case *amqp.BasicAck:
		return ch.ack(m.DeliveryTag, m.Multiple)
	case *amqp.BasicNack:
		return ch.reject(m.DeliveryTag, m.Multiple, m.Requeue)
	case *amqp.BasicReject:
		return ch.reject(m.DeliveryTag, false, m.Requeue)
	case *amqp.ChannelClose:
		ch.flushConfirms()
		ch.release()
		c.dropChannel(ch.id)
		c.send(ch.id, &amqp.ChannelCloseOk{})
		return nil
	case *amqp.ChannelCloseOk:
		return nil
	case *amqp.ChannelOpen:
		return amqp.ConnErr(amqp.ChannelError, "second 'channel.open' seen")
	case *amqp.ChannelFlow:
		if !m.Active {
			return amqp.ConnErr(amqp.NotImplemented, "active=false")
		}
		c.send(ch.id, &amqp.ChannelFlowOk{Active: true})
		return nil
	case *amqp.ChannelFlowOk:
		return nil

	case *amqp.ExchangeDeclare:
		if err := checkName(m.Exchange, "exchange"); err != nil {
			return err
		}
		if !m.Passive {
			if err := ch.authorize(PermConfigure, KindExchange, m.Exchange, ""); err != nil {
				return err
			}
		}
		_, err := vh.DeclareExchange(vhost.ExchangeDecl{Name: m.Exchange, Type: m.Type, Passive: m.Passive, Durable: m.Durable, AutoDelete: m.AutoDelete, Internal: m.Internal, Args: m.Arguments})
		if err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.ExchangeDeclareOk{})
		}
		return nil
	case *amqp.ExchangeDelete:
		if err := ch.authorize(PermConfigure, KindExchange, m.Exchange, ""); err != nil {
			return err
		}
		if err := vh.DeleteExchange(m.Exchange, m.IfUnused); err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.ExchangeDeleteOk{})
		}
		return nil
	case *amqp.ExchangeBind:
		if err := ch.authorize(PermWrite, KindExchange, m.Destination, ""); err != nil {
			return err
		}
		if err := ch.authorize(PermRead, KindExchange, m.Source, m.RoutingKey); err != nil {
			return err
		}
		if err := vh.BindExchange(m.Destination, m.Source, m.RoutingKey, m.Arguments); err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.ExchangeBindOk{})
		}
		return nil
	case *amqp.ExchangeUnbind:
		if err := ch.authorize(PermWrite, KindExchange, m.Destination, ""); err != nil {
			return err
		}
		if err := ch.authorize(PermRead, KindExchange, m.Source, m.RoutingKey); err != nil {
			return err
		}
		if err := vh.UnbindExchange(m.Destination, m.Source, m.RoutingKey, m.Arguments); err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.ExchangeUnbindOk{})
		}
		return nil

	case *amqp.QueueDeclare:
		if err := checkName(m.Queue, "queue"); err != nil {
			return err
		}
		name := m.Queue
		if name == "" && m.Passive {
			name = ch.lastQueue
		}
		if name == ReplyToQueue && m.Passive {
			if !m.NoWait {
				c.send(ch.id, &amqp.QueueDeclareOk{Queue: name})
			}
			return nil
		}
		serverNamed := false
		if name == "" && !m.Passive {
			// As RabbitMQ: the configure permission applies to the generated name.
			name, serverNamed = vhost.ServerQueueName(), true
		}
		if !m.Passive {
			if err := ch.authorize(PermConfigure, KindQueue, name, ""); err != nil {
				return err
			}
		}
		decl := vhost.QueueDecl{Name: name, Passive: m.Passive, Durable: m.Durable, Exclusive: m.Exclusive, AutoDelete: m.AutoDelete, Args: m.Arguments, Owner: c, ServerNamed: serverNamed}
		if ch.pipelined(m) {
			ch.declareLater(vh, decl)
			ch.lastQueue = name
			return nil
		}
		for attempt := 0; ; attempt++ {
			q, created, err := vh.DeclareQueue(decl)
			if err != nil {
				return err
			}
			if created && m.Exclusive {
				c.exclusive = append(c.exclusive, q)
			}
			ch.lastQueue = q.Name()
			if !created {
				q.Touch() // a redeclare counts as use for x-expires
			}
			if m.NoWait {
				return nil
			}
			ready, _, consumers, err := q.Counts()
			if err != nil && !m.Passive && !created && attempt == 0 && isNoQueue(err) {
				// In a cluster: its node deleted it (auto-delete, x-expires) as we declared
				// it, before this node applied the delete. Catch up and declare it again:
				// RabbitMQ creates a queue whose deletion raced its declare.
				vh.CatchUp()
				continue
			}
			if err != nil {
				return err
			}
			c.send(ch.id, &amqp.QueueDeclareOk{Queue: q.Name(), MessageCount: uint32(ready), ConsumerCount: uint32(consumers)})
			return nil
		}
	case *amqp.QueueBind:
		if err := ch.authorize(PermWrite, KindQueue, ch.queueName(m.Queue), ""); err != nil {
			return err
		}
		if err := ch.authorize(PermRead, KindExchange, m.Exchange, ch.routingKeyDefault(m.RoutingKey, m.Queue)); err != nil {
			return err
		}
		if err := vh.BindQueue(ch.queueName(m.Queue), m.Exchange, ch.routingKeyDefault(m.RoutingKey, m.Queue), m.Arguments, c); err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.QueueBindOk{})
		}
		return nil
	case *amqp.QueueUnbind:
		if err := ch.authorize(PermWrite, KindQueue, ch.queueName(m.Queue), ""); err != nil {
			return err
		}
		if err := ch.authorize(PermRead, KindExchange, m.Exchange, m.RoutingKey); err != nil {
			return err
		}
		if err := vh.UnbindQueue(ch.queueName(m.Queue), m.Exchange, m.RoutingKey, m.Arguments); err != nil {
			return err
		}
		c.send(ch.id, &amqp.QueueUnbindOk{})
		return nil
	case *amqp.QueuePurge:
		if err := ch.authorize(PermRead, KindQueue, ch.queueName(m.Queue), ""); err != nil {
			return err
		}
		q, err := vh.LookupQueue(ch.queueName(m.Queue), c)
		if err != nil {
			return err
		}
		if q.IsStream() {
			return q.StreamUnsupported("queue.purge")
		}
		n, err := q.Purge()
		if err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.QueuePurgeOk{MessageCount: uint32(n)})
		}
		return nil
	case *amqp.QueueDelete:
		if err := ch.authorize(PermConfigure, KindQueue, ch.queueName(m.Queue), ""); err != nil {
			return err
		}
		n, err := vh.DeleteQueue(ch.queueName(m.Queue), m.IfUnused, m.IfEmpty, c)
		if err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.QueueDeleteOk{MessageCount: uint32(n)})
		}
		return nil

	case *amqp.BasicQos:
		if m.PrefetchSize != 0 {
			return amqp.ConnErr(amqp.NotImplemented, "prefetch_size!=0 (%d)", m.PrefetchSize)
		}
		ch.mu.Lock()
		if m.Global {
			ch.globalPrefetch = uint32(m.PrefetchCount)
		} else {
			// As RabbitMQ: a per-consumer qos also lifts a channel-wide limit.
			ch.prefetch = m.PrefetchCount
			ch.globalPrefetch = 0
		}
		global := ch.globalPrefetch
		ch.mu.Unlock()
		c.send(ch.id, &amqp.BasicQosOk{})
		ch.channelPrefetchChanged(global)
		ch.kickConsumers()
		return nil
	case *amqp.BasicConsume:
		return ch.consume(m)
	case *amqp.BasicCancel:
		if ch.replyTag != "" && m.ConsumerTag == ch.replyTag {
			ch.cancelReplyTo()
		}
		if cs := ch.consumers[m.ConsumerTag]; cs != nil {
			ch.consMu.Lock()
			delete(ch.consumers, m.ConsumerTag)
			ch.consMu.Unlock()
			cs.unsubscribe()
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.BasicCancelOk{ConsumerTag: m.ConsumerTag})
		}
		return nil
	case *amqp.BasicGet:
		return ch.get(m)
	case *amqp.BasicRecover:
		if !m.Requeue {
			return amqp.ConnErr(amqp.NotImplemented, "requeue=false")
		}
		ch.requeueAll()
		c.send(ch.id, &amqp.BasicRecoverOk{})
		return nil
	case *amqp.BasicRecoverAsync:
		if !m.Requeue {
			return amqp.ConnErr(amqp.NotImplemented, "requeue=false")
		}
		ch.requeueAll()
		return nil

	case *amqp.ConfirmSelect:
		if ch.tx {
			return amqp.ChannelErr(amqp.PreconditionFailed, "cannot switch from tx to confirm mode")
		}
		ch.mu.Lock() // Info reads confirm and tx under ch.mu
		ch.confirm = true
		ch.mu.Unlock()
		if !m.Nowait {
			c.send(ch.id, &amqp.ConfirmSelectOk{})
		}
		return nil
	case *amqp.TxSelect:
		if ch.confirm {
			return amqp.ChannelErr(amqp.PreconditionFailed, "cannot switch from confirm to tx mode")
		}
		ch.mu.Lock()
		ch.tx = true
		ch.mu.Unlock()
		c.send(ch.id, &amqp.TxSelectOk{})
		return nil
	case *amqp.TxCommit:
		if !ch.tx {
			return amqp.ChannelErr(amqp.PreconditionFailed, "channel is not transactional")
		}
		if err := ch.commit(); err != nil {
			return err
		}
		c.send(ch.id, &amqp.TxCommitOk{})
		return nil
	case *amqp.TxRollback:
		if !ch.tx {
			return amqp.ChannelErr(amqp.PreconditionFailed, "channel is not transactional")
		}
		ch.rollback()
		c.send(ch.id, &amqp.TxRollbackOk{})
		return nil
	}
	return amqp.ConnErr(amqp.CommandInvalid, "unexpected method '%s' on a channel", m.Name())
}

func intValue(v any) (int64, bool) { return amqp.IntValue(v) }

// authorize asks the broker whether this connection's user may do perm on the resource.
func (ch *Channel) authorize(perm Perm, kind ResourceKind, name, routingKey string) error {
	if ch.c.env.Authorize == nil {
		return nil
	}
	return ch.c.env.Authorize(ch.c.user, ch.c.vh.Name, perm, kind, name, routingKey)
}

// checkName enforces the spec's 255-byte limit is implied by shortstr; RabbitMQ also refuses
// names that are not valid UTF-8... we only check the length rule on declares.
func checkName(name, kind string) error {
	if len(name) > 255 {
		return amqp.ChannelErr(amqp.PreconditionFailed, "%s name too long", kind)
	}
	return nil
}

// queueName resolves the empty queue name to the channel's last declared queue (spec 1.7.2.3).
func (ch *Channel) queueName(name string) string {
	if name == "" {
		return ch.lastQueue
	}
	return name
}

// routingKeyDefault: in queue.bind, an empty queue and key mean the last queue's name as key.
func (ch *Channel) routingKeyDefault(key, queueName string) string {
	if key == "" && queueName == "" {
		return ch.lastQueue
	}
	return key
}

// ---- publishing

func (ch *Channel) handleHeader(payload []byte) error {
	if !ch.pub.active || ch.pub.header {
		return amqp.ConnErr(amqp.UnexpectedFrame, "expected method frame, got non method frame instead")
	}
	h, err := amqp.ParseContentHeader(payload)
	if err != nil {
		return publishErr(err)
	}
	if h.ClassID != amqp.ClassBasic {
		return publishErr(amqp.ConnErr(amqp.UnexpectedFrame, "expected content header for class %d, got one for class %d instead", amqp.ClassBasic, h.ClassID))
	}
	if h.BodySize > uint64(ch.c.env.MaxMessageSize) {
		ch.pub.active = false
		return amqp.ChannelErr(amqp.PreconditionFailed, "message size %d is larger than configured max size %d", h.BodySize, ch.c.env.MaxMessageSize)
	}
	ch.pub.header = true
	ch.pub.size = h.BodySize
	ch.pub.propsLen = len(h.RawProps)
	// One buffer of the announced size, never grown: a large one only once its first body
	// frame arrives (a header alone costs nothing), and counted in the node's memory budget
	// until the message is published.
	capacity := len(h.RawProps)
	if h.BodySize < queue.LargeMessage {
		capacity += int(h.BodySize)
	} else if b := ch.c.env.Budget; b != nil {
		ch.pub.inflight = int64(h.BodySize)
		b.AddInflight(ch.pub.inflight)
	}
	ch.pub.data = make([]byte, len(h.RawProps), capacity)
	copy(ch.pub.data, h.RawProps)
	if h.BodySize == 0 {
		return publishErr(ch.publishAssembled())
	}
	return nil
}

func (ch *Channel) handleBody(payload []byte) error {
	if !ch.pub.active {
		return amqp.ConnErr(amqp.UnexpectedFrame, "expected method frame, got non method frame instead")
	}
	if !ch.pub.header {
		return publishErr(amqp.ConnErr(amqp.UnexpectedFrame, "expected content header for class 60, got non content header frame instead"))
	}
	have := uint64(len(ch.pub.data) - ch.pub.propsLen)
	if have+uint64(len(payload)) > ch.pub.size {
		return amqp.ConnErr(amqp.FrameError, "body frames exceed the content header's body size %d", ch.pub.size)
	}
	if need := ch.pub.propsLen + int(ch.pub.size); cap(ch.pub.data) < need {
		data := make([]byte, len(ch.pub.data), need) // a large body's buffer (handleHeader)
		copy(data, ch.pub.data)
		ch.pub.data = data
	}
	ch.pub.data = append(ch.pub.data, payload...)
	if have+uint64(len(payload)) == ch.pub.size {
		return publishErr(ch.publishAssembled())
	}
	return nil
}

// publishErr names basic.publish as the method a content error belongs to.
func publishErr(err error) error {
	if ae, ok := err.(*amqp.Error); ok {
		ae.ClassID, ae.MethodID = amqp.ClassBasic, 40
	}
	return err
}

// dropInflight releases a large body's place in the memory budget (published, or abandoned).
func (ch *Channel) dropInflight() {
	if ch.pub.inflight != 0 {
		ch.c.env.Budget.AddInflight(-ch.pub.inflight)
		ch.pub.inflight = 0
	}
}

func (ch *Channel) publishAssembled() error {
	p := &ch.pub
	p.active, p.header = false, false
	data := p.data
	p.data = nil
	ch.dropInflight() // from here the message counts where it goes (queues, or nowhere)
	msg, err := message.New(p.exchange, p.key, data[:p.propsLen:p.propsLen], data[p.propsLen:])
	if err != nil {
		return err
	}
	if ch.c.env.Authorize != nil {
		if err := ch.authorize(PermWrite, KindExchange, p.exchange, p.key); err != nil {
			return err
		}
	}
	if msg.Props.UserID != nil && string(msg.Props.UserID) != ch.c.user {
		return amqp.ChannelErr(amqp.PreconditionFailed, "user_id property set to '%s' but authenticated user was '%s'", msg.Props.UserID, ch.c.user)
	}
	if _, _, err := msg.ExpirationMillis(); err != nil {
		return err
	}
	if msg.Props.Flags&amqp.FlagReplyTo != 0 && string(replyToOf(msg)) == ReplyToQueue {
		if msg, err = ch.rewriteReplyTo(msg); err != nil {
			return err
		}
	}
	ch.countPublish()
	if ch.tx {
		// Check the exchange now, as RabbitMQ does, so the error comes with the publish.
		ch.router.NoDedup = true
		err := ch.c.vh.Route(&ch.router, msg.Exchange, msg.RoutingKey, msg)
		ch.router.NoDedup = false
		clear(ch.router.Queues)
		if err != nil {
			return err
		}
		ch.txPublish = append(ch.txPublish, txPublish{msg: msg, mandatory: p.mandatory})
		return nil
	}
	var seq uint64
	if ch.confirm {
		seq = ch.cf.next()
		ch.markDirty()
		if testHookSeq != nil {
			testHookSeq(seq)
		}
	}
	if err := ch.route(msg, p.mandatory, seq); err != nil {
		return err // never confirmed: the channel closes
	}
	if seq != 0 {
		ch.cf.routed.Store(seq) // answered from now on, unless route registered it waiting or nacked
	}
	return nil
}

// route publishes msg through the vhost's publish path (vhost.Publish), or straight to a
// direct reply-to consumer, and returns it (mandatory) when it reached no queue. In confirm
// mode (seq > 0), a publish that some queue answers later (a durable write) is confirmed when
// every queue has answered; one that a queue refused (x-overflow reject-publish) is nacked.
func (ch *Channel) route(msg *message.Message, mandatory bool, seq uint64) error {
	if isReplyTo(msg.Exchange, msg.RoutingKey) {
		if !ch.deliverReply(msg.RoutingKey, msg) && mandatory {
			ch.sendReturn(msg)
		}
		return nil
	}
	var w *pubWait
	var vw *vhost.Wait
	if seq != 0 {
		if w = ch.pw; w == nil {
			w = &pubWait{ch: ch}
			ch.pw = w
		}
		w.Reset(w)
		vw = &w.Wait
	}
	ch.router.Mandatory = mandatory
	out, err := ch.c.vh.Publish(&ch.router, msg, vw)
	if err != nil {
		return err
	}
	if out.Duplicate {
		return nil // the exchange let this key through before: dropped, and confirmed
	}
	if out.Pending {
		// Queues hold w until they answer: registered as waiting before routed passes seq,
		// and before the hold that keeps w from being answered is released.
		w.seq, w.size = seq, int64(out.Msg.Size())
		ch.c.unconfirmed.Add(w.size)
		ch.cf.wait(seq)
		ch.pw = nil
		w.Release()
	} else if out.Rejected && seq != 0 {
		ch.cf.nack(seq)
	}
	ch.countPublished(out, mandatory)
	return nil
}

// countPublished counts a publish by what became of it, and returns it to the publisher
// (mandatory) when it reached no queue.
func (ch *Channel) countPublished(out vhost.Published, mandatory bool) {
	switch {
	case out.Routed:
		ch.countRouted()
	case mandatory:
		ch.sendReturn(out.Msg)
	default:
		ch.count(StatDropUnroutable, 1)
	}
}

// replyToOf returns the raw reply-to property (only called when its flag is set).
func replyToOf(m *message.Message) []byte {
	p, err := amqp.DecodeProperties(m.RawProps)
	if err != nil {
		return nil
	}
	return []byte(p.ReplyTo)
}

// sendReturn sends basic.return 312 NO_ROUTE with the message.
func (ch *Channel) sendReturn(msg *message.Message) {
	ch.count(StatReturnUnroutable, 1)
	c := ch.c
	c.outMu.Lock()
	c.out = amqp.AppendMethodFrame(c.out, ch.id, &amqp.BasicReturn{ReplyCode: uint16(amqp.NoRoute), ReplyText: "NO_ROUTE", Exchange: msg.Exchange, RoutingKey: msg.RoutingKey})
	c.appendContentLocked(ch.id, msg.RawProps, msg.Body)
	c.outMu.Unlock()
	c.kick()
}

func (ch *Channel) markDirty() {
	for _, d := range ch.c.dirty {
		if d == ch {
			return
		}
	}
	ch.c.dirty = append(ch.c.dirty, ch)
}

// ---- transactions

// txWait waits for the queues of a transaction's publishes (vhost.Wait).
type txWait struct {
	vhost.Wait
	done   chan struct{}
	failed bool
}

// Answered: every queue answered; a refusal by overflow does not fail a transaction.
func (t *txWait) Answered(_, failed bool) {
	t.failed = failed
	close(t.done)
}

func (ch *Channel) commit() error {
	pubs := ch.txPublish
	ch.txPublish = nil
	// tx.commit-ok is sent once every persistent message of the transaction is on disk.
	w := &txWait{done: make(chan struct{})}
	w.Reset(w)
	for _, p := range pubs {
		if isReplyTo(p.msg.Exchange, p.msg.RoutingKey) {
			if !ch.deliverReply(p.msg.RoutingKey, p.msg) && p.mandatory {
				ch.sendReturn(p.msg)
			}
			continue
		}
		ch.router.Mandatory = p.mandatory
		out, err := ch.c.vh.Publish(&ch.router, p.msg, &w.Wait)
		if err != nil {
			return err
		}
		if !out.Duplicate {
			ch.countPublished(out, p.mandatory)
		}
	}
	w.Release()
	<-w.done
	if w.failed {
		return amqp.ConnErr(amqp.InternalError, "could not write the transaction's messages to disk")
	}
	settles := ch.txSettle
	ch.txSettle = nil
	for _, s := range settles {
		if s.rejected {
			ch.rejectEntries(s.entries)
		} else if s.retire {
			ch.retire(s.entries)
		} else {
			ch.requeueEntries(s.entries)
		}
	}
	return nil
}

func (ch *Channel) rollback() {
	ch.txPublish = nil
	settles := ch.txSettle
	ch.txSettle = nil
	// Acked-in-transaction messages become unacked again, at their tag positions.
	ch.mu.Lock()
	for _, s := range settles {
		for _, e := range s.entries {
			ch.unacked.insert(e)
			if e.cs != nil {
				e.cs.unacked++
			}
			ch.globalUnacked++
		}
	}
	ch.mu.Unlock()
}

// ---- consuming

func newTag(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func (ch *Channel) consume(m *amqp.BasicConsume) error {
	c := ch.c
	if m.Queue == ReplyToQueue {
		return ch.consumeReplyTo(m)
	}
	if err := ch.authorize(PermRead, KindQueue, ch.queueName(m.Queue), ""); err != nil {
		return err
	}
	q, err := c.vh.LookupQueue(ch.queueName(m.Queue), c)
	if err != nil {
		return err
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = newTag("amq.ctag-")
	}
	if ch.consumers[tag] != nil {
		return amqp.ConnErr(amqp.NotAllowed, "attempt to reuse consumer tag '%s'", tag)
	}
	cs := &consumer{tag: tag, ch: ch, q: q, noAck: m.NoAck, prefetch: uint32(ch.prefetch), exclusive: m.Exclusive}
	sub := queue.Subscription{Exclusive: m.Exclusive, Prefetch: cs.prefetch, NoAck: m.NoAck, Args: m.Arguments}
	if !m.NoWait {
		sub.Added = func() { c.send(ch.id, &amqp.BasicConsumeOk{ConsumerTag: tag}) }
	}
	ch.mu.Lock()
	sub.ChannelPrefetch = ch.globalPrefetch
	ch.mu.Unlock()
	if q.IsStream() {
		// A stream checks its consumer's arguments itself (x-priority is refused there).
		sub.GlobalQos = sub.ChannelPrefetch > 0
	} else if v, ok := m.Arguments["x-priority"]; ok {
		n, ok := intValue(v)
		if !ok {
			return amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg 'x-priority' for consumer: {unacceptable_type,%T}", v)
		}
		sub.Priority = n
	}
	cs.spec = sub
	cs.spec.Added = nil
	ch.consMu.Lock()
	ch.consumers[tag] = cs
	ch.consMu.Unlock()
	if err := q.Subscribe(cs, sub); err != nil {
		ch.consMu.Lock()
		delete(ch.consumers, tag)
		ch.consMu.Unlock()
		return err
	}
	return nil
}

func (ch *Channel) get(m *amqp.BasicGet) error {
	c := ch.c
	if err := ch.authorize(PermRead, KindQueue, ch.queueName(m.Queue), ""); err != nil {
		return err
	}
	q, err := c.vh.LookupQueue(ch.queueName(m.Queue), c)
	if err != nil {
		return err
	}
	if q.IsStream() {
		return q.StreamUnsupported("basic.get")
	}
	e, remaining, ok, err := q.Get(m.NoAck) // a no-ack get is settled as it is taken
	if err != nil {
		return err
	}
	if !ok {
		c.send(ch.id, &amqp.BasicGetEmpty{})
		ch.count(StatGetEmpty, 1)
		return nil
	}
	if m.NoAck {
		ch.count(StatGetNoAck, 1)
	} else {
		ch.count(StatGet, 1)
	}
	if e.Redelivered {
		ch.count(StatRedeliver, 1)
	}
	props := q.DeliveryProps(e) // takes no lock; a remote queue may need none of ours either
	ch.mu.Lock()
	ch.nextTag++
	tag := ch.nextTag
	c.outMu.Lock()
	c.out = amqp.AppendBasicGetOk(c.out, ch.id, tag, e.Redelivered, e.Msg.Exchange, e.Msg.RoutingKey, uint32(remaining))
	c.appendContentLocked(ch.id, props, e.Msg.Body)
	c.outMu.Unlock()
	if !m.NoAck {
		ch.unacked.push(unackedEntry{tag: tag, q: q, e: e})
		ch.globalUnacked++ // RabbitMQ counts basic.get messages against the channel limit
	}
	ch.mu.Unlock()
	c.kick()
	return nil
}

// channelPrefetchChanged tells the queues led on other nodes of the channel's new channel-wide
// prefetch: what they send ahead to a consumer without a prefetch of its own follows it.
func (ch *Channel) channelPrefetchChanged(n uint32) {
	for _, cs := range ch.consumers {
		if cp, ok := cs.ref().(channelPrefetcher); ok {
			cp.ChannelPrefetch(cs, n)
		}
	}
}

// channelPrefetcher is a queue led on another node (remote.Ref).
type channelPrefetcher interface {
	ChannelPrefetch(c queue.Consumer, n uint32)
}

// kickConsumers re-runs dispatch for every queue this channel consumes from (credit changed).
func (ch *Channel) kickConsumers() {
	seen := make(map[queue.Ref]bool, len(ch.consumers))
	for _, cs := range ch.consumers {
		if q := cs.ref(); !seen[q] {
			seen[q] = true
			q.Kick()
		}
	}
}

// ---- acknowledgements

func (ch *Channel) unknownTag(tag uint64) error {
	return amqp.ChannelErr(amqp.PreconditionFailed, "unknown delivery tag %d", tag)
}

// take removes the entries acknowledged by (tag, multiple) from the unacked list.
func (ch *Channel) take(tag uint64, multiple bool) ([]unackedEntry, bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var es []unackedEntry
	if multiple {
		if tag == 0 {
			es = ch.unacked.takeAll()
		} else {
			if !ch.unacked.has(tag) {
				return nil, false
			}
			es = ch.unacked.takeUpTo(tag)
		}
	} else {
		e, ok := ch.unacked.take(tag)
		if !ok {
			return nil, false
		}
		es = []unackedEntry{e}
	}
	for _, e := range es {
		if e.cs != nil {
			e.cs.unacked--
		}
		ch.globalUnacked--
	}
	return es, true
}

func (ch *Channel) ack(tag uint64, multiple bool) error {
	es, ok := ch.take(tag, multiple)
	if !ok {
		return ch.unknownTag(tag)
	}
	ch.count(StatAck, uint64(len(es)))
	if ch.tx {
		ch.txSettle = append(ch.txSettle, settle{entries: es, retire: true})
		return nil
	}
	ch.retire(es)
	return nil
}

func (ch *Channel) reject(tag uint64, multiple, requeue bool) error {
	es, ok := ch.take(tag, multiple)
	if !ok {
		return ch.unknownTag(tag)
	}
	if err := ch.streamSettleErr(es); err != nil {
		return err
	}
	if ch.tx {
		ch.txSettle = append(ch.txSettle, settle{entries: es, retire: !requeue, rejected: !requeue, requeue: requeue})
		return nil
	}
	if requeue {
		ch.requeueEntries(es)
	} else {
		ch.rejectEntries(es)
	}
	return nil
}

// rejectEntries settles deliveries rejected without requeue (dead-lettered by their queues).
func (ch *Channel) rejectEntries(es []unackedEntry) { ch.settle(es, queue.SettleReject) }

// retire tells each queue how many of its deliveries were settled (it dispatches more), and
// kicks the queues of this channel's consumers when channel-wide credit was released.
func (ch *Channel) retire(es []unackedEntry) { ch.settle(es, queue.SettleAck) }

func (ch *Channel) requeueEntries(es []unackedEntry) { ch.settle(es, queue.SettleRequeue) }

// settle hands each queue its entries of es, in order, settled as how; then kicks the queues
// that channel-wide credit may have held back.
func (ch *Channel) settle(es []unackedEntry, how queue.Settlement) {
	forEachQueue(es, func(q queue.Ref, group []unackedEntry) {
		entries := make([]queue.Entry, len(group))
		for i, e := range group {
			entries[i] = e.e
		}
		q.Settle(entries, how)
	})
	ch.kickStarved(es)
	ch.kickMoved(es)
}

// kickMoved kicks the Ref a moved consumer now consumes through when entries it took through
// the one before were settled: the credit they free is that consumer's, and the settle went to
// the old Ref (a quorum queue's consumer held its prefetch of deliveries refused at the new
// leader for ever: warren-chaos seed 120007).
func (ch *Channel) kickMoved(es []unackedEntry) {
	var kicked queue.Ref
	for _, e := range es {
		if e.cs == nil || !e.cs.moved.Load() {
			continue
		}
		if q := e.cs.ref(); q != e.q && q != kicked {
			kicked = q
			q.Kick()
		}
	}
}

// kickStarved kicks queues of consumers on this channel other than those already handled, when
// a channel-wide prefetch limit may have held them back.
func (ch *Channel) kickStarved(es []unackedEntry) {
	ch.mu.Lock()
	global := ch.globalPrefetch
	ch.mu.Unlock()
	if global == 0 || len(ch.consumers) == 0 {
		return
	}
	handled := make(map[queue.Ref]bool)
	for _, e := range es {
		handled[e.q] = true
	}
	for _, cs := range ch.consumers {
		if q := cs.ref(); !handled[q] {
			handled[q] = true
			q.Kick()
		}
	}
}

// forEachQueue groups entries by queue, keeping their order within each queue.
func forEachQueue(es []unackedEntry, f func(q queue.Ref, group []unackedEntry)) {
	if len(es) == 0 {
		return
	}
	allSame := true
	for _, e := range es[1:] {
		if e.q != es[0].q {
			allSame = false
			break
		}
	}
	if allSame {
		f(es[0].q, es)
		return
	}
	var queues []queue.Ref
	for _, e := range es {
		seen := false
		for _, q := range queues {
			if q == e.q {
				seen = true
				break
			}
		}
		if !seen {
			queues = append(queues, e.q)
		}
	}
	group := make([]unackedEntry, 0, len(es))
	for _, q := range queues {
		group = group[:0]
		for _, e := range es {
			if e.q == q {
				group = append(group, e)
			}
		}
		f(q, group)
	}
}

func (ch *Channel) requeueAll() {
	ch.mu.Lock()
	es := ch.unacked.takeAll()
	for _, e := range es {
		if e.cs != nil {
			e.cs.unacked--
		}
		ch.globalUnacked--
	}
	ch.mu.Unlock()
	ch.requeueEntries(es)
}

// release cancels the channel's consumers and requeues its unacked messages (channel or
// connection closed). Idempotent.
//
// The unacked messages go back first, while this channel's consumers (marked released) refuse
// them: a consumer that takes over (single active consumer) then sees them in their original
// positions, before newer messages, as in RabbitMQ.
func (ch *Channel) release() {
	ch.dropInflight()
	ch.pub.data = nil
	ch.cancelReplyTo()
	ch.cf.mu.Lock()
	ch.cf.closed = true // confirms still waiting for disk are dropped, as RabbitMQ does
	ch.cf.mu.Unlock()
	ch.mu.Lock()
	if ch.released {
		ch.mu.Unlock()
		ch.removeConsumers()
		return
	}
	ch.released = true
	es := ch.unacked.takeAll()
	ch.globalUnacked = 0
	ch.mu.Unlock()
	// Acks held in an open transaction were never committed: those messages come back too.
	for _, s := range ch.txSettle {
		es = append(es, s.entries...)
	}
	ch.txSettle = nil
	ch.txPublish = nil
	sort.Slice(es, func(i, j int) bool { return es[i].tag < es[j].tag })
	ch.settle(es, queue.SettleRequeueClosing)
	ch.removeConsumers()
}

func (ch *Channel) removeConsumers() {
	ch.consMu.Lock()
	cs := make([]*consumer, 0, len(ch.consumers))
	for tag, c := range ch.consumers {
		delete(ch.consumers, tag)
		cs = append(cs, c)
	}
	ch.consMu.Unlock()
	for _, c := range cs {
		c.unsubscribe()
	}
}

// isNoQueue reports whether err is a 404 for a queue that does not exist (not one whose node
// is down).
func isNoQueue(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound && strings.Contains(ae.Text, "- no queue ")
}

// pipelined reports whether m is a queue.declare that need not wait for the ones before it: a
// nowait declare of a named, shared queue, in a cluster, while none of those before failed.
func (ch *Channel) pipelined(m amqp.Method) bool {
	d, ok := m.(*amqp.QueueDeclare)
	if !ok || !d.NoWait || d.Passive || d.Exclusive || d.Queue == "" || ch.c.vh == nil || ch.c.vh.Remote == nil {
		return false
	}
	ch.decls.mu.Lock()
	defer ch.decls.mu.Unlock()
	return ch.decls.err == nil
}

// declareLater commits a nowait queue.declare on another goroutine (at most 256 at a time per
// channel); the metadata store batches the commits.
func (ch *Channel) declareLater(vh *vhost.VHost, d vhost.QueueDecl) {
	if ch.decls.sem == nil {
		ch.decls.sem = make(chan struct{}, 256)
	}
	ch.decls.sem <- struct{}{}
	ch.decls.n++
	ch.decls.wg.Add(1)
	go func() {
		defer ch.decls.wg.Done()
		defer func() { <-ch.decls.sem }()
		q, created, err := vh.DeclareQueue(d)
		if err == nil && !created {
			q.Touch() // a redeclare counts as use for x-expires
		}
		if err != nil {
			ch.decls.mu.Lock()
			if ch.decls.err == nil {
				ch.decls.err = err
			}
			ch.decls.mu.Unlock()
		}
	}()
}

// waitDeclares waits for the pipelined declares and returns the first one's failure (as the
// queue.declare's channel error).
func (ch *Channel) waitDeclares() error {
	ch.decls.wg.Wait()
	ch.decls.n = 0
	ch.decls.mu.Lock()
	err := ch.decls.err
	ch.decls.err = nil
	ch.decls.mu.Unlock()
	if ae, ok := err.(*amqp.Error); ok && ae.ClassID == 0 {
		ae.ClassID, ae.MethodID = 50, 10 // queue.declare
	}
	return err
}
