package conformance

// Stream queues (x-queue-type: stream) over AMQP 0-9-1, as RabbitMQ 3.10 has them
// (https://www.rabbitmq.com/streams.html#usage): an append-only log with offsets from 0 that
// consumers read from a position of their choice (x-stream-offset), each delivery carrying its
// offset in the header x-stream-offset; messages stay after they are consumed and acked.
// Run against RabbitMQ with CONFORMANCE_URL to check the expectations.

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// streamQuiet is how long a test waits to see that nothing more arrives.
const streamQuiet = 300 * time.Millisecond

// streamDeclare declares a stream queue (durable, shared, not auto-delete) with args added on a
// channel of c and deletes it when the test ends.
func streamDeclare(t *testing.T, c *amqp.Connection, args amqp.Table) string {
	t.Helper()
	all := amqp.Table{"x-queue-type": "stream"}
	for k, v := range args {
		all[k] = v
	}
	name := uniqueName(t)
	t.Cleanup(func() { queueDeleteAfter(name) })
	ch := openChannel(t, c)
	if _, err := ch.QueueDeclare(name, true, false, false, false, all); err != nil {
		t.Fatalf("queue.declare stream %s: %v", name, err)
	}
	ch.Close()
	return name
}

// streamPublish publishes bodies "<prefix>-0".. to q (transient: a stream stores everything)
// and waits for every publisher confirm, so they are in the stream when it returns.
func streamPublish(t *testing.T, c *amqp.Connection, q string, prefix string, from, to int) {
	t.Helper()
	var bodies []string
	for i := from; i < to; i++ {
		bodies = append(bodies, fmt.Sprintf("%s-%d", prefix, i))
	}
	durPublish(t, c, "", q, amqp.Transient, bodies...)
}

// streamConsume consumes from q on a fresh channel of c with prefetch (basic.qos, required by
// streams) and the given x-stream-offset (nil: none).
func streamConsume(t *testing.T, c *amqp.Connection, q string, offset any) (*amqp.Channel, <-chan amqp.Delivery) {
	t.Helper()
	ch := openChannel(t, c)
	if err := ch.Qos(100, 0, false); err != nil {
		t.Fatalf("basic.qos: %v", err)
	}
	var args amqp.Table
	if offset != nil {
		args = amqp.Table{"x-stream-offset": offset}
	}
	d, err := ch.Consume(q, "", false, false, false, false, args)
	if err != nil {
		t.Fatalf("basic.consume %s at %v: %v", q, offset, err)
	}
	return ch, d
}

// streamOffset returns the x-stream-offset header of a delivery (a long, as RabbitMQ sends it).
func streamOffset(t *testing.T, d amqp.Delivery) int64 {
	t.Helper()
	off, ok := d.Headers["x-stream-offset"].(int64)
	if !ok {
		t.Fatalf("delivery %q has x-stream-offset %#v (%T), want a long", d.Body, d.Headers["x-stream-offset"], d.Headers["x-stream-offset"])
	}
	return off
}

// streamExpect receives the offsets from..to-1 in order, each with body "<prefix>-<offset>", and
// returns the deliveries.
func streamExpect(t *testing.T, d <-chan amqp.Delivery, prefix string, from, to int) []amqp.Delivery {
	t.Helper()
	var out []amqp.Delivery
	for i := from; i < to; i++ {
		m := recvDelivery(t, d)
		if off := streamOffset(t, m); off != int64(i) || string(m.Body) != fmt.Sprintf("%s-%d", prefix, i) {
			t.Fatalf("delivery %d: offset %d body %q, want offset %d body %s-%d", len(out), off, m.Body, i, prefix, i)
		}
		if m.Redelivered {
			t.Fatalf("offset %d delivered with redelivered=true", i)
		}
		out = append(out, m)
	}
	return out
}

