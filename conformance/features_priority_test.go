package conformance

// Priority queues (https://www.rabbitmq.com/priority.html), consumer priorities
// (https://www.rabbitmq.com/consumer-priority.html) and single active consumer
// (https://www.rabbitmq.com/consumers.html#single-active-consumer).

import (
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// featPriorities returns one message per body with the matching priority.
func featPriorities(bodies []string, priorities []uint8) []amqp.Publishing {
	out := featBodies(bodies...)
	for i := range out {
		out[i].Priority = priorities[i]
	}
	return out
}

// priority.html: in a queue declared with x-max-priority, messages of higher priority are
// delivered before messages of lower priority; equal priorities keep publishing order.
func TestMaxPriority_HigherPriorityDeliveredFirst(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-max-priority": int32(5)})
	featPublish(t, admin, "", q, featPriorities(
		[]string{"p1", "p3a", "p5", "p2", "p3b", "p4"},
		[]uint8{1, 3, 5, 2, 3, 4})...)
	want := []string{"p5", "p4", "p3a", "p3b", "p2", "p1"}
	if got := featDrain(t, openChannel(t, c), q); !slices.Equal(got, want) {
		t.Fatalf("basic.get order %q, want %q", got, want)
	}
}

// priority.html#behaviour: "Messages without a priority property are treated as if their priority
// were 0".
func TestMaxPriority_MissingPriorityIsZero(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-max-priority": int32(5)})
	featPublish(t, admin, "", q, featBodies("none")...)
	featPublish(t, admin, "", q, featPriorities([]string{"p1", "p0"}, []uint8{1, 0})...)
	want := []string{"p1", "none", "p0"}
	if got := featDrain(t, openChannel(t, c), q); !slices.Equal(got, want) {
		t.Fatalf("basic.get order %q, want %q", got, want)
	}
}

// priority.html#behaviour: "Messages with a priority which is higher than the queue's maximum are
// treated as if they were published with the maximum priority"; the priority property itself is
// delivered unchanged.
func TestMaxPriority_AboveMaxTreatedAsMax(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-max-priority": int32(3)})
	featPublish(t, admin, "", q, featPriorities(
		[]string{"p2", "p3", "p9", "p3b"},
		[]uint8{2, 3, 9, 3})...)
	ch := openChannel(t, c)
	var got []string
	for range 4 {
		d := consumeGet(t, ch, q, true)
		got = append(got, string(d.Body))
		if string(d.Body) == "p9" && d.Priority != 9 {
			t.Errorf("p9 delivered with priority %d, want 9", d.Priority)
		}
	}
	if want := []string{"p3", "p9", "p3b", "p2"}; !slices.Equal(got, want) {
		t.Fatalf("basic.get order %q, want %q", got, want)
	}
}

// priority.html: a consumer attached to a priority queue that already holds messages gets the
// highest priority first; a requeued message goes back into its priority level.
func TestMaxPriority_ConsumerAndRequeueFollowPriority(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-max-priority": int32(9)})
	featPublish(t, admin, "", q, featPriorities([]string{"low", "high", "mid"}, []uint8{1, 9, 5})...)
	ch := openChannel(t, c)
	d := consumeGet(t, ch, q, false)
	if string(d.Body) != "high" {
		t.Fatalf("first basic.get %q, want high", d.Body)
	}
	if err := d.Reject(true); err != nil {
		t.Fatalf("basic.reject: %v", err)
	}
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	deliveries := qosConsume(t, ch, q, "c")
	var got []string
	for range 3 {
		d := recvDelivery(t, deliveries)
		got = append(got, string(d.Body))
		if err := d.Ack(false); err != nil {
			t.Fatalf("basic.ack: %v", err)
		}
	}
	if want := []string{"high", "mid", "low"}; !slices.Equal(got, want) {
		t.Fatalf("delivery order %q, want %q", got, want)
	}
}

// featRecv waits (bounded) for n deliveries on d and returns their bodies.
func featRecv(t *testing.T, d <-chan amqp.Delivery, n int) ([]amqp.Delivery, []string) {
	t.Helper()
	var ds []amqp.Delivery
	var bodies []string
	for range n {
		m := recvDelivery(t, d)
		ds = append(ds, m)
		bodies = append(bodies, string(m.Body))
	}
	return ds, bodies
}

// featQuiet asserts that none of ds receives anything within consumeQuiet (checked together).
func featQuiet(t *testing.T, ds ...<-chan amqp.Delivery) {
	t.Helper()
	deadline := time.Now().Add(consumeQuiet)
	for i, d := range ds {
		select {
		case m, ok := <-d:
			if ok {
				t.Fatalf("consumer %d: unexpected delivery %q", i, m.Body)
			}
		case <-time.After(time.Until(deadline)):
		}
	}
}

// featPriorityConsumer starts an acking consumer with x-priority prio (and prefetch, 0 =
// unlimited) on a channel of its own.
func featPriorityConsumer(t *testing.T, c *amqp.Connection, q string, prio int32, prefetch int) <-chan amqp.Delivery {
	t.Helper()
	ch := openChannel(t, c)
	if err := ch.Qos(prefetch, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	d, err := ch.Consume(q, "", false, false, false, false, amqp.Table{"x-priority": prio})
	if err != nil {
		t.Fatalf("basic.consume x-priority %d: %v", prio, err)
	}
	return d
}

// consumer-priority.html: "active consumers with high priority receive messages before low
// priority ones": as long as the highest priority consumer can take messages, lower ones get none,
// whatever the order the consumers were registered in.
func TestConsumerPriority_HighestWithCreditGetsAll(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, nil)
	low := featPriorityConsumer(t, c, q, 1, 0)
	high := featPriorityConsumer(t, c, q, 10, 0)
	mid := featPriorityConsumer(t, c, q, 5, 0)
	featPublish(t, admin, "", q, featBodies("m1", "m2", "m3", "m4", "m5", "m6")...)
	if _, got := featRecv(t, high, 6); !slices.Equal(got, []string{"m1", "m2", "m3", "m4", "m5", "m6"}) {
		t.Fatalf("high priority consumer got %q, want m1..m6", got)
	}
	featQuiet(t, low, mid, high)
}

// consumer-priority.html: "messages will go to the lower priority consumers when the high priority
// consumers block", e.g. when they have reached their prefetch limit; once the high priority
// consumer acks it gets messages again.
func TestConsumerPriority_LowerGetsMessagesWhenHigherBlocked(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, nil)
	high := featPriorityConsumer(t, c, q, 10, 2)
	low := featPriorityConsumer(t, c, q, 0, 3)
	featPublish(t, admin, "", q, featBodies("m1", "m2", "m3", "m4", "m5", "m6")...)
	held, got := featRecv(t, high, 2)
	if !slices.Equal(got, []string{"m1", "m2"}) {
		t.Fatalf("high priority consumer got %q, want [m1 m2]", got)
	}
	if _, got := featRecv(t, low, 3); !slices.Equal(got, []string{"m3", "m4", "m5"}) {
		t.Fatalf("low priority consumer got %q, want [m3 m4 m5] (high one blocked by prefetch 2)", got)
	}
	featQuiet(t, high, low)
	if err := held[1].Ack(true); err != nil {
		t.Fatalf("basic.ack: %v", err)
	}
	if d := recvDelivery(t, high); string(d.Body) != "m6" {
		t.Fatalf("high priority consumer got %q after acking, want m6", d.Body)
	}
	featQuiet(t, low)
}

