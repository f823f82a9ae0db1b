package conformance

// Message TTL and queue expiry (https://www.rabbitmq.com/ttl.html).

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ttl.html#per-queue-message-ttl: "a message that has been in the queue for longer than the
// configured TTL is said to be dead ... will never be delivered": neither basic.get nor a consumer
// attached after the expiry receives it.
func TestMessageTTL_ExpiredMessageNeverDelivered(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-message-ttl": int32(100)})
	ch := openChannel(t, c)

	featPublish(t, admin, "", q, featBodies("to-get")...)
	time.Sleep(200 * time.Millisecond)
	publishEmpty(t, ch, q)

	featPublish(t, admin, "", q, featBodies("to-consume")...)
	time.Sleep(200 * time.Millisecond)
	d, err := ch.Consume(q, "late", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	noDelivery(t, d, 150*time.Millisecond)

	// Control: a message published while the consumer waits arrives.
	featPublish(t, admin, "", q, featBodies("fresh")...)
	if m := recvDelivery(t, d); string(m.Body) != "fresh" {
		t.Fatalf("got %q, want \"fresh\"", m.Body)
	}
}

// ttl.html#per-queue-message-ttl-caveats: RabbitMQ removes expired messages at the head of a queue
// without any consumer or basic.get, so the message count of a passive declare drops to 0 once
// the TTL has passed (and not before).
func TestMessageTTL_ExpiredMessagesRemovedWithoutConsumers(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	const ttl = 250 * time.Millisecond
	q := queueShared(t, c, amqp.Table{"x-message-ttl": int32(ttl / time.Millisecond)})
	start := time.Now()
	featPublish(t, admin, "", q, featBodies("m1", "m2", "m3")...)
	// Under load the answer may come after the TTL; only an early answer proves anything.
	if n := featReady(t, c, q); n != 3 && time.Since(start) < ttl {
		t.Fatalf("%d ready messages right after publishing, want 3", n)
	}
	featWaitReady(t, c, q, 0)
	if took := time.Since(start); took < ttl-20*time.Millisecond {
		t.Fatalf("messages removed after %v, before the TTL of %v", took, ttl)
	}
}

// ttl.html#per-message-ttl-caveats: "Only when expired messages reach the head of a queue will they
// actually be discarded": an expired message behind a live one still counts as ready, yet it is
// never delivered: once the live message is taken it is discarded.
func TestMessageExpiration_ExpiredBehindLiveMessageDiscardedAtHead(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, nil)
	featPublish(t, admin, "", q,
		amqp.Publishing{Body: []byte("keep")},
		amqp.Publishing{Body: []byte("short"), Expiration: "50"})
	time.Sleep(200 * time.Millisecond)
	if n := featReady(t, c, q); n != 2 {
		t.Errorf("%d ready messages with the expired one behind a live one, want 2", n)
	}
	if got := featDrain(t, openChannel(t, c), q); len(got) != 1 || got[0] != "keep" {
		t.Fatalf("basic.get returned %q, want [keep]", got)
	}
	featWaitReady(t, c, q, 0)
}

// ttl.html#per-queue-message-ttl: a delivered, unacknowledged message does not expire while the
// consumer holds it, but it keeps its original expiry time: returned to the queue after the TTL
// has passed (basic.nack with requeue), it expires there instead of being redelivered, and is
// dead-lettered with reason expired.
func TestMessageTTL_RequeuedAfterTTLExpires(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, dlq := featDeadLetterTarget(t, c)
	q := queueShared(t, c, amqp.Table{"x-message-ttl": int32(100), "x-dead-letter-exchange": dlx})
	featPublish(t, admin, "", q, featBodies("held")...)
	ch := openChannel(t, c)
	deliveries := qosConsume(t, ch, q, "c")
	d := recvDelivery(t, deliveries)
	time.Sleep(200 * time.Millisecond)
	if n := featReady(t, c, dlq); n != 0 {
		t.Fatalf("unacked message dead-lettered while held (%d in dead-letter queue)", n)
	}
	if err := d.Nack(false, true); err != nil {
		t.Fatalf("basic.nack: %v", err)
	}
	dead := publishGetOne(t, ch, dlq)
	featAssertDeaths(t, dead, featDeath{Count: 1, Reason: "expired", Queue: q, Exchange: "", RoutingKeys: []string{q}})
	noDelivery(t, deliveries, 50*time.Millisecond)
}

