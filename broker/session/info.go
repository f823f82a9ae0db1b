package session

import (
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/broker/queue"
)

// Stat names one message counter, as RabbitMQ's management API reports them in message_stats.
type Stat uint8

// Message counters kept per channel and for the node.
const (
	StatPublish          Stat = iota // basic.publish received
	StatConfirm                      // publishes confirmed to the publisher (basic.ack)
	StatReturnUnroutable             // mandatory publishes returned with NO_ROUTE
	StatDropUnroutable               // non-mandatory publishes that routed nowhere
	StatDeliver                      // basic.deliver needing an ack
	StatDeliverNoAck                 // basic.deliver to no-ack consumers
	StatGet                          // basic.get-ok needing an ack
	StatGetNoAck                     // basic.get-ok with no-ack
	StatGetEmpty                     // basic.get-empty
	StatAck                          // deliveries acknowledged by clients
	StatRedeliver                    // deliveries and gets with the redelivered flag
	NumStats
)

var statNames = [NumStats]string{"publish", "confirm", "return_unroutable", "drop_unroutable",
	"deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty", "ack", "redeliver"}

// String returns the counter's name in RabbitMQ's message_stats ("publish", "deliver_no_ack").
func (k Stat) String() string { return statNames[k] }

// Stats is a set of monotonically increasing message counters. Safe for concurrent use.
type Stats struct {
	v [NumStats]atomic.Uint64

	// Node-wide only (the node's Stats; RabbitMQ's global counters that channel message_stats
	// lack):
	ReceivedConfirm atomic.Uint64 // publishes received on channels in confirm mode
	Routed          atomic.Uint64 // publishes that reached at least one queue
}

// Add adds n to counter k.
func (s *Stats) Add(k Stat, n uint64) { s.v[k].Add(n) }

// Load returns counter k.
func (s *Stats) Load(k Stat) uint64 { return s.v[k].Load() }

// Snapshot returns every counter.
func (s *Stats) Snapshot() (out [NumStats]uint64) {
	for i := range s.v {
		out[i] = s.v[i].Load()
	}
	return out
}

// count adds n to the channel's counter k and the node's.
func (ch *Channel) count(k Stat, n uint64) {
	ch.stats.v[k].Add(n)
	if ns := ch.c.env.Stats; ns != nil {
		ns.v[k].Add(n)
	}
}

// countPublish counts a basic.publish received on the channel.
func (ch *Channel) countPublish() {
	ch.count(StatPublish, 1)
	if ns := ch.c.env.Stats; ns != nil && ch.confirm {
		ns.ReceivedConfirm.Add(1)
	}
}

// countRouted counts, node-wide, a publish that reached at least one queue.
func (ch *Channel) countRouted() {
	if ns := ch.c.env.Stats; ns != nil {
		ns.Routed.Add(1)
	}
}

// Unconfirmed returns how many publishes on the channel (in confirm mode) are not confirmed
// yet.
func (ch *Channel) Unconfirmed() uint64 {
	ch.cf.mu.Lock()
	defer ch.cf.mu.Unlock()
	return ch.cf.seq - ch.cf.sent
}

// Name returns the connection's name as RabbitMQ shows it: "peer:port -> local:port".
func (c *Conn) Name() string { return c.remote + " -> " + c.nc.LocalAddr().String() }

// LocalAddr returns the address the client connected to.
func (c *Conn) LocalAddr() string { return c.nc.LocalAddr().String() }

// Tuning returns the negotiated frame_max, channel_max and heartbeat (seconds).
func (c *Conn) Tuning() (frameMax uint32, channelMax, heartbeat uint16) {
	return c.frameMax, c.channelMax, c.heartbeat
}

// ConnectedAt returns when connection.open completed.
func (c *Conn) ConnectedAt() time.Time { return c.connectedAt }

// Channels returns the connection's open channels. Safe from any goroutine.
func (c *Conn) Channels() []*Channel {
	c.chMu.RLock()
	defer c.chMu.RUnlock()
	out := make([]*Channel, 0, len(c.channels))
	for _, ch := range c.channels {
		out = append(out, ch)
	}
	return out
}

// Conn returns the channel's connection.
func (ch *Channel) Conn() *Conn { return ch.c }

// Stats returns the channel's message counters.
func (ch *Channel) Stats() *Stats { return &ch.stats }

// ChannelInfo is a point-in-time view of a channel's delivery state.
type ChannelInfo struct {
	Prefetch       uint16 // per-consumer prefetch for new consumers
	GlobalPrefetch uint32 // channel-wide prefetch (0: none)
	Unacked        int    // deliveries awaiting ack
	Confirm        bool   // confirm mode
	Tx             bool   // transactional
}

// Info returns the channel's delivery state, read under ch.mu.
func (ch *Channel) Info() ChannelInfo {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ChannelInfo{Prefetch: ch.prefetch, GlobalPrefetch: ch.globalPrefetch, Unacked: ch.unacked.Len(), Confirm: ch.confirm, Tx: ch.tx}
}

// ConsumerInfo describes a basic.consume subscription.
type ConsumerInfo struct {
	Tag         string
	Channel     *Channel
	AckRequired bool
	Prefetch    uint32
	Queue       string // the queue's name (in the channel's vhost)
	Exclusive   bool
}

// Consumers describes the channel's subscriptions, whatever node leads their queues (a queue's
// own consumer list on its node has the local ones only).
func (ch *Channel) Consumers() []ConsumerInfo {
	ch.consMu.Lock()
	defer ch.consMu.Unlock()
	out := make([]ConsumerInfo, 0, len(ch.consumers))
	for _, cs := range ch.consumers {
		out = append(out, ConsumerInfo{Tag: cs.tag, Channel: ch, AckRequired: !cs.noAck, Prefetch: cs.prefetch, Queue: cs.ref().Name(), Exclusive: cs.exclusive})
	}
	return out
}

// DescribeConsumer returns what management shows about a queue's consumer; ok is false for
// consumers that are not AMQP subscriptions.
func DescribeConsumer(qc queue.Consumer) (info ConsumerInfo, ok bool) {
	cs, ok := qc.(*consumer)
	if !ok {
		return ConsumerInfo{}, false
	}
	return ConsumerInfo{Tag: cs.tag, Channel: cs.ch, AckRequired: !cs.noAck, Prefetch: cs.prefetch, Queue: cs.ref().Name(), Exclusive: cs.exclusive}, true
}
