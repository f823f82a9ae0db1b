package conformance

// Publishing (AMQP 0-9-1 §1.8.3.7 basic.publish, §1.8.3.8 basic.return, §4.2.6 content framing,
// §1.8.1 basic properties).

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// publishGetOne polls basic.get (bounded) until a message arrives on queue.
func publishGetOne(t testing.TB, ch *amqp.Channel, queue string) amqp.Delivery {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("basic.get %s: %v", queue, err)
		}
		if ok {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("basic.get %s: queue stayed empty for 5s", queue)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publishSync publishes msg with a publisher confirm (putting ch in confirm mode) and waits for
// the broker's ack, so the message has been routed and enqueued when it returns. RabbitMQ routes
// asynchronously: without the confirm a following queue.declare may not count the message yet.
func publishSync(t testing.TB, ch *amqp.Channel, exchange, key string, mandatory bool, msg amqp.Publishing) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm.select: %v", err)
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx(t), exchange, key, mandatory, false, msg)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	ok, err := dc.WaitContext(ctx(t))
	if err != nil || !ok {
		t.Fatalf("publisher confirm: ack=%v err=%v", ok, err)
	}
}

// publishEmpty asserts queue holds no ready message (basic.get-empty).
func publishEmpty(t testing.TB, ch *amqp.Channel, queue string) {
	t.Helper()
	m, ok, err := ch.Get(queue, true)
	if err != nil {
		t.Fatalf("basic.get %s: %v", queue, err)
	}
	if ok {
		t.Fatalf("unexpected message in %s: %q", queue, m.Body)
	}
}

// publishFullMessage sets every basic property amqp091-go can send, with a header table that uses
// every field type it encodes (RabbitMQ's tags t b B s u I i l f d D S A T F x V).
func publishFullMessage(body []byte) amqp.Publishing {
	return amqp.Publishing{
		ContentType:     "application/x-conformance",
		ContentEncoding: "identity",
		Headers: amqp.Table{
			"bool-true":  true,
			"bool-false": false,
			"int8":       int8(-8),
			"uint8":      uint8(200),
			"int16":      int16(-16000),
			"uint16":     uint16(65000),
			"int32":      int32(-2000000000),
			"uint32":     uint32(4000000000),
			"int64":      int64(-9000000000000000000),
			"float32":    float32(3.25),
			"float64":    float64(-1.0e300),
			"decimal":    amqp.Decimal{Scale: 2, Value: 12345},
			"string":     "héllo wörld",
			"empty":      "",
			"bytes":      []byte{0, 1, 2, 0xfe, 0xff},
			"timestamp":  time.Unix(1700000000, 0),
			"void":       nil,
			"table": amqp.Table{
				"nested": amqp.Table{"deep": int32(1)},
				"s":      "x",
			},
			"empty-table": amqp.Table{},
			"array": []any{int32(1), "two", 3.5, true, nil, []byte("b"),
				amqp.Table{"k": "v"}, []any{int64(4), []any{}}, amqp.Decimal{Scale: 1, Value: -5}},
			"empty-array": []any{},
		},
		DeliveryMode:  amqp.Persistent,
		Priority:      7,
		CorrelationId: "corr-1",
		ReplyTo:       "reply.queue",
		Expiration:    "600000",
		MessageId:     "msg-1",
		Timestamp:     time.Unix(1234567890, 0),
		Type:          "conformance.type",
		UserId:        "guest",
		AppId:         "conformance-app",
		Body:          body,
	}
}

