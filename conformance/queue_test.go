package conformance

// Queues (AMQP 0-9-1 §1.7 class queue, §3.1.4 message queue properties, RabbitMQ's queue
// arguments https://www.rabbitmq.com/queues.html#optional-arguments).

import (
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// queueShared declares a non-exclusive, non-auto-delete transient queue with a unique name and
// deletes it when the test ends.
func queueShared(t testing.TB, c *amqp.Connection, args amqp.Table) string {
	t.Helper()
	name := uniqueName(t)
	if _, err := openChannel(t, c).QueueDeclare(name, false, false, false, false, args); err != nil {
		t.Fatalf("queue.declare %s: %v", name, err)
	}
	t.Cleanup(func() { queueDeleteAfter(name) })
	return name
}

// queueDeleteAfter deletes a queue on a connection of its own (the test's may be closed).
func queueDeleteAfter(name string) {
	c, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return
	}
	defer c.Close()
	if ch, err := c.Channel(); err == nil {
		ch.QueueDelete(name, false, false, false)
	}
}

// queueGone polls (bounded) until a passive declare of name answers 404; RabbitMQ deletes
// exclusive and auto-delete queues asynchronously.
func queueGone(t testing.TB, c *amqp.Connection, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := openChannel(t, c).QueueDeclarePassive(name, false, false, false, false, nil)
		if err == nil {
			if time.Now().After(deadline) {
				t.Fatalf("queue %s still exists after 5s", name)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		amqpErr(t, err, 404)
		return
	}
}

// queueExists asserts a passive declare of name succeeds.
func queueExists(t testing.TB, c *amqp.Connection, name string) amqp.Queue {
	t.Helper()
	q, err := openChannel(t, c).QueueDeclarePassive(name, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("passive queue.declare %s: %v", name, err)
	}
	return q
}

// AMQP 0-9-1 §1.7.2.1/§1.7.2.2: redeclaring a queue with the same properties is allowed, and
// declare-ok (also for passive) reports message-count — messages ready, not those awaiting
// acknowledgement — and consumer-count.
func TestQueueDeclare_RedeclareEqualReturnsCounts(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	name := queueShared(t, c, amqp.Table{"x-max-length": int32(100)})
	for range 3 {
		publishSync(t, ch, "", name, false, amqp.Publishing{Body: []byte("m")})
	}
	q, err := ch.QueueDeclare(name, false, false, false, false, amqp.Table{"x-max-length": int32(100)})
	if err != nil {
		t.Fatalf("equal redeclare: %v", err)
	}
	if q.Name != name || q.Messages != 3 || q.Consumers != 0 {
		t.Fatalf("declare-ok %+v, want %s with 3 messages and 0 consumers", q, name)
	}

	cons := openChannel(t, c)
	if err := cons.Qos(1, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	ds, err := cons.Consume(name, "", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	recvDelivery(t, ds) // one message now awaits acknowledgement
	for _, passive := range []bool{false, true} {
		declare := ch.QueueDeclare
		if passive {
			declare = ch.QueueDeclarePassive
		}
		q, err := declare(name, false, false, false, false, amqp.Table{"x-max-length": int32(100)})
		if err != nil {
			t.Fatalf("redeclare (passive=%v): %v", passive, err)
		}
		if q.Messages != 2 || q.Consumers != 1 {
			t.Fatalf("declare-ok (passive=%v) %+v, want 2 ready messages and 1 consumer", passive, q)
		}
	}
}

// AMQP 0-9-1 §1.7.2.1: "If [the queue exists and] the client's declaration differs, the server
// MUST raise a channel exception with status code 406 (precondition failed)". RabbitMQ compares
// durable, auto-delete and the arguments it knows (x-message-ttl, x-expires, x-max-length,
// x-dead-letter-exchange, x-max-priority, x-queue-mode, x-overflow, ...); a missing argument
// differs from a present one.
func TestQueueDeclare_RedeclareWithDifferentPropertiesIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	type decl struct {
		durable, autoDelete bool
		args                amqp.Table
	}
	cases := map[string][2]decl{
		"durable":        {{}, {durable: true}},
		"auto-delete":    {{autoDelete: true}, {}},
		"ttl-differs":    {{args: amqp.Table{"x-message-ttl": int32(1000)}}, {args: amqp.Table{"x-message-ttl": int32(2000)}}},
		"ttl-added":      {{}, {args: amqp.Table{"x-message-ttl": int32(2000)}}},
		"ttl-removed":    {{args: amqp.Table{"x-message-ttl": int32(1000)}}, {}},
		"expires":        {{args: amqp.Table{"x-expires": int32(100000)}}, {args: amqp.Table{"x-expires": int32(200000)}}},
		"max-length":     {{args: amqp.Table{"x-max-length": int32(5)}}, {args: amqp.Table{"x-max-length": int32(6)}}},
		"dead-letter-ex": {{args: amqp.Table{"x-dead-letter-exchange": "a"}}, {args: amqp.Table{"x-dead-letter-exchange": "b"}}},
		"max-priority":   {{args: amqp.Table{"x-max-priority": int32(5)}}, {args: amqp.Table{"x-max-priority": int32(6)}}},
		"queue-mode":     {{}, {args: amqp.Table{"x-queue-mode": "lazy"}}},
		"overflow":       {{}, {args: amqp.Table{"x-overflow": "reject-publish"}}},
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			ch := openChannel(t, c)
			if _, err := ch.QueueDeclare(q, d[0].durable, d[0].autoDelete, false, false, d[0].args); err != nil {
				t.Fatalf("queue.declare: %v", err)
			}
			defer queueDeleteAfter(q)
			_, err := ch.QueueDeclare(q, d[1].durable, d[1].autoDelete, false, false, d[1].args)
			amqpErr(t, err, 406)
		})
	}
}

