package conformance

// Dead-lettering (https://www.rabbitmq.com/dlx.html): x-dead-letter-exchange and
// x-dead-letter-routing-key, the x-death and x-first-death-* headers, and cycle detection.

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dlx.html: a message "rejected by a consumer using basic.reject or basic.nack with requeue
// parameter set to false" is republished to the queue's dead-letter exchange with the routing
// keys it was published with. dlx.html#effects: RabbitMQ adds an x-death array (one table with
// count, reason, queue, time, exchange, routing-keys) and x-first-death-reason/-queue/-exchange,
// and keeps the other headers.
func TestDeadLetter_RejectWithoutRequeue(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, dlq := featDeadLetterTarget(t, c)
	q := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": dlx})
	featPublish(t, admin, "", q, amqp.Publishing{Body: []byte("m"), Headers: amqp.Table{"app": "kept"}})
	ch := openChannel(t, c)
	if err := featGetWait(t, ch, q).Reject(false); err != nil {
		t.Fatalf("basic.reject: %v", err)
	}
	d := publishGetOne(t, ch, dlq)
	if string(d.Body) != "m" || d.Exchange != dlx || d.RoutingKey != q || d.Redelivered {
		t.Errorf("dead-lettered %q via %q key %q redelivered=%v, want \"m\" via %q key %q",
			d.Body, d.Exchange, d.RoutingKey, d.Redelivered, dlx, q)
	}
	if d.Headers["app"] != "kept" {
		t.Errorf("header app = %#v, want \"kept\"", d.Headers["app"])
	}
	featAssertHeaderKeys(t, d, "app", "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason")
	featAssertDeaths(t, d, featDeath{Count: 1, Reason: "rejected", Queue: q, Exchange: "", RoutingKeys: []string{q}})
	featAssertFirstDeath(t, d, "rejected", q, "")
	publishEmpty(t, ch, q)
}

// dlx.html: basic.nack with requeue=false dead-letters like basic.reject, here with multiple=true
// from a consumer, preserving the order of the nacked messages.
func TestDeadLetter_NackWithoutRequeue(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, dlq := featDeadLetterTarget(t, c)
	q := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": dlx})
	featPublish(t, admin, "", q, featBodies("n1", "n2")...)
	ch := openChannel(t, c)
	deliveries := qosConsume(t, ch, q, "c")
	recvDelivery(t, deliveries)
	if err := recvDelivery(t, deliveries).Nack(true, false); err != nil {
		t.Fatalf("basic.nack: %v", err)
	}
	featWaitReady(t, c, dlq, 2)
	for _, want := range []string{"n1", "n2"} {
		d := publishGetOne(t, ch, dlq)
		if string(d.Body) != want {
			t.Fatalf("dead-lettered %q, want %q", d.Body, want)
		}
		featAssertDeaths(t, d, featDeath{Count: 1, Reason: "rejected", Queue: q, Exchange: "", RoutingKeys: []string{q}})
		featAssertFirstDeath(t, d, "rejected", q, "")
	}
}

// dlx.html: a message that expires because of the queue's x-message-ttl is dead-lettered with
// reason expired; x-death names the exchange and routing key it was originally published with,
// and has no original-expiration since the message had no expiration property.
func TestDeadLetter_ExpiredByQueueTTL(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, dlq := featDeadLetterTarget(t, c)
	q := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": dlx, "x-message-ttl": int32(50)})
	key := uniqueName(t, "key")
	featBind(t, c, q, key, "amq.direct")
	featPublish(t, admin, "amq.direct", key, featBodies("m")...)
	d := publishGetOne(t, openChannel(t, c), dlq)
	if d.Exchange != dlx || d.RoutingKey != key {
		t.Errorf("dead-lettered via %q key %q, want %q key %q", d.Exchange, d.RoutingKey, dlx, key)
	}
	featAssertHeaderKeys(t, d, "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason")
	featAssertDeaths(t, d, featDeath{Count: 1, Reason: "expired", Queue: q, Exchange: "amq.direct", RoutingKeys: []string{key}})
	featAssertFirstDeath(t, d, "expired", q, "amq.direct")
}

// dlx.html#effects: "The expiration property of the message is removed ... any per-message TTL
// [is recorded in] the original-expiration field of the x-death header", so the dead-lettered copy
// does not expire again.
func TestDeadLetter_ExpiredByMessageExpirationRecordsOriginalExpiration(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, dlq := featDeadLetterTarget(t, c)
	q := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": dlx})
	featPublish(t, admin, "", q, amqp.Publishing{Body: []byte("m"), Expiration: "50"})
	featWaitReady(t, c, dlq, 1)
	time.Sleep(100 * time.Millisecond) // would have expired again by now
	d := publishGetOne(t, openChannel(t, c), dlq)
	if d.Expiration != "" {
		t.Errorf("dead-lettered message has expiration %q, want none", d.Expiration)
	}
	featAssertDeaths(t, d, featDeath{Count: 1, Reason: "expired", Queue: q, Exchange: "",
		RoutingKeys: []string{q}, OriginalExpiration: "50"})
	featAssertFirstDeath(t, d, "expired", q, "")
}

