package conformance

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Consuming: AMQP 0-9-1 §1.8.3 (basic class), basic.consume/cancel/deliver/get, and RabbitMQ's
// consumer cancel notification (https://www.rabbitmq.com/consumer-cancel.html).
//
// The helpers prefixed "consume" below are shared by consume_test.go, ack_test.go, qos_test.go,
// confirm_test.go and tx_test.go.

// consumeQuiet is how long a test waits to be sure that nothing more arrives.
const consumeQuiet = 200 * time.Millisecond

// consumeSetup opens an admin connection whose channel is in confirm mode and declares a fresh
// queue on it, deleted when the test ends. Tests provoke errors on other channels, so the admin
// channel stays usable for publishing, inspecting and cleaning up.
func consumeSetup(t *testing.T) (admin *amqp.Channel, queue string) {
	t.Helper()
	_, admin = dialChannel(t)
	if err := admin.Confirm(false); err != nil {
		t.Fatalf("confirm.select on admin channel: %v", err)
	}
	return admin, consumeDeclare(t, admin)
}

// consumeDeclare declares a fresh non-durable queue on admin and deletes it when the test ends.
func consumeDeclare(t *testing.T, admin *amqp.Channel, suffix ...string) string {
	t.Helper()
	q := uniqueName(t, suffix...)
	if _, err := admin.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatalf("queue.declare %s: %v", q, err)
	}
	t.Cleanup(func() { admin.QueueDelete(q, false, false, false) })
	return q
}

// consumePublish publishes bodies to q through the default exchange on the confirm-mode admin
// channel and waits for every confirm, so the messages are enqueued when it returns.
func consumePublish(t *testing.T, admin *amqp.Channel, q string, bodies ...string) {
	t.Helper()
	c := ctx(t)
	var dcs []*amqp.DeferredConfirmation
	for _, b := range bodies {
		dc, err := admin.PublishWithDeferredConfirmWithContext(c, "", q, false, false, amqp.Publishing{Body: []byte(b)})
		if err != nil {
			t.Fatalf("publish %q: %v", b, err)
		}
		dcs = append(dcs, dc)
	}
	for i, dc := range dcs {
		ok, err := dc.WaitContext(c)
		if err != nil || !ok {
			t.Fatalf("confirm of %q: ack=%v err=%v", bodies[i], ok, err)
		}
	}
}