// https://www.rabbitmq.com/streams.html#declaring: a stream is durable, not exclusive, not
// auto-delete; RabbitMQ refuses each with 406 naming the property (auto-delete checked first,
// then exclusive, then durable).
func TestStream_DeclareRequiresDurableSharedQueue(t *testing.T) {
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
		{"all-three", false, true, true, "auto-delete"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			t.Cleanup(func() { queueDeleteAfter(q) })
			_, err := openChannel(t, c).QueueDeclare(q, tc.durable, tc.autoDelete, tc.exclusive, false,
				amqp.Table{"x-queue-type": "stream"})
			e := amqpErr(t, err, 406)
			want := "PRECONDITION_FAILED - invalid property '" + tc.property + "' for queue '" + q + "' in vhost '/'"
			if e.Reason != want {
				t.Errorf("reply text %q, want %q", e.Reason, want)
			}
		})
	}
}

// https://www.rabbitmq.com/streams.html#retention: x-max-length-bytes, x-max-age (a number and a
// unit: Y, M, D, h, m, s) and x-stream-max-segment-size-bytes; arguments of other queue types
// are refused with 406 naming the queue type, unknown ones are ignored.
func TestStream_DeclareArguments(t *testing.T) {
	t.Parallel()
	c := dial(t)
	accepted := []amqp.Table{
		{"x-max-age": "7D"}, {"x-max-age": "1h"}, {"x-max-age": "30s"}, {"x-max-age": "1Y"},
		{"x-max-length-bytes": int64(20_000_000_000), "x-stream-max-segment-size-bytes": int32(100_000_000)},
		{"x-custom-argument": "ignored"},
	}
	for i, args := range accepted {
		t.Run(fmt.Sprint("accepted-", i), func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			all := amqp.Table{"x-queue-type": "stream"}
			for k, v := range args {
				all[k] = v
			}
			if err := featDeclareErr(t, c, q, true, all); err != nil {
				t.Fatalf("declare with %v: %v", args, err)
			}
		})
	}
	refused := []struct {
		name   string
		args   amqp.Table
		reason string // after "invalid arg '...' for queue '...' in vhost '/'"
		arg    string
	}{
		{"age-without-unit", amqp.Table{"x-max-age": "10"}, ": invalid_max_age", "x-max-age"},
		{"age-zero", amqp.Table{"x-max-age": "0s"}, ": invalid_max_age", "x-max-age"},
		{"age-unknown-unit", amqp.Table{"x-max-age": "1d"}, ": invalid_max_age", "x-max-age"},
		{"age-integer", amqp.Table{"x-max-age": int32(10)}, ": {unacceptable_type,signedint}", "x-max-age"},
		{"max-length-bytes-string", amqp.Table{"x-max-length-bytes": "1000"}, ": \"expected integer, got longstr\"", "x-max-length-bytes"},
		{"max-length-bytes-negative", amqp.Table{"x-max-length-bytes": int32(-1)}, ": {value_negative,-1}", "x-max-length-bytes"},
		{"max-length", amqp.Table{"x-max-length": int32(10)}, " of queue type rabbit_stream_queue", "x-max-length"},
		{"message-ttl", amqp.Table{"x-message-ttl": int32(1000)}, " of queue type rabbit_stream_queue", "x-message-ttl"},
		{"dead-letter-exchange", amqp.Table{"x-dead-letter-exchange": "dlx"}, " of queue type rabbit_stream_queue", "x-dead-letter-exchange"},
		{"single-active-consumer", amqp.Table{"x-single-active-consumer": true}, " of queue type rabbit_stream_queue", "x-single-active-consumer"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			all := amqp.Table{"x-queue-type": "stream"}
			for k, v := range tc.args {
				all[k] = v
			}
			e := amqpErr(t, featDeclareErr(t, c, q, true, all), 406)
			want := "PRECONDITION_FAILED - invalid arg '" + tc.arg + "' for queue '" + q + "' in vhost '/'" + tc.reason
			if e.Reason != want {
				t.Errorf("reply text %q, want %q", e.Reason, want)
			}
		})
	}
	t.Run("stream-argument-on-classic", func(t *testing.T) {
		t.Parallel()
		q := uniqueName(t)
		e := amqpErr(t, featDeclareErr(t, c, q, false, amqp.Table{"x-max-age": "1h"}), 406)
		want := "PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '" + q + "' in vhost '/' of queue type rabbit_classic_queue"
		if e.Reason != want {
			t.Errorf("reply text %q, want %q", e.Reason, want)
		}
	})
	t.Run("server-named", func(t *testing.T) {
		t.Parallel()
		_, err := openChannel(t, c).QueueDeclare("", true, false, false, false, amqp.Table{"x-queue-type": "stream"})
		e := amqpErr(t, err, 406)
		if want := "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue"; e.Reason != want {
			t.Errorf("reply text %q, want %q", e.Reason, want)
		}
	})
}