// ttl.html#per-queue-message-ttl: with x-message-ttl 0 "messages expire upon reaching a queue
// unless they can be delivered to a consumer immediately".
func TestMessageTTL_ZeroDeliveredOnlyToWaitingConsumer(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-message-ttl": int32(0)})
	ch := openChannel(t, c)
	featTTLZero(t, c, admin, ch, q, amqp.Publishing{Body: []byte("m")})
}

// featTTLZero publishes msg (expiring at once) to q with a consumer waiting, which must get it,
// and again with no consumer, after which q must be empty.
func featTTLZero(t *testing.T, c *amqp.Connection, admin, ch *amqp.Channel, q string, msg amqp.Publishing) {
	t.Helper()
	d, err := ch.Consume(q, "waiting", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	featPublish(t, admin, "", q, msg)
	if m := recvDelivery(t, d); string(m.Body) != string(msg.Body) {
		t.Fatalf("waiting consumer got %q, want %q", m.Body, msg.Body)
	}
	if err := ch.Cancel("waiting", false); err != nil {
		t.Fatalf("basic.cancel: %v", err)
	}
	featPublish(t, admin, "", q, msg)
	featWaitReady(t, c, q, 0)
	publishEmpty(t, ch, q)
}

// ttl.html#per-message-ttl-in-publishers: the expiration property sets a TTL for one message; a
// message published without it in the same queue stays.
func TestMessageExpiration_PerMessageTTL(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, nil)
	featPublish(t, admin, "", q,
		amqp.Publishing{Body: []byte("short"), Expiration: "100"},
		amqp.Publishing{Body: []byte("keep")})
	featWaitReady(t, c, q, 1)
	time.Sleep(100 * time.Millisecond)
	if got := featDrain(t, openChannel(t, c), q); len(got) != 1 || got[0] != "keep" {
		t.Fatalf("queue holds %q, want [keep]", got)
	}
}

// ttl.html#per-message-ttl-in-publishers: "When both a per-queue and a per-message TTL are
// specified, the lower value between the two will be chosen."
func TestMessageExpiration_SmallerOfQueueAndMessageTTLApplies(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	cases := []struct {
		name       string
		queueTTL   int32
		expiration string
		expires    bool
	}{
		{"queue-ttl-smaller", 100, "60000", true},
		{"message-ttl-smaller", 60000, "100", true},
		{"both-long", 60000, "60000", false},
	}
	queues := make([]string, len(cases))
	for i, tc := range cases {
		queues[i] = queueShared(t, c, amqp.Table{"x-message-ttl": tc.queueTTL})
		featPublish(t, admin, "", queues[i], amqp.Publishing{Body: []byte(tc.name), Expiration: tc.expiration})
	}
	for i, tc := range cases {
		if tc.expires {
			featWaitReady(t, c, queues[i], 0)
		}
	}
	for i, tc := range cases {
		if !tc.expires {
			if n := featReady(t, c, queues[i]); n != 1 {
				t.Errorf("%s (x-message-ttl %d, expiration %s): %d ready, want 1", tc.name, tc.queueTTL, tc.expiration, n)
			}
		}
	}
}

// ttl.html#per-message-ttl-in-publishers: expiration "0" behaves like a zero queue TTL: delivered
// to a waiting consumer, dropped otherwise.
func TestMessageExpiration_ZeroDeliveredOnlyToWaitingConsumer(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, nil)
	ch := openChannel(t, c)
	featTTLZero(t, c, admin, ch, q, amqp.Publishing{Body: []byte("m"), Expiration: "0"})
}

