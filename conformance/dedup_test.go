package conformance

import (
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Warren only (RabbitMQ has no built-in deduplication): a queue declared with
// x-message-deduplication keeps one copy per message-id within its window, confirms the
// repeats, and keeps the window across a kill -9 and restart.
func TestDedup_SameMessageIDAroundKill9LeavesOneCopy(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	b := durBroker(t, dir)
	args := amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(10000)}
	q := uniqueName(t)
	publish := func(url string, n int) {
		c := dialURL(t, url)
		ch := openChannel(t, c)
		if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
			t.Fatalf("queue.declare: %v", err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			dc, err := ch.PublishWithDeferredConfirm("", q, false, false, amqp.Publishing{
				DeliveryMode: amqp.Persistent, MessageId: "order-42", Body: []byte("the order")})
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			if ok, err := dc.WaitContext(ctx(t)); err != nil || !ok {
				t.Fatalf("publish %d: confirm ok=%v err=%v (a repeat is still confirmed)", i, ok, err)
			}
		}
		c.Close()
	}
	publish(b.URL, 500)
	b.Kill()
	b = durBroker(t, dir)
	publish(b.URL, 500)

	c := dialURL(t, b.URL)
	ch := openChannel(t, c)
	info, err := ch.QueueDeclarePassive(q, true, false, false, false, args)
	if err != nil || info.Messages != 1 {
		t.Fatalf("queue holds %d messages (err %v), want exactly 1", info.Messages, err)
	}
	// Consume and ack it: the key stays in the window, across another kill -9.
	m, ok, err := ch.Get(q, false)
	if err != nil || !ok || m.MessageId != "order-42" {
		t.Fatalf("get: ok=%v err=%v id=%q", ok, err, m.MessageId)
	}
	if err := m.Ack(false); err != nil {
		t.Fatal(err)
	}
	// A confirmed fence message makes sure the ack (and the key record) are on disk.
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, _ := ch.PublishWithDeferredConfirm("", q, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: "fence", Body: []byte("fence")})
	if ok, err := dc.WaitContext(ctx(t)); !ok || err != nil {
		t.Fatalf("fence: %v %v", ok, err)
	}
	c.Close()
	b.Kill()
	b = durBroker(t, dir)
	publish(b.URL, 10)
	c = dialURL(t, b.URL)
	ch = openChannel(t, c)
	info, err = ch.QueueDeclarePassive(q, true, false, false, false, args)
	if err != nil || info.Messages != 1 { // only the fence
		t.Fatalf("after ack and restart the queue holds %d (err %v), want 1 (the fence): the acked key must still deduplicate", info.Messages, err)
	}
}

// The window expires as configured (x-cache-ttl): the same id is accepted again afterwards.
func TestDedup_WindowExpires(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	_, ch := dialChannel(t)
	q := uniqueName(t)
	args := amqp.Table{"x-message-deduplication": true, "x-cache-ttl": int32(200)}
	if _, err := ch.QueueDeclare(q, false, true, false, false, args); err != nil {
		t.Fatal(err)
	}
	pub := func() {
		if err := ch.Publish("", q, false, false, amqp.Publishing{MessageId: "x", Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	pub()
	pub()
	time.Sleep(300 * time.Millisecond)
	pub()
	info, err := ch.QueueDeclarePassive(q, false, true, false, false, args)
	if err != nil || info.Messages != 2 {
		t.Fatalf("queue holds %d (err %v), want 2: one per window", info.Messages, err)
	}
	// A bad argument type is refused like any queue argument.
	_, err = openChannel(t, dial(t)).QueueDeclare(uniqueName(t), false, true, false, false, amqp.Table{"x-message-deduplication": "yes"})
	amqpErr(t, err, 406)
}
