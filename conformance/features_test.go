package conformance

// RabbitMQ's queue features beyond AMQP 0-9-1: message TTL and queue expiry
// (https://www.rabbitmq.com/ttl.html), dead-lettering (https://www.rabbitmq.com/dlx.html), queue
// length limits (https://www.rabbitmq.com/maxlength.html), priority queues
// (https://www.rabbitmq.com/priority.html), consumer priorities
// (https://www.rabbitmq.com/consumer-priority.html), single active consumer
// (https://www.rabbitmq.com/consumers.html#single-active-consumer) and the quorum queue delivery
// limit (https://www.rabbitmq.com/quorum-queues.html#poison-message-handling), as RabbitMQ 3.10
// implements them. This file holds the shared helpers, queue-type and argument checks and the
// delivery limit; features_*_test.go hold the rest.

import (
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// featAdmin opens a connection and a channel in confirm mode for publishing with featPublish.
func featAdmin(t *testing.T) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	c, ch := dialChannel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm.select: %v", err)
	}
	return c, ch
}

// featPublish publishes msgs to exchange/key on the confirm-mode channel ch and waits for each
// confirm; it fails unless every one is an ack.
func featPublish(t *testing.T, ch *amqp.Channel, exchange, key string, msgs ...amqp.Publishing) {
	t.Helper()
	for i, ok := range featPublishAcks(t, ch, exchange, key, msgs...) {
		if !ok {
			t.Fatalf("publish %q: nacked, want ack", msgs[i].Body)
		}
	}
}

// featPublishAcks publishes msgs on the confirm-mode channel ch and returns, in order, whether the
// broker acked (true) or nacked (false) each one.
func featPublishAcks(t *testing.T, ch *amqp.Channel, exchange, key string, msgs ...amqp.Publishing) []bool {
	t.Helper()
	c := ctx(t)
	acks := make([]bool, len(msgs))
	for i, m := range msgs {
		// Waiting for each confirm before the next publish keeps the order of enqueueing and
		// of the length-limit decisions deterministic.
		dc, err := ch.PublishWithDeferredConfirmWithContext(c, exchange, key, false, false, m)
		if err != nil {
			t.Fatalf("publish %q: %v", m.Body, err)
		}
		ok, err := dc.WaitContext(c)
		if err != nil {
			t.Fatalf("confirm of %q: %v", m.Body, err)
		}
		acks[i] = ok
	}
	return acks
}

// featBodies returns one message per body with no properties.
func featBodies(bodies ...string) []amqp.Publishing {
	out := make([]amqp.Publishing, len(bodies))
	for i, b := range bodies {
		out[i] = amqp.Publishing{Body: []byte(b)}
	}
	return out
}

// featExchange declares a transient exchange of kind and deletes it when the test ends.
func featExchange(t *testing.T, c *amqp.Connection, kind string) string {
	t.Helper()
	name := uniqueName(t, kind)
	if err := openChannel(t, c).ExchangeDeclare(name, kind, false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare %s: %v", name, err)
	}
	t.Cleanup(func() {
		c, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			ch.ExchangeDelete(name, false, false)
		}
	})
	return name
}

// featBind binds queue to exchange with key.
func featBind(t *testing.T, c *amqp.Connection, queue, key, exchange string) {
	t.Helper()
	if err := openChannel(t, c).QueueBind(queue, key, exchange, false, nil); err != nil {
		t.Fatalf("queue.bind %s to %s: %v", queue, exchange, err)
	}
}

// featDeadLetterTarget declares a fanout exchange and a queue bound to it: the place a test's
// source queue dead-letters into (x-dead-letter-exchange = the exchange).
func featDeadLetterTarget(t *testing.T, c *amqp.Connection) (exchange, queue string) {
	t.Helper()
	exchange = featExchange(t, c, "fanout")
	queue = queueShared(t, c, nil)
	featBind(t, c, queue, "", exchange)
	return exchange, queue
}

// featReady returns the ready message count of queue (passive queue.declare).
func featReady(t *testing.T, c *amqp.Connection, queue string) int {
	t.Helper()
	return queueExists(t, c, queue).Messages
}

