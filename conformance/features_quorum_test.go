package conformance

// The quorum queue delivery limit (https://www.rabbitmq.com/quorum-queues.html#poison-message-handling):
// a quorum queue counts the returns of each message (reject/nack with requeue, or a consumer
// going away) and, once that count exceeds x-delivery-limit, drops the message or dead-letters it
// with reason delivery_limit. Warren accepts x-queue-type quorum as a durable queue with the same
// semantics.

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// With x-delivery-limit 2 a message is delivered three times (once, then after each of two
// returns); the third return exceeds the limit, and the message is dead-lettered with reason
// delivery_limit, its per-message expiration moved into original-expiration.
func TestDeliveryLimit_QuorumQueueDeadLettersAfterLimit(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, dlq := featDeadLetterTarget(t, c)
	q := featQuorumQueue(t, c, amqp.Table{"x-delivery-limit": int32(2), "x-dead-letter-exchange": dlx})
	featPublish(t, admin, "", q, amqp.Publishing{Body: []byte("poison"), Expiration: "60000"})
	ch := openChannel(t, c)
	for i := range 3 {
		d := featGetWait(t, ch, q)
		if string(d.Body) != "poison" || d.Redelivered != (i > 0) {
			t.Fatalf("delivery %d: %q redelivered=%v", i+1, d.Body, d.Redelivered)
		}
		if err := d.Reject(true); err != nil {
			t.Fatalf("basic.reject: %v", err)
		}
	}
	d := publishGetOne(t, ch, dlq)
	if string(d.Body) != "poison" || d.Exchange != dlx || d.RoutingKey != q || d.Expiration != "" {
		t.Errorf("dead-lettered %q via %q key %q expiration %q, want \"poison\" via %q key %q no expiration",
			d.Body, d.Exchange, d.RoutingKey, d.Expiration, dlx, q)
	}
	featAssertHeaderKeys(t, d, "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason")
	featAssertDeaths(t, d, featDeath{Count: 1, Reason: "delivery_limit", Queue: q, Exchange: "",
		RoutingKeys: []string{q}, OriginalExpiration: "60000"})
	featAssertFirstDeath(t, d, "delivery_limit", q, "")
	if n := featReady(t, c, q); n != 0 {
		t.Errorf("quorum queue holds %d messages after the limit, want 0", n)
	}
}

// Without a dead-letter exchange the message is dropped once it exceeds the limit, here counted
// through nack(requeue=true) on a consumer; the next message is unaffected.
func TestDeliveryLimit_QuorumQueueDropsAfterLimitWithoutDLX(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := featQuorumQueue(t, c, amqp.Table{"x-delivery-limit": int32(1)})
	featPublish(t, admin, "", q, featBodies("poison")...)
	ch := openChannel(t, c)
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	deliveries := qosConsume(t, ch, q, "c")
	for i := range 2 {
		d := recvDelivery(t, deliveries)
		if string(d.Body) != "poison" {
			t.Fatalf("delivery %d: %q", i+1, d.Body)
		}
		if err := d.Nack(false, true); err != nil {
			t.Fatalf("basic.nack: %v", err)
		}
	}
	noDelivery(t, deliveries, 200*time.Millisecond)
	featPublish(t, admin, "", q, featBodies("next")...)
	if d := recvDelivery(t, deliveries); string(d.Body) != "next" || d.Redelivered {
		t.Fatalf("got %q redelivered=%v, want \"next\" first delivery", d.Body, d.Redelivered)
	}
}

// RabbitMQ 3.10 quorum queues stamp every delivery with x-delivery-count (a long): 0 on the first
// delivery, then the number of returns so far.
func TestDeliveryLimit_QuorumQueueDeliveryCountHeader(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := featQuorumQueue(t, c, amqp.Table{"x-delivery-limit": int32(5)})
	featPublish(t, admin, "", q, featBodies("m")...)
	ch := openChannel(t, c)
	for i := range 3 {
		d := featGetWait(t, ch, q)
		if got, ok := d.Headers["x-delivery-count"].(int64); !ok || got != int64(i) {
			t.Errorf("delivery %d: x-delivery-count = %#v (%T), want int64 %d",
				i+1, d.Headers["x-delivery-count"], d.Headers["x-delivery-count"], i)
		}
		if err := d.Reject(true); err != nil {
			t.Fatalf("basic.reject: %v", err)
		}
	}
}