// RabbitMQ treats as equivalent: integer arguments of different widths with the same value, an
// explicit x-queue-type "classic" for a classic queue, and arguments it does not know.
func TestQueueDeclare_RedeclareEquivalentArgumentsOk(t *testing.T) {
	t.Parallel()
	c := dial(t)
	cases := map[string][2]amqp.Table{
		"int-width":     {{"x-message-ttl": int32(1000)}, {"x-message-ttl": int64(1000)}},
		"classic-type":  {nil, {"x-queue-type": "classic"}},
		"unknown-args":  {{"foo": "a"}, {"foo": "b"}},
		"unknown-added": {nil, {"x-not-a-rabbit-arg": "b"}},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			ch := openChannel(t, c)
			if _, err := ch.QueueDeclare(q, false, false, false, false, args[0]); err != nil {
				t.Fatalf("queue.declare: %v", err)
			}
			defer queueDeleteAfter(q)
			if _, err := ch.QueueDeclare(q, false, false, false, false, args[1]); err != nil {
				t.Fatalf("redeclare with %v after %v: %v", args[1], args[0], err)
			}
		})
	}
}

// RabbitMQ: redeclaring a queue with a different exclusive flag is 405 RESOURCE_LOCKED (not
// 406), whichever way it differs, even on the declaring connection.
func TestQueueDeclare_RedeclareWithDifferentExclusiveIsResourceLocked(t *testing.T) {
	t.Parallel()
	c := dial(t)
	excl := uniqueName(t, "excl")
	if _, err := openChannel(t, c).QueueDeclare(excl, false, false, true, false, nil); err != nil {
		t.Fatalf("queue.declare exclusive: %v", err)
	}
	_, err := openChannel(t, c).QueueDeclare(excl, false, false, false, false, nil)
	amqpErr(t, err, 405)

	shared := queueShared(t, c, nil)
	_, err = openChannel(t, c).QueueDeclare(shared, false, false, true, false, nil)
	amqpErr(t, err, 405)
}

// AMQP 0-9-1 §1.7.2.1 passive: "The client MAY ask the server to assert that a queue exists
// without creating the queue if not. If the queue does not exist, the server treats this as a
// failure" — 404 NOT_FOUND channel error, the connection stays open.
func TestQueueDeclare_PassiveMissingIsNotFound(t *testing.T) {
	t.Parallel()
	c := dial(t)
	for _, name := range []string{uniqueName(t), "amq.gen-" + uniqueName(t), ""} {
		_, err := openChannel(t, c).QueueDeclarePassive(name, false, false, false, false, nil)
		amqpErr(t, err, 404)
	}
	if c.IsClosed() {
		t.Fatal("connection closed by a channel error")
	}
}