// featWaitReady polls (bounded) until queue holds exactly n ready messages and returns how long
// that took. RabbitMQ expires, dead-letters and requeues asynchronously.
func featWaitReady(t *testing.T, c *amqp.Connection, queue string, n int) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(3 * time.Second)
	for {
		got := featReady(t, c, queue)
		if got == n {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s: %d ready messages after 3s, want %d", queue, got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// featDrain gets (auto-ack) every message ready in queue and returns the bodies.
func featDrain(t *testing.T, ch *amqp.Channel, queue string) []string {
	t.Helper()
	var out []string
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("basic.get %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, string(d.Body))
	}
}

// featGetWait polls basic.get without auto-ack (bounded) until queue yields a message.
func featGetWait(t *testing.T, ch *amqp.Channel, queue string) amqp.Delivery {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		d, ok, err := ch.Get(queue, false)
		if err != nil {
			t.Fatalf("basic.get %s: %v", queue, err)
		}
		if ok {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("basic.get %s: queue stayed empty for 3s", queue)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// featDeath is one entry of the x-death header, with the time checked separately.
type featDeath struct {
	Count              int64
	Reason             string
	Queue              string
	Exchange           string
	RoutingKeys        []string
	OriginalExpiration string // "" when the entry has no original-expiration field
}

// featDeaths decodes the x-death header of h strictly: an array of tables, each holding exactly
// count (long), reason, queue, exchange (long strings), routing-keys (array of long strings),
// time (timestamp, close to now) and, only if the message had an expiration, original-expiration.
func featDeaths(t *testing.T, h amqp.Table) []featDeath {
	t.Helper()
	raw, ok := h["x-death"].([]any)
	if !ok {
		t.Fatalf("x-death header = %#v (%T), want an array", h["x-death"], h["x-death"])
	}
	var out []featDeath
	for i, e := range raw {
		tab, ok := e.(amqp.Table)
		if !ok {
			t.Fatalf("x-death[%d] = %T, want a table", i, e)
		}
		var d featDeath
		want := []string{"count", "exchange", "queue", "reason", "routing-keys", "time"}
		if exp, ok := tab["original-expiration"]; ok {
			if d.OriginalExpiration, ok = exp.(string); !ok {
				t.Errorf("x-death[%d] original-expiration is %T, want a long string", i, exp)
			}
			want = append(want, "original-expiration")
			sort.Strings(want)
		}
		var keys []string
		for k := range tab {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("x-death[%d] fields %v, want %v", i, keys, want)
		}
		if d.Count, ok = tab["count"].(int64); !ok {
			t.Errorf("x-death[%d] count = %#v (%T), want a long (int64)", i, tab["count"], tab["count"])
		}
		for _, f := range []struct {
			key string
			dst *string
		}{{"reason", &d.Reason}, {"queue", &d.Queue}, {"exchange", &d.Exchange}} {
			if *f.dst, ok = tab[f.key].(string); !ok {
				t.Errorf("x-death[%d] %s = %#v (%T), want a long string", i, f.key, tab[f.key], tab[f.key])
			}
		}
		rks, ok := tab["routing-keys"].([]any)
		if !ok {
			t.Errorf("x-death[%d] routing-keys = %#v (%T), want an array", i, tab["routing-keys"], tab["routing-keys"])
		}
		for _, rk := range rks {
			s, ok := rk.(string)
			if !ok {
				t.Errorf("x-death[%d] routing-keys element %T, want a long string", i, rk)
			}
			d.RoutingKeys = append(d.RoutingKeys, s)
		}
		if ts, ok := tab["time"].(time.Time); !ok {
			t.Errorf("x-death[%d] time = %#v (%T), want a timestamp", i, tab["time"], tab["time"])
		} else if skew := time.Since(ts); skew < -5*time.Second || skew > 30*time.Second {
			t.Errorf("x-death[%d] time = %v, not close to now (%v)", i, ts, time.Now())
		}
		out = append(out, d)
	}
	return out
}

// featAssertDeaths checks the x-death entries of d (most recent death first) against want.
func featAssertDeaths(t *testing.T, d amqp.Delivery, want ...featDeath) {
	t.Helper()
	if got := featDeaths(t, d.Headers); !reflect.DeepEqual(got, want) {
		t.Errorf("x-death = %+v\nwant      %+v", got, want)
	}
}

// featAssertFirstDeath checks the x-first-death-reason, -queue and -exchange headers of d.
func featAssertFirstDeath(t *testing.T, d amqp.Delivery, reason, queue, exchange string) {
	t.Helper()
	for k, want := range map[string]string{
		"x-first-death-reason": reason, "x-first-death-queue": queue, "x-first-death-exchange": exchange,
	} {
		if got, ok := d.Headers[k].(string); !ok || got != want {
			t.Errorf("header %s = %#v, want %q", k, d.Headers[k], want)
		}
	}
}

// featAssertHeaderKeys checks that d carries exactly the header fields keys.
func featAssertHeaderKeys(t *testing.T, d amqp.Delivery, keys ...string) {
	t.Helper()
	var got []string
	for k := range d.Headers {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(keys)
	if !slices.Equal(got, keys) {
		t.Errorf("header fields %v, want %v", got, keys)
	}
}

// featDeclareErr declares queue name with args on a fresh channel of c and returns the error,
// deleting the queue when the test ends in case it was created.
func featDeclareErr(t *testing.T, c *amqp.Connection, name string, durable bool, args amqp.Table) error {
	t.Helper()
	t.Cleanup(func() { queueDeleteAfter(name) })
	_, err := openChannel(t, c).QueueDeclare(name, durable, false, false, false, args)
	return err
}

// featQuorumQueue declares a quorum queue (durable, shared, not auto-delete, as RabbitMQ requires)
// with args added and deletes it when the test ends.
func featQuorumQueue(t *testing.T, c *amqp.Connection, args amqp.Table) string {
	t.Helper()
	all := amqp.Table{"x-queue-type": "quorum"}
	for k, v := range args {
		all[k] = v
	}
	name := uniqueName(t)
	if err := featDeclareErr(t, c, name, true, all); err != nil {
		t.Fatalf("queue.declare quorum %s: %v", name, err)
	}
	return name
}

// RabbitMQ 3.10 knows the queue types classic, quorum and stream; any other x-queue-type is
// refused with 406 PRECONDITION_FAILED and no queue is created.
func TestQueueDeclare_UnknownQueueTypeIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := uniqueName(t)
	e := amqpErr(t, featDeclareErr(t, c, q, false, amqp.Table{"x-queue-type": "bogus"}), 406)
	want := "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '" + q +
		"' in vhost '/': \"unsupported queue type 'bogus'\""
	if e.Reason != want {
		t.Errorf("reply text %q, want %q", e.Reason, want)
	}
	_, err := openChannel(t, c).QueueDeclarePassive(q, false, false, false, false, nil)
	amqpErr(t, err, 404)
}

// https://www.rabbitmq.com/priority.html: x-max-priority must be an integer; RabbitMQ 3.10 refuses
// a string with 406 PRECONDITION_FAILED and its own wording ("expected integer, got longstr").
func TestQueueDeclare_MaxPriorityStringIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := uniqueName(t)
	e := amqpErr(t, featDeclareErr(t, c, q, false, amqp.Table{"x-max-priority": "5"}), 406)
	want := "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '" + q +
		"' in vhost '/': \"expected integer, got longstr\""
	if e.Reason != want {
		t.Errorf("reply text %q, want %q", e.Reason, want)
	}
}

// https://www.rabbitmq.com/quorum-queues.html#feature-matrix: quorum queues are always durable,
// never exclusive or auto-delete; RabbitMQ refuses each with 406 naming the property.
func TestQueueDeclare_QuorumQueueRequiresDurableSharedQueue(t *testing.T) {
	t.Parallel()
	c := dial(t)
	cases := []struct {
		name                           string
		durable, autoDelete, exclusive bool
		property                       string
	}{
		{"non-durable", false, false, false, "non-durable"},
		{"auto-delete", true, true, false, "auto-delete"},
		{"exclusive", true, false, true, "exclusive-owner"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			t.Cleanup(func() { queueDeleteAfter(q) })
			_, err := openChannel(t, c).QueueDeclare(q, tc.durable, tc.autoDelete, tc.exclusive, false,
				amqp.Table{"x-queue-type": "quorum"})
			e := amqpErr(t, err, 406)
			want := "PRECONDITION_FAILED - invalid property '" + tc.property + "' for queue '" + q + "' in vhost '/'"
			if e.Reason != want {
				t.Errorf("reply text %q, want %q", e.Reason, want)
			}
		})
	}
}

// RabbitMQ 3.10 checks each argument against the queue type: x-delivery-limit exists only for
// quorum queues and x-max-priority only for classic queues. The other type refuses them with 406
// "invalid arg '...' for queue '...' in vhost '/' of queue type rabbit_..._queue".
func TestQueueDeclare_ArgumentNotSupportedByQueueTypeIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	cases := []struct {
		name    string
		durable bool
		args    amqp.Table
		arg     string
		qtype   string
	}{
		{"delivery-limit-on-classic", false, amqp.Table{"x-delivery-limit": int32(2)}, "x-delivery-limit", "rabbit_classic_queue"},
		{"max-priority-on-quorum", true, amqp.Table{"x-queue-type": "quorum", "x-max-priority": int32(5)}, "x-max-priority", "rabbit_quorum_queue"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			if tc.arg == "x-delivery-limit" && !againstRabbit {
				// Warren extension: x-delivery-limit works on classic queues too (the issue asks
				// for a poison-message guard on every queue), so Warren accepts the declare.
				if err := featDeclareErr(t, c, q, tc.durable, tc.args); err != nil {
					t.Fatalf("classic queue with x-delivery-limit refused by Warren: %v", err)
				}
				return
			}
			e := amqpErr(t, featDeclareErr(t, c, q, tc.durable, tc.args), 406)
			want := "PRECONDITION_FAILED - invalid arg '" + tc.arg + "' for queue '" + q +
				"' in vhost '/' of queue type " + tc.qtype
			if e.Reason != want {
				t.Errorf("reply text %q, want %q", e.Reason, want)
			}
		})
	}
}