// publishAssertProperties compares every property of d with msg.
func publishAssertProperties(t testing.TB, d amqp.Delivery, msg amqp.Publishing) {
	t.Helper()
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	check("content-type", d.ContentType, msg.ContentType)
	check("content-encoding", d.ContentEncoding, msg.ContentEncoding)
	check("delivery-mode", d.DeliveryMode, msg.DeliveryMode)
	check("priority", d.Priority, msg.Priority)
	check("correlation-id", d.CorrelationId, msg.CorrelationId)
	check("reply-to", d.ReplyTo, msg.ReplyTo)
	check("expiration", d.Expiration, msg.Expiration)
	check("message-id", d.MessageId, msg.MessageId)
	if !d.Timestamp.Equal(msg.Timestamp) {
		t.Errorf("timestamp = %v, want %v", d.Timestamp, msg.Timestamp)
	}
	check("type", d.Type, msg.Type)
	check("user-id", d.UserId, msg.UserId)
	check("app-id", d.AppId, msg.AppId)
	if !bytes.Equal(d.Body, msg.Body) {
		t.Errorf("body of %d bytes came back as %d bytes", len(msg.Body), len(d.Body))
	}
	if len(d.Headers) != len(msg.Headers) {
		t.Errorf("headers have %d fields, want %d", len(d.Headers), len(msg.Headers))
	}
	for k, want := range msg.Headers {
		got, ok := d.Headers[k]
		if !ok {
			t.Errorf("header %q missing", k)
			continue
		}
		if !reflect.DeepEqual(publishNormalize(got), publishNormalize(want)) {
			t.Errorf("header %q = %#v, want %#v", k, got, want)
		}
	}
}

// publishNormalize maps the Go types amqp091-go encodes onto the ones it decodes (int becomes
// int32 'I', a timestamp its Unix seconds), recursively, so DeepEqual compares wire values.
func publishNormalize(v any) any {
	switch x := v.(type) {
	case int:
		return int32(x)
	case amqp.Table:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = publishNormalize(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = publishNormalize(e)
		}
		return s
	case time.Time:
		return x.Unix()
	}
	return v
}

// AMQP 0-9-1 §1.8.3.7 mandatory: "This flag tells the server how to react if the message cannot
// be routed to a queue. If this flag is set, the server will return an unroutable message with a
// Return method" (§1.8.3.8, reply code 312 NO_ROUTE), carrying the original content unchanged.
func TestBasicPublish_MandatoryUnroutableIsReturned(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	returns := ch.NotifyReturn(make(chan amqp.Return, 2))
	msg := publishFullMessage([]byte("returned body"))
	key := uniqueName(t)
	for _, ex := range []string{"amq.direct", ""} {
		publishSync(t, ch, ex, key, true, msg)
		select {
		case r := <-returns:
			if r.ReplyCode != 312 || r.ReplyText != "NO_ROUTE" || r.Exchange != ex || r.RoutingKey != key {
				t.Fatalf("basic.return %d %q exchange %q key %q, want 312 NO_ROUTE %q %q",
					r.ReplyCode, r.ReplyText, r.Exchange, r.RoutingKey, ex, key)
			}
			publishAssertProperties(t, amqp.Delivery{
				Headers: r.Headers, ContentType: r.ContentType, ContentEncoding: r.ContentEncoding,
				DeliveryMode: r.DeliveryMode, Priority: r.Priority, CorrelationId: r.CorrelationId,
				ReplyTo: r.ReplyTo, Expiration: r.Expiration, MessageId: r.MessageId,
				Timestamp: r.Timestamp, Type: r.Type, UserId: r.UserId, AppId: r.AppId, Body: r.Body,
			}, msg)
		case <-time.After(5 * time.Second):
			t.Fatalf("no basic.return for a mandatory unroutable message to %q", ex)
		}
	}
}

// AMQP 0-9-1 §1.8.3.7: without mandatory an unroutable message is dropped silently: no return,
// a positive publisher confirm, and the channel stays usable.
func TestBasicPublish_NonMandatoryUnroutableIsDropped(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	publishSync(t, ch, "amq.direct", uniqueName(t), false, amqp.Publishing{Body: []byte("dropped")})
	publishSync(t, ch, "", uniqueName(t), false, amqp.Publishing{Body: []byte("dropped")})
	select {
	case r := <-returns:
		t.Fatalf("basic.return %d for a non-mandatory message", r.ReplyCode)
	case e := <-closed:
		t.Fatalf("channel closed: %v", e)
	case <-time.After(50 * time.Millisecond):
	}
	q := exchangeTempQueue(t, ch)
	publishSync(t, ch, "", q, false, amqp.Publishing{Body: []byte("after")})
	if m := publishGetOne(t, ch, q); string(m.Body) != "after" {
		t.Fatalf("got %q", m.Body)
	}
}