// AMQP 0-9-1 §1.7.2.1 queue: "If the queue name is empty, the server MUST create a new queue with
// a unique generated name"; RabbitMQ's names start with "amq.gen-".
func TestQueueDeclare_ServerNamedQueue(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	a, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	b, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	for _, q := range []amqp.Queue{a, b} {
		if !strings.HasPrefix(q.Name, "amq.gen-") || len(q.Name) <= len("amq.gen-") {
			t.Errorf("server-named queue %q, want prefix amq.gen-", q.Name)
		}
		if q.Messages != 0 || q.Consumers != 0 {
			t.Errorf("new queue %+v has messages or consumers", q)
		}
	}
	if a.Name == b.Name {
		t.Fatalf("two server-named queues share the name %q", a.Name)
	}
	queueExists(t, c, a.Name)
}

// AMQP 0-9-1 §1.7.2.1: "Queue names starting with "amq." are reserved for pre-declared and
// standardised queues. The client MAY declare a queue starting with "amq." if the passive option
// is set" — otherwise 403 ACCESS_REFUSED. A passive declare of such a missing name is 404.
func TestQueueDeclare_ReservedAmqPrefixIsAccessRefused(t *testing.T) {
	t.Parallel()
	c := dial(t)
	name := "amq." + uniqueName(t)
	_, err := openChannel(t, c).QueueDeclare(name, false, true, true, false, nil)
	amqpErr(t, err, 403)
	_, err = openChannel(t, c).QueueDeclarePassive(name, false, true, true, false, nil)
	amqpErr(t, err, 404)
}

// RabbitMQ validates the queue arguments it knows on declare; a wrong type or out-of-range value
// is a 406 PRECONDITION_FAILED channel error and no queue is created.
func TestQueueDeclare_InvalidArgumentsArePreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	cases := map[string]amqp.Table{
		"ttl-string":            {"x-message-ttl": "1000"},
		"ttl-negative":          {"x-message-ttl": int32(-1)},
		"ttl-float":             {"x-message-ttl": 1.5},
		"ttl-bool":              {"x-message-ttl": true},
		"ttl-too-large":         {"x-message-ttl": int64(1) << 40},
		"max-length-negative":   {"x-max-length": int32(-1)},
		"max-length-string":     {"x-max-length": "5"},
		"max-bytes-negative":    {"x-max-length-bytes": int32(-1)},
		"expires-zero":          {"x-expires": int32(0)},
		"expires-negative":      {"x-expires": int32(-5)},
		"expires-string":        {"x-expires": "5"},
		"max-priority-256":      {"x-max-priority": int32(256)},
		"max-priority-negative": {"x-max-priority": int32(-1)},
		"max-priority-string":   {"x-max-priority": "5"},
		"queue-type-unknown":    {"x-queue-type": "no-such-type"},
		"queue-type-int":        {"x-queue-type": int32(1)},
		"overflow-unknown":      {"x-overflow": "drop-everything"},
		"dlx-int":               {"x-dead-letter-exchange": int32(1)},
		"dlrk-int":              {"x-dead-letter-routing-key": int32(1), "x-dead-letter-exchange": "dlx"},
		"dlrk-without-dlx":      {"x-dead-letter-routing-key": "k"},
		"queue-mode-unknown":    {"x-queue-mode": "sideways"},
		"single-active-string":  {"x-single-active-consumer": "yes"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			defer queueDeleteAfter(q)
			_, err := openChannel(t, c).QueueDeclare(q, false, false, false, false, args)
			amqpErr(t, err, 406)
			_, err = openChannel(t, c).QueueDeclarePassive(q, false, false, false, false, nil)
			amqpErr(t, err, 404)
		})
	}
}

