package session

import (
	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/queue"
)

// Stream queues (x-queue-type: stream) are *queue.Queue values too: deliveries go through the
// same consumer (credit, outbound buffer, delivery tags) and acks through the same unacked
// list. What differs on a channel is here: how a consumer attaches, and the operations
// RabbitMQ refuses on streams (basic.get, queue.purge, basic.nack/basic.reject), whose checks
// sit in channel.go next to the classic paths.

// consumeStream attaches cs to the stream q with the channel's prefetch settings; the queue
// applies RabbitMQ's checks (x-stream-offset, prefetch required, manual ack, no global qos).
func (ch *Channel) consumeStream(q *queue.Queue, cs *consumer, m *amqp.BasicConsume, added func()) error {
	ch.mu.Lock()
	global := ch.globalPrefetch > 0
	ch.mu.Unlock()
	sc := queue.StreamConsume{Args: m.Arguments, Prefetch: cs.prefetch, GlobalQos: global, NoAck: m.NoAck}
	if err := q.AddStreamConsumer(cs, sc, added); err != nil {
		delete(ch.consumers, cs.tag)
		return err
	}
	return nil
}

// streamSettleErr refuses basic.nack and basic.reject of stream deliveries as RabbitMQ does
// (540 NOT_IMPLEMENTED, which closes the connection). The taken entries return their credit
// first, so the queue's counts stay right.
func (ch *Channel) streamSettleErr(es []unackedEntry) error {
	for _, e := range es {
		if e.q.IsStream() {
			ch.requeueEntries(es)
			return e.q.StreamUnsupported("basic.nack and basic.reject")
		}
	}
	return nil
}