// consumers.html#single-active-consumer: "only one consumer at a time consumes from the queue";
// the others wait. "the first consumer registered ... becomes the single active consumer".
// When it is cancelled, "another consumer ... gets activated and receives the messages" from
// then on.
//
// The active consumer settles everything before cancelling: RabbitMQ 3.10.8 only switches
// consumers on basic.cancel and dispatches to the new one on a later queue event, and its classic
// queue process crashes (badmatch in attempt_delivery) when the cancelled consumer still holds
// unacked messages. TestSingleActiveConsumer_ChannelCloseActivatesNext covers the hand-over of
// messages left in the queue.
func TestSingleActiveConsumer_OnlyFirstReceivesThenNextTakesOver(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-single-active-consumer": true})
	chA := openChannel(t, c)
	if err := chA.Qos(2, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	a := qosConsume(t, chA, q, "a")
	b := featPriorityConsumer(t, c, q, 0, 0) // no prefetch limit: would take everything if active
	featPublish(t, admin, "", q, featBodies("m1", "m2", "m3", "m4")...)

	for _, want := range [][]string{{"m1", "m2"}, {"m3", "m4"}} {
		held, got := featRecv(t, a, 2)
		if !slices.Equal(got, want) {
			t.Fatalf("active consumer got %q, want %q", got, want)
		}
		featQuiet(t, a, b) // a is at its prefetch limit; b is not active
		if err := held[1].Ack(true); err != nil {
			t.Fatalf("basic.ack: %v", err)
		}
	}
	if err := chA.Cancel("a", false); err != nil {
		t.Fatalf("basic.cancel: %v", err)
	}
	featPublish(t, admin, "", q, featBodies("m5", "m6")...)
	if _, got := featRecv(t, b, 2); !slices.Equal(got, []string{"m5", "m6"}) {
		t.Fatalf("next consumer got %q, want [m5 m6]", got)
	}
}

// consumers.html#single-active-consumer: when the active consumer's channel closes, its unacked
// messages are requeued (at their original positions, AMQP 0-9-1 §1.8.3.13 / RabbitMQ's
// confirms.html#requeue) and the next consumer becomes active and receives every message, in
// order.
func TestSingleActiveConsumer_ChannelCloseActivatesNext(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-single-active-consumer": true})
	chA, err := c.Channel()
	if err != nil {
		t.Fatalf("channel.open: %v", err)
	}
	if err := chA.Qos(2, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	a := qosConsume(t, chA, q, "a")
	b := featPriorityConsumer(t, c, q, 0, 0)
	featPublish(t, admin, "", q, featBodies("m1", "m2", "m3", "m4")...)
	if _, got := featRecv(t, a, 2); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Fatalf("active consumer got %q, want [m1 m2]", got)
	}
	featQuiet(t, a, b)
	if err := chA.Close(); err != nil {
		t.Fatalf("channel.close: %v", err)
	}
	if _, got := featRecv(t, b, 4); !slices.Equal(got, []string{"m1", "m2", "m3", "m4"}) {
		t.Fatalf("next consumer got %q, want [m1 m2 m3 m4]", got)
	}
}