// RabbitMQ accepts the boundary values of its queue arguments: a zero TTL and max-length, max
// priority 255, unsigned and 8-bit integer types, and unknown x- arguments.
func TestQueueDeclare_ValidArgumentBoundsAccepted(t *testing.T) {
	t.Parallel()
	c := dial(t)
	cases := map[string]amqp.Table{
		"ttl-zero":         {"x-message-ttl": int32(0)},
		"ttl-uint8":        {"x-message-ttl": uint8(5)},
		"ttl-uint32":       {"x-message-ttl": uint32(5)},
		"max-length-zero":  {"x-max-length": int32(0)},
		"max-priority-255": {"x-max-priority": int32(255)},
		"unknown-x-arg":    {"x-not-a-rabbit-arg": "v"},
		"overflow-drop":    {"x-overflow": "drop-head"},
		"overflow-reject":  {"x-overflow": "reject-publish-dlx"},
		"single-active":    {"x-single-active-consumer": true},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			defer queueDeleteAfter(q)
			if _, err := openChannel(t, c).QueueDeclare(q, false, false, false, false, args); err != nil {
				t.Fatalf("queue.declare with %v: %v", args, err)
			}
		})
	}
}

// AMQP 0-9-1 §1.7.2.3 queue.bind / §1.7.2.5 queue.unbind: a binding routes matching messages to
// the queue; binding twice is one binding; after unbind nothing more arrives.
func TestQueueBind_BindAndUnbindRouting(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q := exchangeTempQueue(t, ch)
	for range 2 {
		if err := ch.QueueBind(q, "rk", "amq.direct", false, nil); err != nil {
			t.Fatalf("queue.bind: %v", err)
		}
	}
	publishSync(t, ch, "amq.direct", "rk", false, amqp.Publishing{Body: []byte("bound")})
	if m := publishGetOne(t, ch, q); string(m.Body) != "bound" || m.Exchange != "amq.direct" || m.RoutingKey != "rk" {
		t.Fatalf("got %q via %q/%q", m.Body, m.Exchange, m.RoutingKey)
	}
	publishEmpty(t, ch, q) // a duplicate binding would have routed it twice
	if err := ch.QueueUnbind(q, "rk", "amq.direct", nil); err != nil {
		t.Fatalf("queue.unbind: %v", err)
	}
	publishSync(t, ch, "amq.direct", "rk", false, amqp.Publishing{Body: []byte("unbound")})
	publishEmpty(t, ch, q)
}

// AMQP 0-9-1 §1.7.2.3: with a headers exchange the binding arguments are part of the binding's
// identity; queue.unbind must name the same arguments to remove it.
func TestQueueBind_UnbindMatchesArguments(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q := exchangeTempQueue(t, ch)
	args := amqp.Table{"x-match": "any", "h": "v"}
	if err := ch.QueueBind(q, "", "amq.headers", false, args); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	if err := ch.QueueUnbind(q, "", "amq.headers", amqp.Table{"x-match": "any", "h": "other"}); err != nil {
		t.Fatalf("queue.unbind of another binding: %v", err)
	}
	msg := amqp.Publishing{Headers: amqp.Table{"h": "v"}, Body: []byte("still bound")}
	publishSync(t, ch, "amq.headers", "", false, msg)
	publishGetOne(t, ch, q)
	if err := ch.QueueUnbind(q, "", "amq.headers", args); err != nil {
		t.Fatalf("queue.unbind: %v", err)
	}
	publishSync(t, ch, "amq.headers", "", false, msg)
	publishEmpty(t, ch, q)
}

// RabbitMQ: queue.bind naming a missing exchange or queue is 404 NOT_FOUND; queue.unbind of a
// binding that does not exist — even with a missing queue or exchange — answers unbind-ok.
func TestQueueBind_MissingEntities(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := exchangeTempQueue(t, openChannel(t, c))
	amqpErr(t, openChannel(t, c).QueueBind(q, "k", uniqueName(t), false, nil), 404)
	amqpErr(t, openChannel(t, c).QueueBind(uniqueName(t), "k", "amq.direct", false, nil), 404)
	ch := openChannel(t, c)
	for _, u := range [][2]string{{q, "amq.direct"}, {q, uniqueName(t)}, {uniqueName(t), "amq.direct"}} {
		if err := ch.QueueUnbind(u[0], "never-bound", u[1], nil); err != nil {
			t.Fatalf("queue.unbind %s from %s: %v", u[0], u[1], err)
		}
	}
}

