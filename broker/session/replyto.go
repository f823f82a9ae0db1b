package session

import (
	"strings"
	"sync"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

// Direct reply-to (RabbitMQ's amq.rabbitmq.reply-to): an RPC client consumes from the pseudo
// queue amq.rabbitmq.reply-to with no-ack, publishes requests with reply-to set to that name,
// and the server rewrites it to amq.rabbitmq.reply-to.<token> naming the client's channel. A
// reply published to the default exchange with that routing key goes straight to the channel,
// with no queue in between.

// ReplyToQueue is the pseudo queue's name.
const ReplyToQueue = "amq.rabbitmq.reply-to"

// ReplyRegistry maps reply tokens to channels, node-wide.
type ReplyRegistry struct {
	mu sync.RWMutex
	m  map[string]*Channel
}

func (r *ReplyRegistry) add(key string, ch *Channel) {
	r.mu.Lock()
	if r.m == nil {
		r.m = make(map[string]*Channel)
	}
	r.m[key] = ch
	r.mu.Unlock()
}

func (r *ReplyRegistry) remove(key string) {
	r.mu.Lock()
	delete(r.m, key)
	r.mu.Unlock()
}

func (r *ReplyRegistry) lookup(key string) *Channel {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[key]
}

// consumeReplyTo handles basic.consume on amq.rabbitmq.reply-to.
func (ch *Channel) consumeReplyTo(m *amqp.BasicConsume) error {
	if !m.NoAck {
		return amqp.ChannelErr(amqp.PreconditionFailed, "reply consumer cannot acknowledge")
	}
	if ch.replyTag != "" {
		return amqp.ChannelErr(amqp.PreconditionFailed, "reply consumer already set")
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = newTag("amq.ctag-")
	}
	ch.replyTag = tag
	ch.replyKey = ReplyToQueue + "." + newTag("")
	ch.c.env.Replies.add(ch.replyKey, ch)
	if !m.NoWait {
		ch.c.send(ch.id, &amqp.BasicConsumeOk{ConsumerTag: tag})
	}
	return nil
}

// cancelReplyTo stops the reply consumer (basic.cancel or channel close).
func (ch *Channel) cancelReplyTo() {
	if ch.replyKey != "" {
		ch.c.env.Replies.remove(ch.replyKey)
	}
	ch.replyTag, ch.replyKey = "", ""
}

// rewriteReplyTo replaces reply-to amq.rabbitmq.reply-to with this channel's reply address.
func (ch *Channel) rewriteReplyTo(m *message.Message) (*message.Message, error) {
	if ch.replyKey == "" {
		return nil, amqp.ChannelErr(amqp.PreconditionFailed, "fast reply consumer does not exist")
	}
	p, err := amqp.DecodeProperties(m.RawProps)
	if err != nil {
		return nil, err
	}
	p.ReplyTo = ch.replyKey
	return message.New(m.Exchange, m.RoutingKey, p.AppendTo(nil), m.Body)
}

// isReplyTo reports whether a publish targets a reply address.
func isReplyTo(exchange, key string) bool {
	return exchange == "" && strings.HasPrefix(key, ReplyToQueue+".")
}

// deliverReply sends a reply straight to the channel that owns key; false if it is gone.
func (ch *Channel) deliverReply(key string, m *message.Message) bool {
	target := ch.c.env.Replies.lookup(key)
	if target == nil {
		return false
	}
	c := target.c
	target.mu.Lock()
	if target.released {
		target.mu.Unlock()
		return false
	}
	target.nextTag++
	tag := target.nextTag
	c.outMu.Lock()
	c.out = amqp.AppendBasicDeliver(c.out, target.id, target.replyTag, tag, false, m.Exchange, m.RoutingKey)
	c.appendContentLocked(target.id, m.RawProps, m.Body)
	c.outMu.Unlock()
	target.mu.Unlock()
	c.kick()
	return true
}
