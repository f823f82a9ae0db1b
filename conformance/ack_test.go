package conformance

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Acknowledgements: AMQP 0-9-1 §1.8.3.13 basic.ack, §1.8.3.14 basic.reject, §1.8.3.16
// basic.recover, RabbitMQ's basic.nack extension and https://www.rabbitmq.com/confirms.html
// (consumer acknowledgements, requeue position, automatic requeue on channel/connection close).

// ackGetAll opens a channel on a new connection and basic.gets n messages from q unacked.
func ackGetAll(t *testing.T, q string, n int) (*amqp.Connection, *amqp.Channel, []amqp.Delivery) {
	t.Helper()
	c, ch := dialChannel(t)
	var ds []amqp.Delivery
	for range n {
		ds = append(ds, consumeGet(t, ch, q, false))
	}
	return c, ch, ds
}

// ackRemaining closes ch (requeueing whatever it still holds unacked), waits until q holds want
// ready messages and checks their bodies in order.
func ackRemaining(t *testing.T, admin, ch *amqp.Channel, q string, want ...string) {
	t.Helper()
	if err := ch.Close(); err != nil {
		t.Fatalf("channel.close: %v", err)
	}
	consumeWaitReady(t, admin, q, len(want))
	got := consumeDrain(t, admin, q)
	if len(want) == 0 {
		want = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("left in queue: %q, want %q", got, want)
	}
}

// TestBasicAck_SingleAcksOnlyThatTag checks §1.8.3.13 basic.ack with multiple=false: only the
// named delivery is acknowledged; the others are requeued when the channel closes.
func TestBasicAck_SingleAcksOnlyThatTag(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2", "m3")
	_, ch, ds := ackGetAll(t, q, 3)
	if err := ch.Ack(ds[1].DeliveryTag, false); err != nil {
		t.Fatal(err)
	}
	ackRemaining(t, admin, ch, q, "m1", "m3")
}

// TestBasicAck_MultipleAcksUpToTag checks §1.8.3.13 basic.ack with multiple=true: every
// outstanding delivery up to and including the tag is acknowledged.
func TestBasicAck_MultipleAcksUpToTag(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2", "m3", "m4")
	_, ch, ds := ackGetAll(t, q, 4)
	if err := ch.Ack(ds[2].DeliveryTag, true); err != nil {
		t.Fatal(err)
	}
	ackRemaining(t, admin, ch, q, "m4")
}

// TestBasicAck_MultipleZeroAcksAll checks §1.8.3.13 ("If the multiple field is 1, and the
// delivery tag is zero, this indicates acknowledgement of all outstanding messages"), which
// RabbitMQ implements.
func TestBasicAck_MultipleZeroAcksAll(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2", "m3")
	_, ch, _ := ackGetAll(t, q, 3)
	if err := ch.Ack(0, true); err != nil {
		t.Fatal(err)
	}
	ackRemaining(t, admin, ch, q)
}

// TestBasicAck_UnknownTagPreconditionFailed checks §1.8.3.13 ("If the delivery tag is invalid
// the server MUST raise a channel exception"): ack, nack and reject of a tag never delivered on
// the channel close it with 406 PRECONDITION_FAILED "unknown delivery tag N".
func TestBasicAck_UnknownTagPreconditionFailed(t *testing.T) {
	t.Parallel()
	for _, m := range []struct {
		name string
		do   func(ch *amqp.Channel) error
	}{
		{"ack", func(ch *amqp.Channel) error { return ch.Ack(99, false) }},
		{"ack_multiple", func(ch *amqp.Channel) error { return ch.Ack(99, true) }},
		{"nack", func(ch *amqp.Channel) error { return ch.Nack(99, false, true) }},
		{"reject", func(ch *amqp.Channel) error { return ch.Reject(99, true) }},
	} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			c, ch := dialChannel(t)
			closed := ch.NotifyClose(make(chan *amqp.Error, 1))
			if err := m.do(ch); err != nil {
				t.Fatal(err)
			}
			e := consumeChannelClosed(t, closed, amqp.PreconditionFailed)
			consumeReason(t, e, "PRECONDITION_FAILED - unknown delivery tag 99")
			if c.IsClosed() {
				t.Fatal("406 closed the connection, want only the channel closed")
			}
		})
	}
}

