package conformance

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Quality of service: AMQP 0-9-1 §1.8.3.1 basic.qos as RabbitMQ reinterprets it
// (https://www.rabbitmq.com/consumer-prefetch.html): global=false limits each consumer created
// afterwards, global=true limits the whole channel; and §1.5.2.5 channel.flow.

// qosConsume starts an acking consumer with the given tag on ch.
func qosConsume(t *testing.T, ch *amqp.Channel, q, tag string) <-chan amqp.Delivery {
	t.Helper()
	d, err := ch.Consume(q, tag, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume %s: %v", tag, err)
	}
	return d
}

// qosCount waits consumeQuiet for deliveries to settle, then collects what each of ds received.
func qosCount(t *testing.T, ds ...<-chan amqp.Delivery) [][]amqp.Delivery {
	t.Helper()
	time.Sleep(consumeQuiet)
	got := make([][]amqp.Delivery, len(ds))
	for i, d := range ds {
		for more := true; more; {
			select {
			case m, ok := <-d:
				if !ok {
					t.Fatal("delivery channel closed")
				}
				got[i] = append(got[i], m)
			case <-time.After(20 * time.Millisecond): // amqp091-go hands buffered deliveries over one by one
				more = false
			}
		}
	}
	return got
}

// TestBasicQos_PrefetchLimitsUnacked checks §1.8.3.1 prefetch-count: with prefetch 2 a consumer
// holds at most 2 unacked messages, and each ack lets exactly one more through.
func TestBasicQos_PrefetchLimitsUnacked(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, consumeBodies("m", 5)...)
	_, ch := dialChannel(t)
	if err := ch.Qos(2, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	d := qosConsume(t, ch, q, "c")
	got := qosCount(t, d)[0]
	if len(got) != 2 {
		t.Fatalf("%d deliveries with prefetch 2 and no acks, want 2", len(got))
	}
	if err := got[0].Ack(false); err != nil {
		t.Fatal(err)
	}
	if more := qosCount(t, d)[0]; len(more) != 1 || string(more[0].Body) != "m3" {
		t.Fatalf("after one ack got %d deliveries, want exactly m3", len(more))
	}
	if n := consumeReady(t, admin, q); n != 2 {
		t.Fatalf("%d ready, want 2", n)
	}
}

// TestBasicQos_PerConsumerLimitForEachConsumer checks RabbitMQ's global=false semantics: the
// prefetch count applies to each new consumer on the channel separately.
func TestBasicQos_PerConsumerLimitForEachConsumer(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, consumeBodies("m", 10)...)
	_, ch := dialChannel(t)
	if err := ch.Qos(2, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	d1 := qosConsume(t, ch, q, "c1")
	d2 := qosConsume(t, ch, q, "c2")
	if got := qosCount(t, d1, d2); len(got[0]) != 2 || len(got[1]) != 2 {
		n1, n2 := len(got[0]), len(got[1])
		t.Fatalf("consumers got %d and %d deliveries, want 2 each", n1, n2)
	}
	if n := consumeReady(t, admin, q); n != 6 {
		t.Fatalf("%d ready, want 6", n)
	}
}

// TestBasicQos_GlobalSharesCreditAcrossConsumers checks RabbitMQ's global=true semantics: one
// limit shared by all consumers of the channel.
func TestBasicQos_GlobalSharesCreditAcrossConsumers(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, consumeBodies("m", 10)...)
	_, ch := dialChannel(t)
	if err := ch.Qos(3, 0, true); err != nil {
		t.Fatalf("basic.qos global: %v", err)
	}
	d1 := qosConsume(t, ch, q, "c1")
	d2 := qosConsume(t, ch, q, "c2")
	got := qosCount(t, d1, d2)
	got1, got2 := got[0], got[1]
	if n := len(got1) + len(got2); n != 3 {
		t.Fatalf("consumers got %d+%d deliveries with a channel limit of 3, want 3 in all", len(got1), len(got2))
	}
	if err := ch.Ack(0, true); err != nil {
		t.Fatal(err)
	}
	if got := qosCount(t, d1, d2); len(got[0])+len(got[1]) != 3 {
		n := len(got[0]) + len(got[1])
		t.Fatalf("after acking all, %d more deliveries, want 3", n)
	}
	if n := consumeReady(t, admin, q); n != 4 {
		t.Fatalf("%d ready, want 4", n)
	}
}

// TestBasicQos_GlobalLimitRefillsAsTheConsumerAcks: a consumer held by a channel-wide limit
// gets the next message as soon as it acks one (Celery's worker sets its prefetch this way). In
// a cluster the queue may be led on another node than the channel's: the next message waits
// there, at the channel's node, and must be offered again on the ack.
func TestBasicQos_GlobalLimitRefillsAsTheConsumerAcks(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	const n = 6
	consumePublish(t, admin, q, consumeBodies("m", n)...)
	_, ch := dialChannel(t)
	if err := ch.Qos(1, 0, true); err != nil {
		t.Fatalf("basic.qos global: %v", err)
	}
	d := qosConsume(t, ch, q, "c1")
	for i := 1; i <= n; i++ {
		select {
		case m, ok := <-d:
			if !ok {
				t.Fatal("delivery channel closed")
			}
			if want := fmt.Sprintf("m%d", i); string(m.Body) != want {
				t.Fatalf("delivery %d is %q, want %q", i, m.Body, want)
			}
			select {
			case m2 := <-d:
				t.Fatalf("%q delivered while %q was unacked, over the channel limit of 1", m2.Body, m.Body)
			case <-time.After(50 * time.Millisecond):
			}
			if err := m.Ack(false); err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("delivery %d did not come within 5 s of the ack before it", i)
		}
	}
}