// AMQP 0-9-1 §4.2.6.2: a body larger than frame-max is split across body frames; the broker must
// reassemble it on publish and split it again on delivery, byte for byte.
func TestBasicPublish_LargeBodySplitAcrossFrames(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q := exchangeTempQueue(t, ch)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{131072 - 8, 131072 - 7, 1 << 20, 5 << 20} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(rng.Uint32())
		}
		if err := ch.PublishWithContext(ctx(t), "", q, false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatalf("publish %d bytes: %v", size, err)
		}
		m := publishGetOne(t, ch, q)
		if !bytes.Equal(m.Body, body) {
			t.Fatalf("body of %d bytes came back as %d different bytes", size, len(m.Body))
		}
	}
}

// AMQP 0-9-1 §1.8.1: the content header's properties (content-type, content-encoding, headers,
// delivery-mode, priority, correlation-id, reply-to, expiration, message-id, timestamp, type,
// user-id, app-id) travel with the message unchanged, to basic.get and to basic.deliver; field
// tables keep every value type, nested tables and arrays.
func TestBasicPublish_PropertiesRoundTrip(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q := exchangeTempQueue(t, ch)
	msg := publishFullMessage([]byte("properties"))
	publishSync(t, ch, "", q, false, msg)
	publishAssertProperties(t, publishGetOne(t, ch, q), msg)

	publishSync(t, ch, "", q, false, msg)
	ds, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	publishAssertProperties(t, recvDelivery(t, ds), msg)
}

// AMQP 0-9-1 §1.8.1: a message with no properties at all keeps them all empty.
func TestBasicPublish_NoPropertiesStayEmpty(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q := exchangeTempQueue(t, ch)
	publishSync(t, ch, "", q, false, amqp.Publishing{Body: []byte("bare")})
	m := publishGetOne(t, ch, q)
	publishAssertProperties(t, m, amqp.Publishing{Body: []byte("bare")})
	if m.Headers != nil {
		t.Errorf("headers = %#v, want none", m.Headers)
	}
}

// RabbitMQ validated user-id (https://www.rabbitmq.com/validated-user-id.html): a user-id property
// equal to the connection's user is accepted; any other value is a 406 PRECONDITION_FAILED
// channel error.
func TestBasicPublish_UserIdMustMatchConnectionUser(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	q := exchangeTempQueue(t, ch)
	publishSync(t, ch, "", q, false, amqp.Publishing{UserId: "guest", Body: []byte("ok")})
	if m := publishGetOne(t, ch, q); m.UserId != "guest" {
		t.Fatalf("user-id %q, want guest", m.UserId)
	}

	bad := openChannel(t, c)
	closed := bad.NotifyClose(make(chan *amqp.Error, 1))
	if err := bad.PublishWithContext(ctx(t), "", q, false, false,
		amqp.Publishing{UserId: "someone-else", Body: []byte("forged")}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if e := waitClose(t, closed); e == nil || e.Code != 406 {
		t.Fatalf("channel closed with %v, want 406", e)
	}
	publishEmpty(t, ch, q)
}

// AMQP 0-9-1 §4.2.6: a message may have an empty body (body-size 0, no body frames).
func TestBasicPublish_EmptyBody(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	q := exchangeTempQueue(t, ch)
	publishSync(t, ch, "", q, false, amqp.Publishing{ContentType: "text/plain"})
	m := publishGetOne(t, ch, q)
	if len(m.Body) != 0 || m.ContentType != "text/plain" {
		t.Fatalf("got body %q content-type %q, want empty body with text/plain", m.Body, m.ContentType)
	}
}

// AMQP 0-9-1 §4.2.6: the broker sends an empty message as basic.get-ok plus a content header with
// body-size 0 and no body frame (checked on the wire).
func TestBasicPublish_EmptyBodyHasNoBodyFrame(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, nil)
	rc.openChannel(1)
	q := rc.declareTempQueue(1)
	rc.sendMethod(1, 85, 10, rawArgs(nil).octet(0)) // confirm.select
	rc.expectMethod(1, 85, 11)
	rc.sendMethod(1, 60, 40, rawPublishArgs(q))
	rc.send(rawFrameHeader, 1, rawContentHeader(0))
	rc.expectMethod(1, 60, 80)                        // basic.ack: routed
	get := rawArgs(nil).short(0).shortstr(q).octet(1) // basic.get no-ack
	rc.sendMethod(1, 60, 70, get)
	rc.expectMethod(1, 60, 71)
	h := rc.nextFrame()
	if h.typ != rawFrameHeader || h.channel != 1 || len(h.payload) < 12 ||
		!bytes.Equal(h.payload[4:12], make([]byte, 8)) {
		t.Fatalf("got %v, want a content header with body-size 0", h)
	}
	rc.sendMethod(1, 60, 70, get)
	rc.expectMethod(1, 60, 72) // basic.get-empty, with no body frame before it
}