// https://www.rabbitmq.com/streams.html#consuming: "first" starts at the first message the
// stream holds; offsets start at 0 and every delivery carries x-stream-offset. Non-persistent
// messages are stored as well.
func TestStream_ConsumeFromFirstGetsEveryOffset(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 10)
	_, d := streamConsume(t, c, q, "first")
	streamExpect(t, d, "m", 0, 10)
	noDelivery(t, d, streamQuiet)
}

// x-stream-offset as an integer starts at that offset (a negative one at the first message).
func TestStream_ConsumeFromAnOffset(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 10)
	for _, tc := range []struct {
		arg  any
		from int
	}{{int64(4), 4}, {int32(7), 7}, {int8(9), 9}, {int64(-1), 0}} {
		_, d := streamConsume(t, c, q, tc.arg)
		streamExpect(t, d, "m", tc.from, 10)
		noDelivery(t, d, streamQuiet)
	}
}

// "next" (the default) delivers only messages published after the consumer attached.
func TestStream_NextGetsOnlyNewMessages(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 10)
	_, next := streamConsume(t, c, q, "next")
	_, dflt := streamConsume(t, c, q, nil)
	noDelivery(t, next, streamQuiet)
	noDelivery(t, dflt, 0)
	streamPublish(t, c, q, "m", 10, 12)
	streamExpect(t, next, "m", 10, 12)
	streamExpect(t, dflt, "m", 10, 12)
}

// "last" starts at the last chunk (RabbitMQ: the last batch written together; Warren: the last
// message): what arrives is a run of offsets that ends with the newest one.
func TestStream_LastStartsAtTheEnd(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 10)
	_, d := streamConsume(t, c, q, "last")
	first := streamOffset(t, recvDelivery(t, d))
	if first > 9 {
		t.Fatalf("\"last\" started at %d, after the newest offset 9", first)
	}
	streamExpect(t, d, "m", int(first)+1, 10)
	noDelivery(t, d, streamQuiet)
}

// Each consumer has its own position: two consumers from "first" each get every message.
func TestStream_TwoConsumersEachGetEverything(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 10)
	_, a := streamConsume(t, c, q, "first")
	_, b := streamConsume(t, c, q, "first")
	streamExpect(t, a, "m", 0, 10)
	streamExpect(t, b, "m", 0, 10)
	streamPublish(t, c, q, "m", 10, 11)
	streamExpect(t, a, "m", 10, 11)
	streamExpect(t, b, "m", 10, 11)
}

// Acknowledging a stream message does not remove it: a new consumer from "first" reads it
// again. (queue.declare-ok reports 0 messages for a stream in RabbitMQ 3.10.)
func TestStream_MessagesStayAfterAck(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 10)
	ch, d := streamConsume(t, c, q, "first")
	for _, m := range streamExpect(t, d, "m", 0, 10) {
		if err := m.Ack(false); err != nil {
			t.Fatalf("basic.ack: %v", err)
		}
	}
	ch.Close()
	_, d2 := streamConsume(t, c, q, "first")
	streamExpect(t, d2, "m", 0, 10)
	st, err := openChannel(t, c).QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("passive queue.declare: %v", err)
	}
	if st.Messages != 0 {
		t.Errorf("queue.declare-ok message count %d, want 0 (as RabbitMQ reports for streams)", st.Messages)
	}
}