// TestBasicQos_PerConsumerAndGlobalTogether checks that RabbitMQ keeps both limits at once
// (https://www.rabbitmq.com/consumer-prefetch.html, "independent consumers" example: per-consumer
// qos first, then global): each consumer holds at most its own count and all of them together at
// most the channel's.
func TestBasicQos_PerConsumerAndGlobalTogether(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, consumeBodies("m", 10)...)
	_, ch := dialChannel(t)
	if err := ch.Qos(2, 0, false); err != nil {
		t.Fatalf("basic.qos per consumer: %v", err)
	}
	if err := ch.Qos(5, 0, true); err != nil {
		t.Fatalf("basic.qos global: %v", err)
	}
	total := 0
	got := qosCount(t, qosConsume(t, ch, q, "c1"), qosConsume(t, ch, q, "c2"), qosConsume(t, ch, q, "c3"))
	for i, ms := range got {
		n := len(ms)
		if n > 2 {
			t.Fatalf("consumer %d got %d deliveries over its prefetch of 2", i+1, n)
		}
		total += n
	}
	if total != 5 {
		t.Fatalf("%d deliveries in all, want the channel limit 5", total)
	}
}

// TestBasicQos_PerConsumerQosClearsGlobalLimit encodes a RabbitMQ 3.x quirk (rabbit_channel:
// basic.qos global=false calls rabbit_limiter:unlimit_prefetch): a global=false qos issued after a
// global=true one removes the channel-wide limit, so only the per-consumer limit remains.
func TestBasicQos_PerConsumerQosClearsGlobalLimit(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, consumeBodies("m", 10)...)
	_, ch := dialChannel(t)
	if err := ch.Qos(3, 0, true); err != nil {
		t.Fatalf("basic.qos global: %v", err)
	}
	if err := ch.Qos(2, 0, false); err != nil {
		t.Fatalf("basic.qos per consumer: %v", err)
	}
	got := qosCount(t, qosConsume(t, ch, q, "c1"), qosConsume(t, ch, q, "c2"))
	if len(got[0]) != 2 || len(got[1]) != 2 {
		t.Fatalf("consumers got %d and %d deliveries, want 2 each (global limit 3 cleared)", len(got[0]), len(got[1]))
	}
}

// TestBasicQos_ZeroIsUnlimited checks §1.8.3.1 ("The prefetch-count is ignored … zero means no
// limit"): with prefetch 0 every message is delivered without acks.
func TestBasicQos_ZeroIsUnlimited(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, consumeBodies("m", 50)...)
	_, ch := dialChannel(t)
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := ch.Qos(0, 0, false); err != nil {
		t.Fatalf("basic.qos 0: %v", err)
	}
	d := qosConsume(t, ch, q, "c")
	for i := range 50 {
		if m := recvDelivery(t, d); m.DeliveryTag != uint64(i+1) {
			t.Fatalf("delivery %d has tag %d", i+1, m.DeliveryTag)
		}
	}
}

// TestBasicQos_NoAckConsumerIgnoresPrefetch checks §1.8.3.1 ("the prefetch count is ignored if
// the no-ack option is set").
func TestBasicQos_NoAckConsumerIgnoresPrefetch(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, consumeBodies("m", 5)...)
	_, ch := dialChannel(t)
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	d, err := ch.Consume(q, "c", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		recvDelivery(t, d)
	}
}

// TestBasicQos_PrefetchSizeNotImplemented checks RabbitMQ's answer to a non-zero prefetch-size
// (§1.8.3.1 allows it; RabbitMQ does not implement it): 540 NOT_IMPLEMENTED, a hard error that
// closes the connection.
func TestBasicQos_PrefetchSizeNotImplemented(t *testing.T) {
	t.Parallel()
	c, ch := dialChannel(t)
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	e := amqpErr(t, ch.Qos(0, 1000, false), amqp.NotImplemented)
	consumeReason(t, e, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)")
	consumeChannelClosed(t, closed, amqp.NotImplemented)
}

// TestBasicGet_NotLimitedByPrefetch checks §1.8.3.1 (prefetch governs pushed deliveries): basic.get
// keeps returning messages however many are unacked, under both per-consumer and channel limits.
func TestBasicGet_NotLimitedByPrefetch(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, consumeBodies("m", 4)...)
	_, ch := dialChannel(t)
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := ch.Qos(1, 0, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range consumeBodies("m", 4) {
		consumeExpect(t, consumeGet(t, ch, q, false), want, false)
	}
}

// TestChannelFlow_ClientStopNotImplemented checks RabbitMQ's answer to a client-sent channel.flow
// (§1.5.2.5): active=true is answered with flow-ok, but active=false (asking the server to stop
// deliveries) is refused with 540 NOT_IMPLEMENTED, a hard error that closes the connection.
func TestChannelFlow_ClientStopNotImplemented(t *testing.T) {
	t.Parallel()
	c, ch := dialChannel(t)
	if err := ch.Flow(true); err != nil {
		t.Fatalf("channel.flow active=true: %v", err)
	}
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	e := amqpErr(t, ch.Flow(false), amqp.NotImplemented)
	consumeReason(t, e, "NOT_IMPLEMENTED - active=false")
	consumeChannelClosed(t, closed, amqp.NotImplemented)
}