// RabbitMQ max_message_size (default 128 MiB, https://www.rabbitmq.com/configure.html): a publish
// whose body-size exceeds it is a 406 PRECONDITION_FAILED channel error, and the connection goes
// on working. Both RabbitMQ and Warren (started by the suite with default limits) judge it from
// the content header, so this runs in well under a second.
func TestBasicPublish_OverMaxMessageSizeIsPreconditionFailed(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ch := openChannel(t, c)
	q := exchangeTempQueue(t, ch)
	big := openChannel(t, c)
	closed := big.NotifyClose(make(chan *amqp.Error, 1))
	if err := big.PublishWithContext(ctx(t), "", q, false, false,
		amqp.Publishing{Body: make([]byte, 128<<20+1)}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if e := waitClose(t, closed); e == nil || e.Code != 406 {
		t.Fatalf("channel closed with %v, want 406", e)
	}
	publishSync(t, ch, "", q, false, amqp.Publishing{Body: []byte("small")})
	if m := publishGetOne(t, ch, q); string(m.Body) != "small" {
		t.Fatalf("got %d bytes, want the small message only", len(m.Body))
	}
}

// AMQP 0-9-1 §1.8.1 / §4.2.6.1: the content header carries up to 14 properties, flagged by bits
// 15..2 of property-flags: content-type, content-encoding, headers, delivery-mode, priority,
// correlation-id, reply-to, expiration, message-id, timestamp, type, user-id, app-id and the
// reserved cluster-id (which amqp091-go cannot send). With all 14 set, the property list comes
// back from basic.get octet for octet.
func TestBasicPublish_AllFourteenPropertiesOnTheWire(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, nil)
	rc.openChannel(1)
	q := rc.declareTempQueue(1)
	props := rawArgs(nil).short(0xFFFC).
		shortstr("text/plain").shortstr("gzip").table("k", "v").
		octet(2).octet(5).
		shortstr("corr").shortstr("reply").shortstr("60000").shortstr("id-1").
		longlong(1234567890).
		shortstr("kind").shortstr("guest").shortstr("app").shortstr("cluster-x")
	body := []byte("fourteen")
	header := append(rawArgs(nil).short(60).short(0).longlong(uint64(len(body))), props...)
	rc.sendMethod(1, 85, 10, rawArgs(nil).octet(0)) // confirm.select
	rc.expectMethod(1, 85, 11)
	rc.sendMethod(1, 60, 40, rawPublishArgs(q))
	rc.send(rawFrameHeader, 1, header)
	rc.send(rawFrameBody, 1, body)
	rc.expectMethod(1, 60, 80)                                           // basic.ack
	rc.sendMethod(1, 60, 70, rawArgs(nil).short(0).shortstr(q).octet(1)) // basic.get no-ack
	rc.expectMethod(1, 60, 71)
	h := rc.nextFrame()
	if h.typ != rawFrameHeader || h.channel != 1 || len(h.payload) < 12 {
		t.Fatalf("got %v, want the content header", h)
	}
	if !bytes.Equal(h.payload[:12], header[:12]) {
		t.Errorf("class/weight/body-size % x, want % x", h.payload[:12], header[:12])
	}
	if got := h.payload[12:]; !bytes.Equal(got, props) {
		t.Errorf("properties\n got % x\nwant % x", got, props)
	}
	if b := rc.nextFrame(); b.typ != rawFrameBody || !bytes.Equal(b.payload, body) {
		t.Fatalf("got %v, want the body %q", b, body)
	}
}