// dlx.html#routing: with x-dead-letter-routing-key the message is republished with that key
// instead of its own; x-death keeps the original routing keys, CC ones included
// (https://www.rabbitmq.com/sender-selected.html), and the CC header itself is dropped since it no
// longer applies.
func TestDeadLetter_RoutingKeyReplaced(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx := featExchange(t, c, "direct")
	dlq := queueShared(t, c, nil)
	featBind(t, c, dlq, "dead", dlx)
	q := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead"})
	cc := uniqueName(t, "cc")
	featPublish(t, admin, "", q, amqp.Publishing{Body: []byte("m"), Headers: amqp.Table{"CC": []any{cc}}})
	ch := openChannel(t, c)
	if err := featGetWait(t, ch, q).Reject(false); err != nil {
		t.Fatalf("basic.reject: %v", err)
	}
	d := publishGetOne(t, ch, dlq)
	if d.Exchange != dlx || d.RoutingKey != "dead" {
		t.Errorf("dead-lettered via %q key %q, want %q key \"dead\"", d.Exchange, d.RoutingKey, dlx)
	}
	featAssertHeaderKeys(t, d, "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason")
	featAssertDeaths(t, d, featDeath{Count: 1, Reason: "rejected", Queue: q, Exchange: "", RoutingKeys: []string{q, cc}})
}

// dlx.html: without x-dead-letter-routing-key the CC keys route the dead-lettered message too, and
// the CC header stays.
func TestDeadLetter_CCKeysRouteWithoutRoutingKeyOverride(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx := featExchange(t, c, "direct")
	q := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": dlx})
	cc := uniqueName(t, "cc")
	dlq := queueShared(t, c, nil)
	featBind(t, c, dlq, cc, dlx)
	featPublish(t, admin, "", q, amqp.Publishing{Body: []byte("m"), Headers: amqp.Table{"CC": []any{cc}}})
	ch := openChannel(t, c)
	if err := featGetWait(t, ch, q).Reject(false); err != nil {
		t.Fatalf("basic.reject: %v", err)
	}
	d := publishGetOne(t, ch, dlq)
	if d.RoutingKey != q {
		t.Errorf("dead-lettered with key %q, want %q", d.RoutingKey, q)
	}
	featAssertHeaderKeys(t, d, "CC", "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason")
	featAssertDeaths(t, d, featDeath{Count: 1, Reason: "rejected", Queue: q, Exchange: "", RoutingKeys: []string{q, cc}})
}

// maxlength.html#overflow-behaviour: with the default drop-head overflow the oldest message is
// dropped, and dead-lettered with reason maxlen when the queue has a dead-letter exchange.
func TestDeadLetter_MaxLengthDropHead(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, dlq := featDeadLetterTarget(t, c)
	q := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": dlx, "x-max-length": int32(1)})
	featPublish(t, admin, "", q, featBodies("old", "new")...)
	ch := openChannel(t, c)
	d := publishGetOne(t, ch, dlq)
	if string(d.Body) != "old" {
		t.Fatalf("dead-lettered %q, want \"old\"", d.Body)
	}
	featAssertDeaths(t, d, featDeath{Count: 1, Reason: "maxlen", Queue: q, Exchange: "", RoutingKeys: []string{q}})
	featAssertFirstDeath(t, d, "maxlen", q, "")
	if got := featDrain(t, ch, q); len(got) != 1 || got[0] != "new" {
		t.Fatalf("queue holds %q, want [new]", got)
	}
}

// dlx.html#effects: each death in another queue or for another reason prepends an x-death entry,
// most recent first, while x-first-death-* keep naming the first one.
func TestDeadLetter_DeathsListMostRecentFirst(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	final := queueShared(t, c, nil)
	second := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": final})
	first := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": second,
		"x-message-ttl": int32(50)})
	featPublish(t, admin, "", first, featBodies("m")...)
	ch := openChannel(t, c)
	if err := featGetWait(t, ch, second).Reject(false); err != nil {
		t.Fatalf("basic.reject: %v", err)
	}
	d := publishGetOne(t, ch, final)
	featAssertDeaths(t, d,
		featDeath{Count: 1, Reason: "rejected", Queue: second, Exchange: "", RoutingKeys: []string{second}},
		featDeath{Count: 1, Reason: "expired", Queue: first, Exchange: "", RoutingKeys: []string{first}})
	featAssertFirstDeath(t, d, "expired", first, "")
}