// TestBasicAck_DoubleAckPreconditionFailed checks §1.8.3.13: a tag already acknowledged is no
// longer valid, so acking it again closes the channel with 406 PRECONDITION_FAILED.
func TestBasicAck_DoubleAckPreconditionFailed(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2")
	_, ch, ds := ackGetAll(t, q, 2)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ch.Ack(ds[0].DeliveryTag, false)
	ch.Ack(ds[0].DeliveryTag, false)
	e := consumeChannelClosed(t, closed, amqp.PreconditionFailed)
	consumeReason(t, e, fmt.Sprintf("PRECONDITION_FAILED - unknown delivery tag %d", ds[0].DeliveryTag))
	// The first ack counted: only m2 comes back when the channel is gone.
	consumeWaitReady(t, admin, q, 1)
	consumeExpect(t, consumeGet(t, admin, q, true), "m2", true)
}

// TestBasicAck_NoAckDeliveryPreconditionFailed checks §1.8.3.3 no-ack with §1.8.3.13: a delivery
// to a no-ack consumer is not outstanding, so acking its tag is 406 PRECONDITION_FAILED.
func TestBasicAck_NoAckDeliveryPreconditionFailed(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	d, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	consumePublish(t, admin, q, "m1")
	m := recvDelivery(t, d)
	ch.Ack(m.DeliveryTag, false)
	e := consumeChannelClosed(t, closed, amqp.PreconditionFailed)
	consumeReason(t, e, fmt.Sprintf("PRECONDITION_FAILED - unknown delivery tag %d", m.DeliveryTag))
}

// TestBasicNack_RequeuePutsBackAtOriginalPosition checks RabbitMQ's requeue rule
// (https://www.rabbitmq.com/confirms.html: "requeued to its original position in the queue, if
// possible"): a nacked message comes back redelivered ahead of messages published after it.
func TestBasicNack_RequeuePutsBackAtOriginalPosition(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2", "m3")
	_, ch, ds := ackGetAll(t, q, 3)
	consumePublish(t, admin, q, "m4")
	if err := ch.Nack(ds[1].DeliveryTag, false, true); err != nil {
		t.Fatal(err)
	}
	consumeExpect(t, consumeGet(t, ch, q, true), "m2", true)
	consumeExpect(t, consumeGet(t, ch, q, true), "m4", false)
	// m1 and m3 are still outstanding on ch: acking them must succeed.
	if err := ch.Ack(ds[2].DeliveryTag, true); err != nil {
		t.Fatal(err)
	}
	ackRemaining(t, admin, ch, q)
}

// TestBasicNack_MultipleRequeueRestoresOrder checks basic.nack multiple=true requeue=true
// (RabbitMQ extension, https://www.rabbitmq.com/nack.html): all outstanding deliveries up to the
// tag go back in their original order, redelivered, ahead of newer messages.
func TestBasicNack_MultipleRequeueRestoresOrder(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2", "m3")
	_, ch, ds := ackGetAll(t, q, 3)
	consumePublish(t, admin, q, "m4")
	if err := ch.Nack(ds[2].DeliveryTag, true, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"m1", "m2", "m3"} {
		consumeExpect(t, consumeGet(t, ch, q, true), want, true)
	}
	consumeExpect(t, consumeGet(t, ch, q, true), "m4", false)
}

// TestBasicNack_NoRequeueDrops checks basic.nack requeue=false: the message is dropped
// (no dead-letter exchange configured).
func TestBasicNack_NoRequeueDrops(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2")
	_, ch, ds := ackGetAll(t, q, 2)
	if err := ch.Nack(ds[1].DeliveryTag, true, false); err != nil {
		t.Fatal(err)
	}
	ackRemaining(t, admin, ch, q)
}

// TestBasicReject_NoRequeueDrops checks §1.8.3.14 basic.reject requeue=false: the message is
// discarded, so the queue is empty afterwards even once the channel closes.
func TestBasicReject_NoRequeueDrops(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1")
	_, ch, ds := ackGetAll(t, q, 1)
	if err := ch.Reject(ds[0].DeliveryTag, false); err != nil {
		t.Fatal(err)
	}
	if m, ok, err := ch.Get(q, true); err != nil || ok {
		t.Fatalf("get after reject: ok=%v err=%v body=%q, want get-empty", ok, err, m.Body)
	}
	ackRemaining(t, admin, ch, q)
}

// TestBasicReject_RequeueRedelivers checks §1.8.3.14 basic.reject requeue=true: the message is
// delivered again with redelivered=true (§1.8.3.9).
func TestBasicReject_RequeueRedelivers(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	d, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	consumePublish(t, admin, q, "m1")
	m := recvDelivery(t, d)
	consumeExpect(t, m, "m1", false)
	if err := m.Reject(true); err != nil {
		t.Fatal(err)
	}
	m2 := recvDelivery(t, d)
	consumeExpect(t, m2, "m1", true)
	if m2.DeliveryTag == m.DeliveryTag {
		t.Fatalf("redelivery reused delivery tag %d, want a new tag", m.DeliveryTag)
	}
	if err := m2.Ack(false); err != nil {
		t.Fatal(err)
	}
	ackRemaining(t, admin, ch, q)
}

