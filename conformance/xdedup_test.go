package conformance

import (
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Warren only: an exchange declared with x-message-deduplication drops a repeated message-id
// before routing. Every queue it routes to gets one copy; repeats are confirmed, and a
// mandatory repeat is not returned (it was routed the first time).
func TestXDedup_ExchangeDropsRepeatsBeforeRouting(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	c, ch := dialChannel(t)
	x := uniqueName(t)
	if err := ch.ExchangeDeclare(x, "fanout", false, true, false, false, amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(100)}); err != nil {
		t.Fatal(err)
	}
	var qs []string
	for i := 0; i < 2; i++ {
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(q.Name, "", x, false, nil); err != nil {
			t.Fatal(err)
		}
		qs = append(qs, q.Name)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 10))
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		dc, err := ch.PublishWithDeferredConfirm(x, "", true, false, amqp.Publishing{MessageId: "pay-7", Body: []byte("pay")})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(ctx(t)); !ok || err != nil {
			t.Fatalf("publish %d: confirm ok=%v err=%v", i, ok, err)
		}
	}
	// A message without a key is never a duplicate.
	for i := 0; i < 3; i++ {
		if err := ch.Publish(x, "", false, false, amqp.Publishing{Body: []byte("no id")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range qs {
		info := waitMessages(t, ch, q, 4)
		if info != 4 {
			t.Fatalf("queue %s holds %d, want 4 (one keyed copy and three without a key)", q, info)
		}
	}
	select {
	case r := <-returns:
		t.Fatalf("a repeat was returned: %d %s", r.ReplyCode, r.ReplyText)
	case <-time.After(100 * time.Millisecond):
	}
	c.Close()

	// Its window evicts by size: with x-cache-size 1, a key comes back after another key.
	_, ch2 := dialChannel(t)
	x2 := uniqueName(t)
	if err := ch2.ExchangeDeclare(x2, "direct", false, true, false, false, amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(1), "x-deduplication-header": "k"}); err != nil {
		t.Fatal(err)
	}
	q, err := ch2.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch2.QueueBind(q.Name, "rk", x2, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "a", "b", "a", "a"} { // a, b, a pass
		if err := ch2.Publish(x2, "rk", false, false, amqp.Publishing{Headers: amqp.Table{"k": k}, Body: []byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := waitMessages(t, ch2, q.Name, 3); n != 3 {
		t.Fatalf("queue holds %d, want 3", n)
	}
	// Redeclaring with another window is refused (406), the same window is fine.
	if err := openChannel(t, dial(t)).ExchangeDeclare(x2, "direct", false, true, false, false, amqp.Table{"x-message-deduplication": true, "x-cache-size": int64(1), "x-deduplication-header": "k"}); err != nil {
		t.Fatalf("same window redeclared: %v", err)
	}
	err = openChannel(t, dial(t)).ExchangeDeclare(x2, "direct", false, true, false, false, amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(2), "x-deduplication-header": "k"})
	amqpErr(t, err, 406)
	// Bad argument types are refused with 406.
	err = openChannel(t, dial(t)).ExchangeDeclare(uniqueName(t), "direct", false, true, false, false, amqp.Table{"x-message-deduplication": "yes"})
	amqpErr(t, err, 406)
	err = openChannel(t, dial(t)).ExchangeDeclare(uniqueName(t), "direct", false, true, false, false, amqp.Table{"x-message-deduplication": true, "x-cache-size": "big"})
	amqpErr(t, err, 406)
}

// waitMessages polls the queue's message count until it reaches want (or a short deadline),
// and returns the last count.
func waitMessages(t *testing.T, ch *amqp.Channel, q string, want int) int {
	t.Helper()
	n := -1
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		info, err := ch.QueueDeclarePassive(q, false, true, true, false, nil)
		if err != nil {
			info, err = ch.QueueDeclarePassive(q, true, false, false, false, nil)
		}
		if err != nil {
			t.Fatalf("queue.declare passive %s: %v", q, err)
		}
		if n = info.Messages; n >= want {
			return n
		}
	}
	return n
}

// The exchange's window survives kill -9 through the durable queue the messages reached: the
// same message-id published 500 times, kill -9, 500 more leaves one copy; after that copy is
// acked and another kill -9, the key still deduplicates.
func TestXDedup_ExchangeWindowAroundKill9LeavesOneCopy(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	b := durBroker(t, dir)
	x, q := uniqueName(t), uniqueName(t)
	xargs := amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(10000)}
	publish := func(url string, n int, id string) {
		c := dialURL(t, url)
		ch := openChannel(t, c)
		if err := ch.ExchangeDeclare(x, "direct", true, false, false, false, xargs); err != nil {
			t.Fatalf("exchange.declare: %v", err)
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatalf("queue.declare: %v", err)
		}
		if err := ch.QueueBind(q, "k", x, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			dc, err := ch.PublishWithDeferredConfirm(x, "k", false, false, amqp.Publishing{
				DeliveryMode: amqp.Persistent, MessageId: id, Body: []byte("the order")})
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			if ok, err := dc.WaitContext(ctx(t)); err != nil || !ok {
				t.Fatalf("publish %d: confirm ok=%v err=%v", i, ok, err)
			}
		}
		c.Close()
	}
	count := func(url string) int {
		c := dialURL(t, url)
		defer c.Close()
		info, err := openChannel(t, c).QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return info.Messages
	}
	publish(b.URL, 500, "order-42")
	b.Kill()
	b = durBroker(t, dir)
	publish(b.URL, 500, "order-42")
	if n := count(b.URL); n != 1 {
		t.Fatalf("queue holds %d messages, want exactly 1", n)
	}
	// Consume and ack it; a confirmed fence publish (another id) puts the ack on disk.
	c := dialURL(t, b.URL)
	ch := openChannel(t, c)
	m, ok, err := ch.Get(q, false)
	if err != nil || !ok || m.MessageId != "order-42" {
		t.Fatalf("get: ok=%v err=%v id=%q", ok, err, m.MessageId)
	}
	if err := m.Ack(false); err != nil {
		t.Fatal(err)
	}
	c.Close()
	publish(b.URL, 1, "fence")
	b.Kill()
	b = durBroker(t, dir)
	publish(b.URL, 10, "order-42")
	if n := count(b.URL); n != 1 { // only the fence
		t.Fatalf("after ack and restart the queue holds %d, want 1 (the fence): the acked key must still deduplicate", n)
	}
	// Transient messages are not remembered across a crash (they are lost with it), so a
	// retry after the crash is accepted.
	c = dialURL(t, b.URL)
	ch = openChannel(t, c)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, _ := ch.PublishWithDeferredConfirm(x, "k", false, false, amqp.Publishing{MessageId: "transient-1", Body: []byte("t")})
	if ok, err := dc.WaitContext(ctx(t)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	c.Close()
	b.Kill()
	b = durBroker(t, dir)
	publish(b.URL, 1, "transient-1") // persistent this time
	if n := count(b.URL); n != 2 {
		t.Fatalf("queue holds %d, want 2 (the fence and the retried transient message)", n)
	}
}