// AMQP 0-9-1 §1.7.2.3 queue: "If the queue name is empty, the server uses the last queue declared
// on the channel. If the routing key is also empty, the server uses this queue name for the
// routing key as well." The same shortcut serves basic.get, queue.purge and queue.delete; on a
// channel that declared no queue it is 404 NOT_FOUND.
func TestQueueBind_EmptyNameMeansLastDeclaredQueue(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	q := exchangeTempQueue(t, ch)
	if err := ch.QueueBind("", "", "amq.direct", false, nil); err != nil {
		t.Fatalf("queue.bind with empty queue and key: %v", err)
	}
	publishSync(t, ch, "amq.direct", q, false, amqp.Publishing{Body: []byte("by-name")})
	m, ok, err := ch.Get("", true)
	if err != nil || !ok || string(m.Body) != "by-name" {
		t.Fatalf("basic.get on the empty name: ok=%v err=%v body %q", ok, err, m.Body)
	}
	publishSync(t, ch, "", q, false, amqp.Publishing{Body: []byte("purged")})
	if n, err := ch.QueuePurge("", false); err != nil || n != 1 {
		t.Fatalf("queue.purge on the empty name: %d, %v; want 1", n, err)
	}
	if _, err := ch.QueueDelete("", false, false, false); err != nil {
		t.Fatalf("queue.delete on the empty name: %v", err)
	}
	queueGone(t, c, q)

	amqpErr(t, openChannel(t, c).QueueBind("", "", "amq.direct", false, nil), 404)
	_, _, err = openChannel(t, c).Get("", true)
	amqpErr(t, err, 404)
}

// AMQP 0-9-1 §1.7.2.7 queue.purge: "removes all messages from a queue which are not awaiting
// acknowledgment" and purge-ok reports how many; unacked messages survive and come back when
// their consumer's channel closes. Purging a missing queue is 404.
func TestQueuePurge_ReturnsCountAndKeepsUnacked(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	q := queueShared(t, c, nil)
	for i := range 4 {
		publishSync(t, ch, "", q, false, amqp.Publishing{Body: fmt.Appendf(nil, "m%d", i)})
	}
	getter := openChannel(t, c)
	held, ok, err := getter.Get(q, false)
	if err != nil || !ok {
		t.Fatalf("basic.get: ok=%v err=%v", ok, err)
	}
	n, err := ch.QueuePurge(q, false)
	if err != nil || n != 3 {
		t.Fatalf("queue.purge: %d, %v; want 3 (the unacked message stays)", n, err)
	}
	if n, err := ch.QueuePurge(q, false); err != nil || n != 0 {
		t.Fatalf("second queue.purge: %d, %v; want 0", n, err)
	}
	if err := getter.Close(); err != nil {
		t.Fatalf("channel.close: %v", err)
	}
	m := publishGetOne(t, ch, q)
	if string(m.Body) != string(held.Body) || !m.Redelivered {
		t.Fatalf("after the holder closed got %q redelivered=%v, want %q redelivered", m.Body, m.Redelivered, held.Body)
	}
	_, err = openChannel(t, c).QueuePurge(uniqueName(t), false)
	amqpErr(t, err, 404)
}

// AMQP 0-9-1 §1.7.2.9 queue.delete: delete-ok reports the number of messages deleted; if-empty
// refuses (406 PRECONDITION_FAILED) while the queue holds messages.
func TestQueueDelete_ReturnsCountAndIfEmpty(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	q := queueShared(t, c, nil)
	for range 2 {
		publishSync(t, ch, "", q, false, amqp.Publishing{Body: []byte("m")})
	}
	_, err := openChannel(t, c).QueueDelete(q, false, true, false)
	amqpErr(t, err, 406)
	if e, _ := err.(*amqp.Error); e == nil || e.Reason != fmt.Sprintf("PRECONDITION_FAILED - queue '%s' in vhost '/' not empty", q) {
		t.Fatalf("reply text %v, want RabbitMQ's", err)
	}
	if got := queueExists(t, c, q); got.Messages != 2 {
		t.Fatalf("after the refused delete: %d messages, want 2", got.Messages)
	}
	n, err := openChannel(t, c).QueueDelete(q, false, false, false)
	if err != nil || n != 2 {
		t.Fatalf("queue.delete: %d, %v; want 2", n, err)
	}
	queueGone(t, c, q)

	empty := queueShared(t, c, nil)
	if n, err := openChannel(t, c).QueueDelete(empty, false, true, false); err != nil || n != 0 {
		t.Fatalf("if-empty delete of an empty queue: %d, %v", n, err)
	}
}

