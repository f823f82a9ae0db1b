package session

// Stream queues (x-queue-type: stream) are queue.Ref values too: deliveries go through the
// same consumer (credit, outbound buffer, delivery tags) and acks through the same unacked
// list; the queue checks a stream consumer's arguments when it subscribes. What differs on a
// channel is the operations RabbitMQ refuses on streams (basic.get, queue.purge,
// basic.nack/basic.reject), whose checks sit in channel.go next to the classic paths, and here.

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