// ttl.html#per-message-ttl-in-publishers: "The value of the expiration field describes the TTL
// period in milliseconds" as a string holding a non-negative integer. RabbitMQ 3.10 closes the
// channel with 406 PRECONDITION_FAILED for anything else, naming the parse error.
func TestMessageExpiration_InvalidIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := queueShared(t, c, nil)
	cases := []struct{ expiration, reason string }{
		{"abc", "no_integer"},
		{"-1", "{value_negative,-1}"},
		{"1.5", `{leftover_string,".5"}`},
	}
	for _, tc := range cases {
		t.Run(tc.expiration, func(t *testing.T) {
			ch := openChannel(t, c)
			closed := ch.NotifyClose(make(chan *amqp.Error, 1))
			if err := ch.PublishWithContext(ctx(t), "", q, false, false,
				amqp.Publishing{Body: []byte("x"), Expiration: tc.expiration}); err != nil {
				t.Fatalf("publish: %v", err)
			}
			e := consumeChannelClosed(t, closed, 406)
			want := "PRECONDITION_FAILED - invalid expiration '" + tc.expiration + "': " + tc.reason
			if e.Reason != want {
				t.Errorf("reply text %q, want %q", e.Reason, want)
			}
		})
	}
	if n := featReady(t, c, q); n != 0 {
		t.Errorf("%d messages enqueued, want 0", n)
	}
}

// ttl.html#queue-ttl: with x-expires "the queue will expire after a period of time only when it is
// not used (the queue has no consumers, it has not been redeclared, and basic.get has not been
// invoked)": it is deleted, so a passive declare answers 404. A passive declare counts as use in
// RabbitMQ (it renews the lease), so this test never polls faster than the expiry.
func TestQueueExpires_UnusedQueueDeleted(t *testing.T) {
	t.Parallel()
	c := dial(t)
	const expires = 250 * time.Millisecond
	start := time.Now()
	q := queueShared(t, c, amqp.Table{"x-expires": int32(expires / time.Millisecond)})
	time.Sleep(expires / 2)
	// Under load the check may come after the expiry; only an early 404 is wrong.
	if _, err := openChannel(t, c).QueueDeclarePassive(q, false, false, false, false, nil); err != nil && time.Since(start) < expires {
		t.Fatalf("queue gone %v after declaring it with x-expires %v: %v", time.Since(start), expires, err)
	}
	featWaitExpired(t, c, q, expires)
}

// featWaitExpired checks every expires+100ms (bounded) until a passive declare of q answers 404.
func featWaitExpired(t *testing.T, c *amqp.Connection, q string, expires time.Duration) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		time.Sleep(expires + 100*time.Millisecond)
		_, err := openChannel(t, c).QueueDeclarePassive(q, false, false, false, false, nil)
		if err != nil {
			amqpErr(t, err, 404)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s with x-expires %v still exists after 3s", q, expires)
		}
	}
}

// ttl.html#queue-ttl: a queue with a consumer is in use and does not expire; once the consumer is
// cancelled the queue expires.
func TestQueueExpires_ConsumerKeepsQueueAlive(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := queueShared(t, c, amqp.Table{"x-expires": int32(150)})
	ch := openChannel(t, c)
	if _, err := ch.Consume(q, "keeper", true, false, false, false, nil); err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if qi := queueExists(t, c, q); qi.Consumers != 1 {
		t.Fatalf("queue reports %d consumers, want 1", qi.Consumers)
	}
	if err := ch.Cancel("keeper", false); err != nil {
		t.Fatalf("basic.cancel: %v", err)
	}
	featWaitExpired(t, c, q, 150*time.Millisecond)
}

// ttl.html#queue-ttl: redeclaring the queue counts as use and renews the lease.
func TestQueueExpires_RedeclareRenewsLease(t *testing.T) {
	t.Parallel()
	c := dial(t)
	args := amqp.Table{"x-expires": int32(400)}
	q := queueShared(t, c, args)
	for range 6 {
		time.Sleep(100 * time.Millisecond)
		if _, err := openChannel(t, c).QueueDeclare(q, false, false, false, false, args); err != nil {
			t.Fatalf("redeclare: %v", err)
		}
	}
	// 700ms after the first declare, well past the expiry: alive only thanks to the redeclares.
	time.Sleep(100 * time.Millisecond)
	queueExists(t, c, q)
	featWaitExpired(t, c, q, 400*time.Millisecond)
}