// AMQP 0-9-1 §1.7.2.9 if-unused: "the server will only delete the queue if it has no consumers"
// — else 406 PRECONDITION_FAILED. Once the consumer cancels, the delete succeeds.
func TestQueueDelete_IfUnusedWithConsumerIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := queueShared(t, c, nil)
	cons := openChannel(t, c)
	if _, err := cons.Consume(q, "tag", false, false, false, false, nil); err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	_, err := openChannel(t, c).QueueDelete(q, true, false, false)
	amqpErr(t, err, 406)
	if err := cons.Cancel("tag", false); err != nil {
		t.Fatalf("basic.cancel: %v", err)
	}
	if _, err := openChannel(t, c).QueueDelete(q, true, false, false); err != nil {
		t.Fatalf("if-unused delete without consumers: %v", err)
	}
	queueGone(t, c, q)
}

// RabbitMQ makes queue.delete idempotent: deleting a missing queue answers delete-ok with 0.
func TestQueueDelete_MissingIsOk(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	if n, err := ch.QueueDelete(uniqueName(t), false, false, false); err != nil || n != 0 {
		t.Fatalf("queue.delete of a missing queue: %d, %v", n, err)
	}
	if n, err := ch.QueueDelete(uniqueName(t), true, true, false); err != nil || n != 0 {
		t.Fatalf("queue.delete if-unused if-empty of a missing queue: %d, %v", n, err)
	}
}

// RabbitMQ consumer cancel notification (https://www.rabbitmq.com/consumer-cancel.html, the
// consumer_cancel_notify capability): deleting a queue sends basic.cancel to its consumers.
func TestQueueDelete_CancelsConsumers(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := queueShared(t, c, nil)
	cons := openChannel(t, c)
	cancels := cons.NotifyCancel(make(chan string, 1))
	if _, err := cons.Consume(q, "doomed", false, false, false, false, nil); err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	if _, err := openChannel(t, c).QueueDelete(q, false, false, false); err != nil {
		t.Fatalf("queue.delete: %v", err)
	}
	select {
	case tag := <-cancels:
		if tag != "doomed" {
			t.Fatalf("basic.cancel for %q, want doomed", tag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.cancel after the queue was deleted")
	}
}

// AMQP 0-9-1 §1.7.2.1 exclusive: "Exclusive queues may only be accessed by the current connection"
// — other connections get 405 RESOURCE_LOCKED for declare (passive or not), consume, bind, purge,
// get and delete. Publishing to it from elsewhere is allowed.
func TestQueueExclusive_OtherConnectionIsResourceLocked(t *testing.T) {
	t.Parallel()
	owner := dial(t)
	ownerCh := openChannel(t, owner)
	q := uniqueName(t)
	if _, err := ownerCh.QueueDeclare(q, false, false, true, false, nil); err != nil {
		t.Fatalf("queue.declare exclusive: %v", err)
	}
	other := dial(t)
	ops := map[string]func(ch *amqp.Channel) error{
		"declare": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(q, false, false, true, false, nil)
			return err
		},
		"declare-passive": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(q, false, false, true, false, nil)
			return err
		},
		"consume": func(ch *amqp.Channel) error {
			_, err := ch.Consume(q, "", false, false, false, false, nil)
			return err
		},
		"bind":   func(ch *amqp.Channel) error { return ch.QueueBind(q, "k", "amq.direct", false, nil) },
		"purge":  func(ch *amqp.Channel) error { _, err := ch.QueuePurge(q, false); return err },
		"get":    func(ch *amqp.Channel) error { _, _, err := ch.Get(q, false); return err },
		"delete": func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			amqpErr(t, op(openChannel(t, other)), 405)
		})
	}
	publishSync(t, openChannel(t, other), "", q, false, amqp.Publishing{Body: []byte("from elsewhere")})
	if m := publishGetOne(t, ownerCh, q); string(m.Body) != "from elsewhere" {
		t.Fatalf("owner got %q", m.Body)
	}
}