// consumeBodies returns "prefix1".."prefixN".
func consumeBodies(prefix string, n int) []string {
	b := make([]string, n)
	for i := range b {
		b[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return b
}

// consumeReady returns the ready message count of q (queue.declare passive).
func consumeReady(t *testing.T, admin *amqp.Channel, q string) int {
	t.Helper()
	qi, err := admin.QueueDeclarePassive(q, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("queue.declare passive %s: %v", q, err)
	}
	return qi.Messages
}

// consumeWaitReady waits (bounded) until q holds exactly n ready messages. Requeues after a
// channel or connection closes happen asynchronously in RabbitMQ, hence the polling.
func consumeWaitReady(t *testing.T, admin *amqp.Channel, q string, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := consumeReady(t, admin, q)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s: %d ready messages, want %d", q, got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// consumeGet does a basic.get that must return a message.
func consumeGet(t *testing.T, ch *amqp.Channel, q string, autoAck bool) amqp.Delivery {
	t.Helper()
	d, ok, err := ch.Get(q, autoAck)
	if err != nil {
		t.Fatalf("basic.get %s: %v", q, err)
	}
	if !ok {
		t.Fatalf("basic.get %s: get-empty, want a message", q)
	}
	return d
}

// consumeExpect asserts that d has the given body and redelivered flag.
func consumeExpect(t *testing.T, d amqp.Delivery, body string, redelivered bool) {
	t.Helper()
	if string(d.Body) != body || d.Redelivered != redelivered {
		t.Fatalf("got %q redelivered=%v, want %q redelivered=%v", d.Body, d.Redelivered, body, redelivered)
	}
}

// consumeDrain gets every message left in q on ch (auto-ack) and returns their bodies.
func consumeDrain(t *testing.T, ch *amqp.Channel, q string) []string {
	t.Helper()
	var out []string
	for {
		d, ok, err := ch.Get(q, true)
		if err != nil {
			t.Fatalf("basic.get %s: %v", q, err)
		}
		if !ok {
			return out
		}
		out = append(out, string(d.Body))
	}
}

// consumeChannelClosed waits for the close notification registered in notify and checks its code.
func consumeChannelClosed(t *testing.T, notify <-chan *amqp.Error, code int) *amqp.Error {
	t.Helper()
	e := waitClose(t, notify)
	if e == nil {
		t.Fatalf("closed without an error, want reply code %d", code)
	}
	return amqpErr(t, e, code)
}

// consumeReason asserts the reply text of e (RabbitMQ's "CODE_NAME - detail" shape) starts with prefix.
func consumeReason(t *testing.T, e *amqp.Error, prefix string) {
	t.Helper()
	if !strings.HasPrefix(e.Reason, prefix) {
		t.Fatalf("reply text %q, want prefix %q", e.Reason, prefix)
	}
}

// TestBasicConsume_ServerGeneratedAndClientTags checks §1.8.3.3 basic.consume: an empty consumer
// tag makes the server generate one (RabbitMQ: "amq.ctag-…"), returned in consume-ok and carried
// by basic.deliver; a client-given tag is echoed unchanged; basic.cancel-ok echoes the tag.
// amqp091-go always sends its own tag, so this test speaks the protocol on a raw socket.
func TestBasicConsume_ServerGeneratedAndClientTags(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	r := consumeRawOpen(t)

	r.send(1, 60, 20, consumeArgs().u16(0).shortstr(q).shortstr("").octet(0).table().b) // basic.consume
	args := r.expect(1, 60, 21)                                                         // basic.consume-ok
	tag := args.shortstr()
	if !strings.HasPrefix(tag, "amq.ctag-") {
		t.Fatalf("server-generated consumer tag %q, want prefix amq.ctag-", tag)
	}

	consumePublish(t, admin, q, "m1")
	args = r.expect(1, 60, 60) // basic.deliver
	if got := args.shortstr(); got != tag {
		t.Fatalf("basic.deliver consumer tag %q, want %q", got, tag)
	}
	if got := args.u64(); got != 1 {
		t.Fatalf("first delivery tag %d, want 1", got)
	}

	r.send(1, 60, 20, consumeArgs().u16(0).shortstr(q).shortstr("client.tag").octet(0).table().b)
	if got := r.expect(1, 60, 21).shortstr(); got != "client.tag" {
		t.Fatalf("consume-ok tag %q, want client.tag", got)
	}

	r.send(1, 60, 30, consumeArgs().shortstr(tag).octet(0).b) // basic.cancel
	if got := r.expect(1, 60, 31).shortstr(); got != tag {
		t.Fatalf("cancel-ok tag %q, want %q", got, tag)
	}
	r.close()
}

// TestBasicConsume_ClientTagInDeliveries checks §1.8.3.3/§1.8.3.9: deliveries to a consumer carry
// the consumer tag the client chose.
func TestBasicConsume_ClientTagInDeliveries(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	tag := "my.consumer." + q
	d, err := ch.Consume(q, tag, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	consumePublish(t, admin, q, "m1", "m2")
	for _, want := range []string{"m1", "m2"} {
		m := recvDelivery(t, d)
		if m.ConsumerTag != tag || string(m.Body) != want {
			t.Fatalf("delivery tag %q body %q, want %q %q", m.ConsumerTag, m.Body, tag, want)
		}
	}
}

// TestBasicConsume_DuplicateTagNotAllowed checks §1.8.3.3 ("The client MUST NOT specify a tag that
// refers to an existing consumer"): RabbitMQ answers 530 NOT_ALLOWED, a hard error that closes the
// connection.
func TestBasicConsume_DuplicateTagNotAllowed(t *testing.T) {
	t.Parallel()
	_, q := consumeSetup(t)
	c, ch := dialChannel(t)
	connClosed := c.NotifyClose(make(chan *amqp.Error, 1))
	if _, err := ch.Consume(q, "dup", false, false, false, false, nil); err != nil {
		t.Fatalf("first basic.consume: %v", err)
	}
	_, err := ch.Consume(q, "dup", false, false, false, false, nil)
	e := amqpErr(t, err, amqp.NotAllowed)
	consumeReason(t, e, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'")
	consumeChannelClosed(t, connClosed, amqp.NotAllowed)
}

// TestBasicConsume_ExclusiveRefusesOtherConsumers checks §1.8.3.3 exclusive: while an exclusive
// consumer exists, another consumer on the queue is refused with 403 ACCESS_REFUSED (a channel error).
func TestBasicConsume_ExclusiveRefusesOtherConsumers(t *testing.T) {
	t.Parallel()
	_, q := consumeSetup(t)
	_, ch1 := dialChannel(t)
	if _, err := ch1.Consume(q, "", false, true, false, false, nil); err != nil {
		t.Fatalf("exclusive basic.consume: %v", err)
	}
	c2, ch2 := dialChannel(t)
	closed := ch2.NotifyClose(make(chan *amqp.Error, 1))
	_, err := ch2.Consume(q, "", false, false, false, false, nil)
	e := amqpErr(t, err, amqp.AccessRefused)
	consumeReason(t, e, fmt.Sprintf("ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use", q))
	consumeChannelClosed(t, closed, amqp.AccessRefused)
	if c2.IsClosed() {
		t.Fatal("403 on basic.consume closed the connection, want only the channel closed")
	}
}

// TestBasicConsume_ExclusiveRefusedWhenConsumersExist checks §1.8.3.3 exclusive: an exclusive
// consume on a queue that already has a consumer is refused with 403 ACCESS_REFUSED.
func TestBasicConsume_ExclusiveRefusedWhenConsumersExist(t *testing.T) {
	t.Parallel()
	_, q := consumeSetup(t)
	_, ch1 := dialChannel(t)
	if _, err := ch1.Consume(q, "", false, false, false, false, nil); err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	_, ch2 := dialChannel(t)
	_, err := ch2.Consume(q, "", false, true, false, false, nil)
	e := amqpErr(t, err, amqp.AccessRefused)
	consumeReason(t, e, fmt.Sprintf("ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use", q))
}

// TestBasicConsume_NoAckNeedsNoAck checks §1.8.3.3 no-ack: messages delivered to a no-ack consumer
// count as acknowledged, so closing the channel without acks requeues only what was fetched with
// acks required (a basic.get sentinel).
func TestBasicConsume_NoAckNeedsNoAck(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	d, err := ch.Consume(q, "noack", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume no-ack: %v", err)
	}
	consumePublish(t, admin, q, "m1", "m2", "m3")
	for _, want := range []string{"m1", "m2", "m3"} {
		if m := recvDelivery(t, d); string(m.Body) != want {
			t.Fatalf("got %q, want %q", m.Body, want)
		}
	}
	if err := ch.Cancel("noack", false); err != nil {
		t.Fatalf("basic.cancel: %v", err)
	}
	consumePublish(t, admin, q, "sentinel")
	consumeGet(t, ch, q, false)
	if err := ch.Close(); err != nil {
		t.Fatalf("channel.close: %v", err)
	}
	consumeWaitReady(t, admin, q, 1)
	consumeExpect(t, consumeGet(t, admin, q, true), "sentinel", true)
}

// TestBasicCancel_StopsDeliveries checks §1.8.3.5 basic.cancel: cancel-ok arrives, the consumer's
// delivery stream ends and later messages stay in the queue.
func TestBasicCancel_StopsDeliveries(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	d, err := ch.Consume(q, "c1", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	consumePublish(t, admin, q, "m1")
	recvDelivery(t, d)
	if err := ch.Cancel("c1", false); err != nil {
		t.Fatalf("basic.cancel: %v", err)
	}
	select {
	case m, ok := <-d:
		if ok {
			t.Fatalf("delivery %q after cancel-ok", m.Body)
		}
	case <-time.After(time.Second):
		t.Fatal("delivery stream not closed after cancel-ok")
	}
	consumePublish(t, admin, q, "m2", "m3")
	if n := consumeReady(t, admin, q); n != 2 {
		t.Fatalf("%d ready after cancel, want 2", n)
	}
}

// TestBasicCancel_ServerCancelsWhenQueueDeleted checks RabbitMQ's consumer cancel notification
// (https://www.rabbitmq.com/consumer-cancel.html): a client that advertised the
// consumer_cancel_notify capability gets basic.cancel with its tag when the queue is deleted, and
// its channel stays open.
func TestBasicCancel_ServerCancelsWhenQueueDeleted(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	cancels := ch.NotifyCancel(make(chan string, 1))
	d, err := ch.Consume(q, "doomed", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	if _, err := admin.QueueDelete(q, false, false, false); err != nil {
		t.Fatalf("queue.delete: %v", err)
	}
	select {
	case tag := <-cancels:
		if tag != "doomed" {
			t.Fatalf("basic.cancel for tag %q, want doomed", tag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.cancel from the server within 5s of queue.delete")
	}
	select {
	case _, ok := <-d:
		if ok {
			t.Fatal("delivery after server cancel")
		}
	case <-time.After(time.Second):
		t.Fatal("delivery stream not closed after server cancel")
	}
	if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatalf("channel unusable after server-sent basic.cancel: %v", err)
	}
}

// TestBasicGet_MessageCountAndGetEmpty checks §1.8.3.10/11: basic.get-ok carries the number of
// messages still in the queue, and an empty queue answers basic.get-empty.
func TestBasicGet_MessageCountAndGetEmpty(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	consumePublish(t, admin, q, "m1", "m2", "m3")
	for i, want := range []string{"m1", "m2", "m3"} {
		m := consumeGet(t, ch, q, true)
		if string(m.Body) != want || m.MessageCount != uint32(2-i) {
			t.Fatalf("get %d: %q count %d, want %q count %d", i+1, m.Body, m.MessageCount, want, 2-i)
		}
		if m.Redelivered || m.Exchange != "" || m.RoutingKey != q {
			t.Fatalf("get-ok fields: redelivered=%v exchange=%q key=%q", m.Redelivered, m.Exchange, m.RoutingKey)
		}
	}
	if m, ok, err := ch.Get(q, true); err != nil || ok {
		t.Fatalf("get on empty queue: ok=%v err=%v body=%q, want get-empty", ok, err, m.Body)
	}
}

// TestBasicConsume_RoundRobinAcrossConsumers checks RabbitMQ's documented dispatch: messages of a
// queue are handed to its consumers in turn (https://www.rabbitmq.com/consumers.html), so 3
// consumers of 30 messages get 10 each, every third message.
func TestBasicConsume_RoundRobinAcrossConsumers(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	var ds []<-chan amqp.Delivery
	for i := range 3 {
		d, err := ch.Consume(q, fmt.Sprintf("c%d", i), true, false, false, false, nil)
		if err != nil {
			t.Fatalf("basic.consume %d: %v", i, err)
		}
		ds = append(ds, d)
	}
	bodies := make([]string, 30)
	for i := range bodies {
		bodies[i] = fmt.Sprint(i)
	}
	consumePublish(t, admin, q, bodies...)
	offsets := map[int]bool{}
	for ci, d := range ds {
		var got []int
		for range 10 {
			var n int
			fmt.Sscan(string(recvDelivery(t, d).Body), &n)
			got = append(got, n)
		}
		noDelivery(t, d, 20*time.Millisecond)
		for j, n := range got {
			if n != got[0]+3*j {
				t.Fatalf("consumer %d got %v, want every third message", ci, got)
			}
		}
		offsets[got[0]] = true
	}
	if len(offsets) != 3 {
		t.Fatalf("consumers started at offsets %v, want 0, 1 and 2", offsets)
	}
}

// TestDeliveryTags_PerChannelFromOne checks §1.8.3.9 delivery-tag: tags are channel-scoped, start
// at 1 and increase across all consumers and basic.get on that channel.
func TestDeliveryTags_PerChannelFromOne(t *testing.T) {
	t.Parallel()
	admin, qa := consumeSetup(t)
	qb := consumeDeclare(t, admin, "b")
	consumePublish(t, admin, qa, "a1", "a2")
	consumePublish(t, admin, qb, "b1", "b2", "b3")
	c := dial(t)
	ch1, ch2 := openChannel(t, c), openChannel(t, c)

	da, err := ch1.Consume(qa, "ca", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{1, 2} {
		if m := recvDelivery(t, da); m.DeliveryTag != want {
			t.Fatalf("consumer delivery tag %d, want %d", m.DeliveryTag, want)
		}
	}
	if m := consumeGet(t, ch1, qb, false); m.DeliveryTag != 3 {
		t.Fatalf("basic.get after two deliveries: tag %d, want 3", m.DeliveryTag)
	}
	if m := consumeGet(t, ch2, qb, false); m.DeliveryTag != 1 {
		t.Fatalf("first basic.get on a second channel: tag %d, want 1", m.DeliveryTag)
	}
	db, err := ch1.Consume(qb, "cb", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := recvDelivery(t, db); m.DeliveryTag != 4 || string(m.Body) != "b3" {
		t.Fatalf("second consumer on channel 1: %q tag %d, want b3 tag 4", m.Body, m.DeliveryTag)
	}
}

// TestBasicConsume_MissingQueueNotFound checks §1.8.3.3: consuming from a queue that does not
// exist closes the channel with 404 NOT_FOUND.
func TestBasicConsume_MissingQueueNotFound(t *testing.T) {
	t.Parallel()
	c, ch := dialChannel(t)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	q := uniqueName(t)
	_, err := ch.Consume(q, "", false, false, false, false, nil)
	e := amqpErr(t, err, amqp.NotFound)
	consumeReason(t, e, fmt.Sprintf("NOT_FOUND - no queue '%s' in vhost '/'", q))
	consumeChannelClosed(t, closed, amqp.NotFound)
	if c.IsClosed() {
		t.Fatal("404 closed the connection, want only the channel closed")
	}
}

// TestBasicDeliver_CarriesRoutingAndProperties checks §1.8.3.9 basic.deliver and §1.8.3.11
// basic.get-ok: exchange, routing key, redelivered=false on first delivery, and every content
// header property of §1.8.2 (with the header table's field types) as published.
func TestBasicDeliver_CarriesRoutingAndProperties(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	ex := uniqueName(t, "x")
	if err := admin.ExchangeDeclare(ex, "direct", false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare: %v", err)
	}
	t.Cleanup(func() { admin.ExchangeDelete(ex, false, false) })
	if err := admin.QueueBind(q, "rk.1", ex, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	ts := time.Unix(1700000000, 0)
	pub := amqp.Publishing{
		Headers: amqp.Table{
			"str":   "s",
			"i32":   int32(-7),
			"i64":   int64(1) << 40,
			"bool":  true,
			"f64":   1.5,
			"bytes": []byte{0, 1, 2},
			"ts":    ts,
			"table": amqp.Table{"k": "v"},
			"array": []any{"a", int32(1)},
		},
		ContentType:     "text/plain",
		ContentEncoding: "gzip",
		DeliveryMode:    amqp.Transient,
		Priority:        3,
		CorrelationId:   "corr",
		ReplyTo:         "reply.q",
		Expiration:      "60000",
		MessageId:       "msg-1",
		Timestamp:       ts,
		Type:            "kind",
		UserId:          "guest",
		AppId:           "conformance",
		Body:            []byte("payload"),
	}
	check := func(how string, m amqp.Delivery) {
		t.Helper()
		if m.Exchange != ex || m.RoutingKey != "rk.1" || m.Redelivered {
			t.Fatalf("%s: exchange %q key %q redelivered %v, want %q rk.1 false", how, m.Exchange, m.RoutingKey, m.Redelivered, ex)
		}
		got := amqp.Publishing{
			Headers: m.Headers, ContentType: m.ContentType, ContentEncoding: m.ContentEncoding,
			DeliveryMode: m.DeliveryMode, Priority: m.Priority, CorrelationId: m.CorrelationId,
			ReplyTo: m.ReplyTo, Expiration: m.Expiration, MessageId: m.MessageId,
			Timestamp: m.Timestamp, Type: m.Type, UserId: m.UserId, AppId: m.AppId, Body: m.Body,
		}
		want := pub
		if !got.Timestamp.Equal(want.Timestamp) {
			t.Fatalf("%s: timestamp %v, want %v", how, got.Timestamp, want.Timestamp)
		}
		got.Timestamp, want.Timestamp = time.Time{}, time.Time{}
		if gt, ok := got.Headers["ts"].(time.Time); ok && gt.Equal(ts) {
			got.Headers["ts"] = ts
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: properties\n got %#v\nwant %#v", how, got, want)
		}
	}
	for range 2 {
		dc, err := admin.PublishWithDeferredConfirmWithContext(ctx(t), ex, "rk.1", false, false, pub)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		if ok, err := dc.WaitContext(ctx(t)); !ok || err != nil {
			t.Fatalf("confirm: ack=%v err=%v", ok, err)
		}
	}
	_, ch := dialChannel(t)
	check("basic.get-ok", consumeGet(t, ch, q, true))
	d, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	check("basic.deliver", recvDelivery(t, d))
}

// consumeRaw is a minimal AMQP 0-9-1 client on a raw socket (§2.3 framing, §1.4 connection
// handshake), enough to see the fields amqp091-go hides. It opens channel 1.
type consumeRaw struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// consumeRawOpen connects, authenticates with the credentials of brokerURL (PLAIN) and opens channel 1.
func consumeRawOpen(t testing.TB) *consumeRaw {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	vhost := strings.TrimPrefix(u.Path, "/")
	if vhost == "" {
		vhost = "/"
	} else if v, err := url.PathUnescape(vhost); err == nil {
		vhost = v
	}
	c := rawDial(t)
	r := &consumeRaw{t: t, c: c, r: bufio.NewReader(c)}
	if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		t.Fatal(err)
	}
	r.expect(0, 10, 10) // connection.start
	r.send(0, 10, 11, consumeArgs().table().shortstr("PLAIN").longstr("\x00"+user+"\x00"+pass).shortstr("en_US").b)
	tune := r.expect(0, 10, 30) // connection.tune
	chMax, frameMax := tune.u16(), tune.u32()
	r.send(0, 10, 31, consumeArgs().u16(chMax).u32(frameMax).u16(0).b) // tune-ok, no heartbeats
	r.send(0, 10, 40, consumeArgs().shortstr(vhost).shortstr("").octet(0).b)
	r.expect(0, 10, 41)                             // connection.open-ok
	r.send(1, 20, 10, consumeArgs().shortstr("").b) // channel.open
	r.expect(1, 20, 11)                             // channel.open-ok
	return r
}

// consumeBuf builds method arguments.
type consumeBuf struct{ b []byte }

func consumeArgs() *consumeBuf { return &consumeBuf{} }

func (w *consumeBuf) octet(v byte) *consumeBuf { w.b = append(w.b, v); return w }
func (w *consumeBuf) u16(v uint16) *consumeBuf { w.b = binary.BigEndian.AppendUint16(w.b, v); return w }
func (w *consumeBuf) u32(v uint32) *consumeBuf { w.b = binary.BigEndian.AppendUint32(w.b, v); return w }
func (w *consumeBuf) shortstr(s string) *consumeBuf {
	w.b = append(append(w.b, byte(len(s))), s...)
	return w
}
func (w *consumeBuf) longstr(s string) *consumeBuf { return w.u32(uint32(len(s))).raw(s) }
func (w *consumeBuf) raw(s string) *consumeBuf     { w.b = append(w.b, s...); return w }

// table appends an empty field table.
func (w *consumeBuf) table() *consumeBuf { return w.u32(0) }

// consumeRd reads method arguments; a short read fails the test.
type consumeRd struct {
	t testing.TB
	b []byte
}

func (r *consumeRd) take(n int) []byte {
	r.t.Helper()
	if len(r.b) < n {
		r.t.Fatalf("method arguments truncated: need %d bytes, have %d", n, len(r.b))
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
func (r *consumeRd) u16() uint16      { return binary.BigEndian.Uint16(r.take(2)) }
func (r *consumeRd) u32() uint32      { return binary.BigEndian.Uint32(r.take(4)) }
func (r *consumeRd) u64() uint64      { return binary.BigEndian.Uint64(r.take(8)) }
func (r *consumeRd) shortstr() string { return string(r.take(int(r.take(1)[0]))) }

// send writes one method frame.
func (r *consumeRaw) send(channel, class, method uint16, args []byte) {
	r.t.Helper()
	payload := consumeArgs().u16(class).u16(method).b
	payload = append(payload, args...)
	f := consumeArgs().octet(1).u16(channel).u32(uint32(len(payload))).b
	f = append(append(f, payload...), 0xCE)
	if _, err := r.c.Write(f); err != nil {
		r.t.Fatalf("write method %d.%d: %v", class, method, err)
	}
}

// expect reads frames until a method frame arrives, skipping content and heartbeat frames, and
// fails the test unless it is class.method on channel.
func (r *consumeRaw) expect(channel, class, method uint16) *consumeRd {
	r.t.Helper()
	for {
		var hdr [7]byte
		if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
			r.t.Fatalf("waiting for method %d.%d: %v", class, method, err)
		}
		payload := make([]byte, binary.BigEndian.Uint32(hdr[3:])+1)
		if _, err := io.ReadFull(r.r, payload); err != nil {
			r.t.Fatalf("waiting for method %d.%d: %v", class, method, err)
		}
		if payload[len(payload)-1] != 0xCE {
			r.t.Fatalf("frame end octet %#x, want 0xCE", payload[len(payload)-1])
		}
		if hdr[0] != 1 { // content header, body or heartbeat
			continue
		}
		rd := &consumeRd{t: r.t, b: payload[:len(payload)-1]}
		ch, cl, m := binary.BigEndian.Uint16(hdr[1:]), rd.u16(), rd.u16()
		if ch != channel || cl != class || m != method {
			r.t.Fatalf("got method %d.%d on channel %d (args %q), want %d.%d on channel %d", cl, m, ch, rd.b, class, method, channel)
		}
		return rd
	}
}

// close performs connection.close / close-ok.
func (r *consumeRaw) close() {
	r.t.Helper()
	r.send(0, 10, 50, consumeArgs().u16(200).shortstr("bye").u16(0).u16(0).b)
	r.expect(0, 10, 51)
}