// x-stream-offset as a timestamp starts at the first message stored at or after it; an
// interval ("2s", "1h") at the first message newer than that.
func TestStream_TimestampAndIntervalOffsets(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 3)
	time.Sleep(2 * time.Second)
	mark := time.Now() // sent in whole seconds: at most a second earlier, still after m-0..2
	time.Sleep(1100 * time.Millisecond)
	streamPublish(t, c, q, "m", 3, 6)

	_, d := streamConsume(t, c, q, mark)
	streamExpect(t, d, "m", 3, 6)
	noDelivery(t, d, streamQuiet)
	_, d = streamConsume(t, c, q, "2s")
	streamExpect(t, d, "m", 3, 6)
	_, d = streamConsume(t, c, q, "1h")
	streamExpect(t, d, "m", 0, 6)
	_, d = streamConsume(t, c, q, time.Now().Add(time.Hour))
	noDelivery(t, d, streamQuiet)
}

// Acks only return prefetch credit: with prefetch 1 the consumer gets the next message once it
// acks the previous one, and every message once.
func TestStream_AckReturnsCredit(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 5)
	ch := openChannel(t, c)
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	d, err := ch.Consume(q, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		m := streamExpect(t, d, "m", i, i+1)[0]
		if err := m.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	noDelivery(t, d, streamQuiet)
}

// RabbitMQ requires a consumer prefetch on streams: basic.consume without basic.qos (or with
// only a channel-wide one) is refused with 406 and closes the channel.
func TestStream_ConsumeWithoutPrefetchIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	for _, global := range []bool{false, true} {
		ch := openChannel(t, c)
		if global {
			if err := ch.Qos(10, 0, true); err != nil {
				t.Fatal(err)
			}
		}
		_, err := ch.Consume(q, "", false, false, false, false, nil)
		e := amqpErr(t, err, 406)
		want := "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '" + q + "' in vhost '/''"
		if e.Reason != want {
			t.Errorf("global=%v: reply text %q, want %q", global, e.Reason, want)
		}
		if c.IsClosed() {
			t.Fatal("connection closed by a channel error")
		}
	}
}

// streamConnErr runs f on a fresh connection and returns the connection.close it gets (540
// NOT_IMPLEMENTED is a hard error in RabbitMQ: the connection goes).
func streamConnErr(t *testing.T, f func(ch *amqp.Channel) error) *amqp.Error {
	t.Helper()
	c := dial(t)
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	ch := openChannel(t, c)
	err := f(ch)
	e := waitClose(t, closed)
	if e == nil {
		t.Fatalf("connection closed without an error (operation returned %v)", err)
	}
	return e
}

// Streams have no automatic acknowledgement: a no-ack consumer gets 540 NOT_IMPLEMENTED.
func TestStream_NoAckConsumeIsNotImplemented(t *testing.T) {
	t.Parallel()
	q := streamDeclare(t, dial(t), nil)
	e := streamConnErr(t, func(ch *amqp.Channel) error {
		if err := ch.Qos(10, 0, false); err != nil {
			return err
		}
		_, err := ch.Consume(q, "", true, false, false, false, nil)
		return err
	})
	want := "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue '" + q + "' in vhost '/'"
	if e.Code != 540 || e.Reason != want {
		t.Errorf("connection.close %d %q, want 540 %q", e.Code, e.Reason, want)
	}
}

// basic.get does not work on a stream: 540 NOT_IMPLEMENTED.
func TestStream_BasicGetIsNotImplemented(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 1)
	for _, noAck := range []bool{false, true} {
		e := streamConnErr(t, func(ch *amqp.Channel) error {
			_, _, err := ch.Get(q, noAck)
			return err
		})
		want := "NOT_IMPLEMENTED - basic.get not supported by stream queues queue '" + q + "' in vhost '/'"
		if e.Code != 540 || e.Reason != want {
			t.Errorf("no-ack=%v: connection.close %d %q, want 540 %q", noAck, e.Code, e.Reason, want)
		}
	}
}

// queue.purge does not work on a stream: 540 NOT_IMPLEMENTED.
func TestStream_PurgeIsNotImplemented(t *testing.T) {
	t.Parallel()
	q := streamDeclare(t, dial(t), nil)
	e := streamConnErr(t, func(ch *amqp.Channel) error {
		_, err := ch.QueuePurge(q, false)
		return err
	})
	want := "NOT_IMPLEMENTED - queue.purge not supported by stream queues queue '" + q + "' in vhost '/'"
	if e.Code != 540 || e.Reason != want {
		t.Errorf("connection.close %d %q, want 540 %q", e.Code, e.Reason, want)
	}
}