// TestBasicRecover_RequeueReturnsAllUnacked checks §1.8.3.16 basic.recover requeue=true: every
// unacknowledged delivery of the channel is requeued, in order, redelivered, and recover-ok is sent.
func TestBasicRecover_RequeueReturnsAllUnacked(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2", "m3")
	_, ch, ds := ackGetAll(t, q, 3)
	consumePublish(t, admin, q, "m4")
	if err := ch.Ack(ds[1].DeliveryTag, false); err != nil {
		t.Fatal(err)
	}
	if err := ch.Recover(true); err != nil {
		t.Fatalf("basic.recover: %v", err)
	}
	consumeExpect(t, consumeGet(t, ch, q, true), "m1", true)
	consumeExpect(t, consumeGet(t, ch, q, true), "m3", true)
	consumeExpect(t, consumeGet(t, ch, q, true), "m4", false)
}

// TestBasicRecover_NoRequeueNotImplemented checks RabbitMQ's answer to basic.recover
// requeue=false (§1.8.3.16 allows redelivering to the same consumer; RabbitMQ does not implement
// it): 540 NOT_IMPLEMENTED, a hard error that closes the connection.
func TestBasicRecover_NoRequeueNotImplemented(t *testing.T) {
	t.Parallel()
	c, ch := dialChannel(t)
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	e := amqpErr(t, ch.Recover(false), amqp.NotImplemented)
	consumeReason(t, e, "NOT_IMPLEMENTED - requeue=false")
	consumeChannelClosed(t, closed, amqp.NotImplemented)
}

// TestUnacked_RequeuedOnChannelClose checks §1.8.3.13 / RabbitMQ confirms guide: unacknowledged
// deliveries are requeued when their channel closes, in original order and redelivered.
func TestUnacked_RequeuedOnChannelClose(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2", "m3")
	_, ch := dialChannel(t)
	d, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		recvDelivery(t, d)
	}
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	consumeWaitReady(t, admin, q, 3)
	for _, want := range []string{"m1", "m2", "m3"} {
		consumeExpect(t, consumeGet(t, admin, q, true), want, true)
	}
}

// TestUnacked_RequeuedOnConnectionClose checks the same rule when the whole connection closes:
// unacked deliveries of all its channels come back redelivered in original order.
func TestUnacked_RequeuedOnConnectionClose(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2", "m3", "m4")
	c, ch1, _ := ackGetAll(t, q, 2)
	ch2 := openChannel(t, c)
	consumeGet(t, ch2, q, false)
	consumeGet(t, ch2, q, false)
	if err := ch1.Ack(1, false); err != nil { // m1 acked; m2, m3 and m4 outstanding
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	consumeWaitReady(t, admin, q, 3)
	for _, want := range []string{"m2", "m3", "m4"} {
		consumeExpect(t, consumeGet(t, admin, q, true), want, true)
	}
}

// TestQueueDelete_UnackedDeliveriesStillAckable checks RabbitMQ's behaviour when a queue is
// deleted under a consumer holding unacked deliveries: the consumer gets basic.cancel, and the
// channel still knows those delivery tags, so acking them is accepted (no channel error) and
// acking one twice is the usual 406.
func TestQueueDelete_UnackedDeliveriesStillAckable(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	cancels := ch.NotifyCancel(make(chan string, 1))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	d, err := ch.Consume(q, "c", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	consumePublish(t, admin, q, "m1", "m2")
	m1, m2 := recvDelivery(t, d), recvDelivery(t, d)
	if _, err := admin.QueueDelete(q, false, false, false); err != nil {
		t.Fatal(err)
	}
	select {
	case tag := <-cancels:
		if tag != "c" {
			t.Fatalf("basic.cancel for %q, want c", tag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.cancel after queue.delete")
	}
	if err := m1.Ack(false); err != nil {
		t.Fatal(err)
	}
	if err := m2.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	// A synchronous round trip: had the ack failed, the channel would be closed by now.
	if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatalf("channel closed by acking deliveries of a deleted queue: %v", err)
	}
	m1.Ack(false)
	e := consumeChannelClosed(t, closed, amqp.PreconditionFailed)
	consumeReason(t, e, fmt.Sprintf("PRECONDITION_FAILED - unknown delivery tag %d", m1.DeliveryTag))
}
