package conformance

import (
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// https://www.rabbitmq.com/direct-reply-to.html: an RPC client consumes from the pseudo queue
// amq.rabbitmq.reply-to in no-ack mode and publishes with reply-to set to that name; the server
// rewrites it to amq.rabbitmq.reply-to.<token>, and a reply published to the default exchange
// with that routing key reaches the client directly.
func TestDirectReplyTo_RoundTrip(t *testing.T) {
	t.Parallel()
	c := dial(t)
	client := openChannel(t, c)
	replies, err := client.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume amq.rabbitmq.reply-to: %v", err)
	}
	server := openChannel(t, c)
	q, err := server.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Publish("", q.Name, false, false, amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "c1", Body: []byte("request")}); err != nil {
		t.Fatal(err)
	}
	var req amqp.Delivery
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, ok, err := server.Get(q.Name, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			req = m
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("request never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.HasPrefix(req.ReplyTo, "amq.rabbitmq.reply-to.") {
		t.Fatalf("reply-to seen by the server: %q, want amq.rabbitmq.reply-to.<token>", req.ReplyTo)
	}
	if err := server.Publish("", req.ReplyTo, false, false, amqp.Publishing{CorrelationId: req.CorrelationId, Body: []byte("response")}); err != nil {
		t.Fatal(err)
	}
	r := recvDelivery(t, replies)
	if string(r.Body) != "response" || r.CorrelationId != "c1" || r.RoutingKey != req.ReplyTo || r.Exchange != "" {
		t.Fatalf("reply %q corr %q key %q exchange %q", r.Body, r.CorrelationId, r.RoutingKey, r.Exchange)
	}
}

// Direct reply-to refuses a consumer that wants to ack, and a request published with
// reply-to amq.rabbitmq.reply-to from a channel that has no reply consumer (406, RabbitMQ's
// texts).
func TestDirectReplyTo_Refusals(t *testing.T) {
	t.Parallel()
	c := dial(t)
	_, err := openChannel(t, c).Consume("amq.rabbitmq.reply-to", "", false, false, false, false, nil)
	if e := amqpErr(t, err, 406); e.Reason != "PRECONDITION_FAILED - reply consumer cannot acknowledge" {
		t.Errorf("text %q", e.Reason)
	}
	ch := openChannel(t, c)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Publish("", "anywhere", false, false, amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to"}); err != nil {
		t.Fatal(err)
	}
	e := waitClose(t, closed)
	if e == nil || e.Code != 406 || e.Reason != "PRECONDITION_FAILED - fast reply consumer does not exist" {
		t.Fatalf("close %v", e)
	}
}

// https://www.rabbitmq.com/sender-selected.html: routing keys in the CC and BCC headers (arrays
// of strings) are routed too; the BCC header is removed from the delivered message, CC kept.
func TestSenderSelectedDistribution_CCAndBCC(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	var qs []string
	for range 3 {
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, q.Name)
	}
	publishSync(t, ch, "", qs[0], false, amqp.Publishing{Body: []byte("cc"),
		Headers: amqp.Table{"CC": []any{qs[1]}, "BCC": []any{qs[2]}}})
	for i, q := range qs {
		m := publishGetOne(t, ch, q)
		if string(m.Body) != "cc" {
			t.Fatalf("queue %d got %q", i, m.Body)
		}
		if _, ok := m.Headers["BCC"]; ok {
			t.Errorf("queue %d: BCC header delivered", i)
		}
		if cc, _ := m.Headers["CC"].([]any); len(cc) != 1 || cc[0] != qs[1] {
			t.Errorf("queue %d: CC header %v", i, m.Headers["CC"])
		}
	}
}

// https://www.rabbitmq.com/parameters.html#policies: a policy set through the management API
// applies to matching existing queues (here max-length), and deleting it lifts the limit.
func TestPolicy_MaxLengthThroughManagementAPI(t *testing.T) {
	_, ch := dialChannel(t)
	q := uniqueName(t)
	if _, err := ch.QueueDeclare(q, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	name := uniqueName(t, "policy")
	path := "/api/policies/%2F/" + url.PathEscape(name)
	body := `{"pattern":"^` + strings.ReplaceAll(q, ".", `\\.`) + `$","apply-to":"queues","priority":7,"definition":{"max-length":2}}`
	if code, resp := rabbitAPI(t, "PUT", path, []byte(body)); code != 201 && code != 204 {
		t.Fatalf("PUT policy: %d %s", code, resp)
	}
	t.Cleanup(func() { rabbitAPI(t, "DELETE", path, nil) })
	if code, resp := rabbitAPI(t, "GET", path, nil); code != 200 || !strings.Contains(resp, `"max-length":2`) {
		t.Fatalf("GET policy: %d %s", code, resp)
	}
	// RabbitMQ applies policies asynchronously: publish until the limit shows.
	deadline := time.Now().Add(10 * time.Second)
	for {
		for range 4 {
			publishSync(t, ch, "", q, false, amqp.Publishing{Body: []byte("m")})
		}
		info, err := ch.QueueDeclarePassive(q, false, true, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if info.Messages == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d messages with a max-length 2 policy", info.Messages)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, resp := rabbitAPI(t, "DELETE", path, nil); code != 204 {
		t.Fatalf("DELETE policy: %d %s", code, resp)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		publishSync(t, ch, "", q, false, amqp.Publishing{Body: []byte("m")})
		info, err := ch.QueueDeclarePassive(q, false, true, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if info.Messages > 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the limit stayed after the policy was deleted")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