// basic.nack and basic.reject of a stream delivery are refused with 540 NOT_IMPLEMENTED, with
// requeue or without.
func TestStream_NackAndRejectAreNotImplemented(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 1)
	settle := map[string]func(m amqp.Delivery) error{
		"nack-requeue": func(m amqp.Delivery) error { return m.Nack(false, true) },
		"nack":         func(m amqp.Delivery) error { return m.Nack(false, false) },
		"reject":       func(m amqp.Delivery) error { return m.Reject(true) },
	}
	for name, f := range settle {
		e := streamConnErr(t, func(ch *amqp.Channel) error {
			if err := ch.Qos(10, 0, false); err != nil {
				return err
			}
			d, err := ch.Consume(q, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
			if err != nil {
				return err
			}
			return f(recvDelivery(t, d))
		})
		want := "NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues queue '" + q + "' in vhost '/'"
		if e.Code != 540 || e.Reason != want {
			t.Errorf("%s: connection.close %d %q, want 540 %q", name, e.Code, e.Reason, want)
		}
	}
}

// An x-stream-offset string that is neither first/last/next nor an interval is refused with
// 406; RabbitMQ consumers have no priorities either.
func TestStream_InvalidConsumerArgumentsArePreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	cases := []struct {
		args amqp.Table
		want string
	}{
		{amqp.Table{"x-stream-offset": "10"}, "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '" + q + "' in vhost '/': {invalid_stream_offset_arg,{longstr,<<\"10\">>}}"},
		{amqp.Table{"x-priority": int32(1)}, "PRECONDITION_FAILED - invalid arg 'x-priority' for queue '" + q + "' in vhost '/' of queue type rabbit_stream_queue"},
	}
	for _, tc := range cases {
		ch := openChannel(t, c)
		if err := ch.Qos(10, 0, false); err != nil {
			t.Fatal(err)
		}
		_, err := ch.Consume(q, "", false, false, false, false, tc.args)
		if e := amqpErr(t, err, 406); e.Reason != tc.want {
			t.Errorf("%v: reply text %q, want %q", tc.args, e.Reason, tc.want)
		}
	}
}

// Deleting a stream cancels its consumers (basic.cancel from the server); if-unused and if-empty
// do not apply to streams in RabbitMQ 3.10.
func TestStream_DeleteCancelsConsumers(t *testing.T) {
	t.Parallel()
	c := dial(t)
	q := streamDeclare(t, c, nil)
	streamPublish(t, c, q, "m", 0, 3)
	_, d := streamConsume(t, c, q, "next")
	if _, err := openChannel(t, c).QueueDelete(q, true, true, false); err != nil {
		t.Fatalf("queue.delete if-unused if-empty: %v", err)
	}
	select {
	case _, ok := <-d:
		if ok {
			t.Fatal("delivery after delete")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("consumer not cancelled within 5s")
	}
}

// Warren: a stream's log is durable. After kill -9 and a restart the stream keeps its messages
// and offsets (transient messages too), consumers start again from their x-stream-offset, and
// new messages continue the offsets.
func TestStream_RestartKeepsTheStream(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	b := durBroker(t, dir)
	c := dialURL(t, b.URL)
	q := streamDeclare(t, c, amqp.Table{"x-max-age": "7D"})
	streamPublish(t, c, q, "m", 0, 10)
	_, d := streamConsume(t, c, q, "first")
	for _, m := range streamExpect(t, d, "m", 0, 10) {
		m.Ack(false)
	}
	b.Kill()

	b = durBroker(t, dir)
	c = dialURL(t, b.URL)
	_, d = streamConsume(t, c, q, "first")
	streamExpect(t, d, "m", 0, 10)
	_, d4 := streamConsume(t, c, q, int64(4))
	streamExpect(t, d4, "m", 4, 10)
	streamPublish(t, c, q, "m", 10, 11)
	streamExpect(t, d, "m", 10, 11)
	streamExpect(t, d4, "m", 10, 11)
	// the declaration kept its arguments
	_, err := openChannel(t, c).QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "stream", "x-max-age": "7D"})
	if err != nil {
		t.Fatalf("redeclare after restart: %v", err)
	}
}
