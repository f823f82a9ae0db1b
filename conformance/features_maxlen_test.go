package conformance

// Queue length limits (https://www.rabbitmq.com/maxlength.html): x-max-length, x-max-length-bytes
// and the x-overflow modes drop-head, reject-publish and reject-publish-dlx.

import (
	"slices"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// maxlength.html#overflow-behaviour: "The default behaviour for RabbitMQ when a maximum queue length
// or size is set and the maximum is reached is to drop or dead-letter messages from the front of
// the queue (i.e. the oldest messages in the queue)". The publishes are still confirmed.
func TestMaxLength_DropHeadDropsOldest(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-max-length": int32(2)})
	featPublish(t, admin, "", q, featBodies("m1", "m2", "m3", "m4")...)
	if got := featDrain(t, openChannel(t, c), q); !slices.Equal(got, []string{"m3", "m4"}) {
		t.Fatalf("queue holds %q, want [m3 m4]", got)
	}
}

// maxlength.html#definition-using-x-args: x-max-length-bytes limits "the total size of all message
// bodies in the queue"; reaching the limit exactly is allowed, exceeding it drops from the head,
// and a message larger than the limit on its own cannot stay either.
func TestMaxLengthBytes_DropHeadDropsOldest(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-max-length-bytes": int32(8)})
	ch := openChannel(t, c)
	featPublish(t, admin, "", q, featBodies("aaaa", "bbbb")...)
	if n := featReady(t, c, q); n != 2 {
		t.Fatalf("%d ready messages with exactly 8 body bytes, want 2", n)
	}
	featPublish(t, admin, "", q, featBodies("cccc")...)
	if got := featDrain(t, ch, q); !slices.Equal(got, []string{"bbbb", "cccc"}) {
		t.Fatalf("queue holds %q, want [bbbb cccc]", got)
	}
	featPublish(t, admin, "", q, featBodies("dddd", "123456789")...)
	if got := featDrain(t, ch, q); len(got) != 0 {
		t.Fatalf("queue holds %q after a 9-byte message, want nothing", got)
	}
}

// maxlength.html#overflow-behaviour: with x-overflow reject-publish "the most recently published
// messages will be discarded"; with publisher confirms "the publisher will be informed of the
// reject via a basic.nack". The queued messages are kept and, even with a dead-letter exchange, the
// refused ones are not dead-lettered. Once there is room again publishes are accepted.
func TestMaxLength_RejectPublishNacksAndKeepsOldest(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, dlq := featDeadLetterTarget(t, c)
	q := queueShared(t, c, amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish",
		"x-dead-letter-exchange": dlx})
	acks := featPublishAcks(t, admin, "", q, featBodies("m1", "m2", "m3", "m4")...)
	if !slices.Equal(acks, []bool{true, true, false, false}) {
		t.Fatalf("confirms %v, want [true true false false] (ack, ack, nack, nack)", acks)
	}
	ch := openChannel(t, c)
	if d := consumeGet(t, ch, q, true); string(d.Body) != "m1" {
		t.Fatalf("got %q, want m1", d.Body)
	}
	featPublish(t, admin, "", q, featBodies("m5")...)
	if got := featDrain(t, ch, q); !slices.Equal(got, []string{"m2", "m5"}) {
		t.Fatalf("queue holds %q, want [m2 m5]", got)
	}
	publishEmpty(t, ch, dlq)
}

// maxlength.html#overflow-behaviour: reject-publish applies to x-max-length-bytes as well.
func TestMaxLengthBytes_RejectPublishNacks(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	q := queueShared(t, c, amqp.Table{"x-max-length-bytes": int32(6), "x-overflow": "reject-publish"})
	acks := featPublishAcks(t, admin, "", q, featBodies("aaa", "bbb", "c")...)
	if !slices.Equal(acks, []bool{true, true, false}) {
		t.Fatalf("confirms %v, want [true true false]", acks)
	}
	if got := featDrain(t, openChannel(t, c), q); !slices.Equal(got, []string{"aaa", "bbb"}) {
		t.Fatalf("queue holds %q, want [aaa bbb]", got)
	}
}

// maxlength.html#overflow-behaviour: "reject-publish-dlx will also dead-letter rejected messages":
// the publisher gets a nack and the refused message goes to the dead-letter exchange with reason
// maxlen.
func TestMaxLength_RejectPublishDlxNacksAndDeadLetters(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	dlx, dlq := featDeadLetterTarget(t, c)
	q := queueShared(t, c, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish-dlx",
		"x-dead-letter-exchange": dlx})
	acks := featPublishAcks(t, admin, "", q, featBodies("kept", "refused")...)
	if !slices.Equal(acks, []bool{true, false}) {
		t.Fatalf("confirms %v, want [true false]", acks)
	}
	ch := openChannel(t, c)
	d := publishGetOne(t, ch, dlq)
	if string(d.Body) != "refused" || d.Exchange != dlx || d.RoutingKey != q {
		t.Errorf("dead-lettered %q via %q key %q, want \"refused\" via %q key %q", d.Body, d.Exchange, d.RoutingKey, dlx, q)
	}
	featAssertDeaths(t, d, featDeath{Count: 1, Reason: "maxlen", Queue: q, Exchange: "", RoutingKeys: []string{q}})
	featAssertFirstDeath(t, d, "maxlen", q, "")
	if got := featDrain(t, ch, q); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("queue holds %q, want [kept]", got)
	}
}

// maxlength.html#overflow-behaviour: "If a message is routed to multiple queues and rejected by at
// least one of them, the channel will inform the publisher via basic.nack", while the queues with
// room still receive it.
func TestMaxLength_RejectPublishByOneOfManyQueuesNacks(t *testing.T) {
	t.Parallel()
	c, admin := featAdmin(t)
	fan := featExchange(t, c, "fanout")
	full := queueShared(t, c, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})
	free := queueShared(t, c, nil)
	featPublish(t, admin, "", full, featBodies("filler")...)
	featBind(t, c, full, "", fan)
	featBind(t, c, free, "", fan)
	if acks := featPublishAcks(t, admin, fan, "", featBodies("fanned")...); acks[0] {
		t.Fatal("publish to a full reject-publish queue and a free one was acked, want nack")
	}
	ch := openChannel(t, c)
	if got := featDrain(t, ch, free); !slices.Equal(got, []string{"fanned"}) {
		t.Errorf("free queue holds %q, want [fanned]", got)
	}
	if got := featDrain(t, ch, full); !slices.Equal(got, []string{"filler"}) {
		t.Errorf("full queue holds %q, want [filler]", got)
	}
}