// dlx.html#effects: when a message dies again in the same queue for the same reason its existing
// x-death entry is updated, count incremented, and moved to the front. A cycle that contains a
// rejection is not broken: the message keeps going round.
func TestDeadLetter_SameQueueAndReasonIncrementsCount(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	ping := uniqueName(t, "ping")
	pong := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": ping})
	if err := featDeclareErr(t, c, ping, false, amqp.Table{"x-dead-letter-exchange": "",
		"x-dead-letter-routing-key": pong, "x-message-ttl": int32(50)}); err != nil {
		t.Fatalf("queue.declare %s: %v", ping, err)
	}
	featPublish(t, admin, "", ping, amqp.Publishing{Body: []byte("m"), Expiration: "60000"})
	ch := openChannel(t, c)

	d := featGetWait(t, ch, pong)
	featAssertDeaths(t, d,
		featDeath{Count: 1, Reason: "expired", Queue: ping, Exchange: "", RoutingKeys: []string{ping}, OriginalExpiration: "60000"})
	if err := d.Reject(false); err != nil { // back to ping, where it expires again
		t.Fatalf("basic.reject: %v", err)
	}

	d = featGetWait(t, ch, pong)
	featAssertDeaths(t, d,
		featDeath{Count: 2, Reason: "expired", Queue: ping, Exchange: "", RoutingKeys: []string{ping}, OriginalExpiration: "60000"},
		featDeath{Count: 1, Reason: "rejected", Queue: pong, Exchange: "", RoutingKeys: []string{pong}})
	featAssertFirstDeath(t, d, "expired", ping, "")
	if err := d.Ack(false); err != nil {
		t.Fatalf("basic.ack: %v", err)
	}
}

// dlx.html: a queue may dead-letter to itself. A cycle made only of rejections is driven by the
// client and RabbitMQ does not break it: the message comes back each time, its count growing.
func TestDeadLetter_RejectCycleIsNotBroken(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := uniqueName(t)
	if err := featDeclareErr(t, c, q, false, amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q}); err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	featPublish(t, admin, "", q, featBodies("m")...)
	ch := openChannel(t, c)
	for i := range 3 {
		d := featGetWait(t, ch, q)
		if i > 0 {
			featAssertDeaths(t, d, featDeath{Count: int64(i), Reason: "rejected", Queue: q, Exchange: "", RoutingKeys: []string{q}})
		} else if _, ok := d.Headers["x-death"]; ok {
			t.Fatalf("first delivery already has x-death: %v", d.Headers)
		}
		if err := d.Reject(false); err != nil {
			t.Fatalf("basic.reject: %v", err)
		}
	}
	d := featGetWait(t, ch, q)
	featAssertDeaths(t, d, featDeath{Count: 3, Reason: "rejected", Queue: q, Exchange: "", RoutingKeys: []string{q}})
}

// dlx.html#routing: "It is possible to form a cycle of message dead-lettering. ... if the same
// message is dead-lettered to the same queue twice and there was no rejections in the entire
// cycle, the message will be dropped". RabbitMQ checks the x-death it has just written, so a
// message expiring in a queue whose dead-letter exchange routes back to it is dropped at once for
// that queue, while other queues the exchange routes to still receive it.
func TestDeadLetter_ExpiryCycleIsBroken(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, observer := featDeadLetterTarget(t, c)
	q := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": dlx, "x-message-ttl": int32(50)})
	featBind(t, c, q, "", dlx)
	featPublish(t, admin, "", q, featBodies("m")...)
	ch := openChannel(t, c)
	d := publishGetOne(t, ch, observer)
	featAssertDeaths(t, d, featDeath{Count: 1, Reason: "expired", Queue: q, Exchange: "", RoutingKeys: []string{q}})
	time.Sleep(250 * time.Millisecond) // several TTLs: a cycling message would have come round again
	if n := featReady(t, c, q); n != 0 {
		t.Errorf("cycling queue holds %d messages, want 0", n)
	}
	if n := featReady(t, c, observer); n != 0 {
		t.Errorf("observer got %d more copies, want 0", n)
	}
}

// dlx.html#routing: a dead-lettered message that cannot be routed (here: the dead-letter exchange
// does not exist) is dropped silently; the channel stays open.
func TestDeadLetter_MissingExchangeDropsMessage(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-dead-letter-exchange": uniqueName(t, "missing")})
	featPublish(t, admin, "", q, featBodies("m")...)
	ch := openChannel(t, c)
	if err := featGetWait(t, ch, q).Reject(false); err != nil {
		t.Fatalf("basic.reject: %v", err)
	}
	featWaitReady(t, c, q, 0)
	if _, _, err := ch.Get(q, true); err != nil {
		t.Fatalf("channel unusable after dead-lettering to a missing exchange: %v", err)
	}
}
