package session

import (
	"encoding/base64"
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

// ReplyRegistry maps reply tokens to channels, node-wide. In a cluster a reply address names
// the node of its channel, so a reply published on any node reaches it (Forward).
type ReplyRegistry struct {
	mu sync.RWMutex
	m  map[string]*Channel

	// Node is this node's name in a cluster ("" on a single node): reply addresses made here
	// carry it.
	Node string
	// Forward hands a reply for a channel on another node to that node (nil on a single node).
	Forward func(node, key string, m *message.Message) error
}

// newKey makes a reply address: amq.rabbitmq.reply-to.<token>, the token naming this node
// in a cluster (clients treat it as opaque, as RabbitMQ's, which encodes its node too).
func (r *ReplyRegistry) newKey() string {
	k := ReplyToQueue + "." + newTag("")
	if r.Node != "" {
		k += "." + base64.RawURLEncoding.EncodeToString([]byte(r.Node))
	}
	return k
}

// nodeOf returns the node a reply address names ("" for none).
func nodeOf(key string) string {
	i := strings.LastIndexByte(key, '.')
	if i <= len(ReplyToQueue) { // no node part (a single node's address)
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(key[i+1:])
	if err != nil {
		return ""
	}
	return string(b)
}

// Deliver sends a reply to the channel that owns key: here, or on the node the key names.
// false when no such channel is known (a mandatory reply is returned).
func (r *ReplyRegistry) Deliver(key string, m *message.Message) bool {
	if target := r.lookup(key); target != nil {
		return target.takeReply(m)
	}
	if r.Forward == nil {
		return false
	}
	node := nodeOf(key)
	if node == "" || node == r.Node {
		return false
	}
	return r.Forward(node, key, m) == nil
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
	ch.replyKey = ch.c.env.Replies.newKey()
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

// deliverReply sends a reply to the channel that owns key (on this node or another); false if
// it is gone.
func (ch *Channel) deliverReply(key string, m *message.Message) bool {
	return ch.c.env.Replies.Deliver(key, m)
}

// takeReply delivers a reply to this channel's reply consumer; false if the channel is gone.
func (target *Channel) takeReply(m *message.Message) bool {
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