// AMQP 0-9-1 §1.7.2.1 exclusive: exclusive queues "are deleted when that connection closes".
func TestQueueExclusive_DeletedWhenConnectionCloses(t *testing.T) {
	t.Parallel()
	owner, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer owner.Close()
	ch, err := owner.Channel()
	if err != nil {
		t.Fatalf("channel.open: %v", err)
	}
	q := uniqueName(t)
	if _, err := ch.QueueDeclare(q, false, false, true, false, nil); err != nil {
		t.Fatalf("queue.declare exclusive: %v", err)
	}
	other := dial(t)
	amqpErr(t, func() error {
		_, err := openChannel(t, other).QueueDeclarePassive(q, false, false, true, false, nil)
		return err
	}(), 405)
	if err := owner.Close(); err != nil {
		t.Fatalf("connection.close: %v", err)
	}
	queueGone(t, other, q)
}

// AMQP 0-9-1 §1.7.2.1 auto-delete: "If set, the queue is deleted when all consumers have finished
// using it" — not before it had a first consumer, not while one of several remains, and right after
// the last one cancels.
func TestQueueAutoDelete_DeletedAfterLastConsumerCancels(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := uniqueName(t)
	ch := openChannel(t, c)
	if _, err := ch.QueueDeclare(q, false, true, false, false, nil); err != nil {
		t.Fatalf("queue.declare auto-delete: %v", err)
	}
	t.Cleanup(func() { queueDeleteAfter(q) })
	time.Sleep(50 * time.Millisecond)
	queueExists(t, c, q)
	for _, tag := range []string{"a", "b"} {
		if _, err := ch.Consume(q, tag, false, false, false, false, nil); err != nil {
			t.Fatalf("basic.consume: %v", err)
		}
	}
	if err := ch.Cancel("a", false); err != nil {
		t.Fatalf("basic.cancel: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := queueExists(t, c, q); got.Consumers != 1 {
		t.Fatalf("after one of two cancels: %d consumers, want 1", got.Consumers)
	}
	if err := ch.Cancel("b", false); err != nil {
		t.Fatalf("basic.cancel: %v", err)
	}
	queueGone(t, c, q)
}

// AMQP 0-9-1 §1.7.2.1 auto-delete: closing the channel of the last consumer also counts as the
// consumer finishing.
func TestQueueAutoDelete_DeletedWhenLastConsumerChannelCloses(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := uniqueName(t)
	if _, err := openChannel(t, c).QueueDeclare(q, false, true, false, false, nil); err != nil {
		t.Fatalf("queue.declare auto-delete: %v", err)
	}
	t.Cleanup(func() { queueDeleteAfter(q) })
	cons, err := c.Channel()
	if err != nil {
		t.Fatalf("channel.open: %v", err)
	}
	if _, err := cons.Consume(q, "", false, false, false, false, nil); err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	if err := cons.Close(); err != nil {
		t.Fatalf("channel.close: %v", err)
	}
	queueGone(t, c, q)
}

// AMQP 0-9-1 §1.7.2.1: a transient (non-durable), non-exclusive, non-auto-delete queue is shared:
// another connection can use it, and it outlives the connection that declared it.
func TestQueueDeclare_TransientSharedQueue(t *testing.T) {
	t.Parallel()
	first, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer first.Close()
	ch, err := first.Channel()
	if err != nil {
		t.Fatalf("channel.open: %v", err)
	}
	q := uniqueName(t)
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	t.Cleanup(func() { queueDeleteAfter(q) })
	publishSync(t, ch, "", q, false, amqp.Publishing{Body: []byte("kept")})
	if err := first.Close(); err != nil {
		t.Fatalf("connection.close: %v", err)
	}
	second := dial(t)
	if got := queueExists(t, second, q); got.Messages != 1 {
		t.Fatalf("after the declaring connection closed: %d messages, want 1", got.Messages)
	}
	if m := publishGetOne(t, openChannel(t, second), q); string(m.Body) != "kept" {
		t.Fatalf("got %q", m.Body)
	}
}
