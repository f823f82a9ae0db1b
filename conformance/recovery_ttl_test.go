package conformance

import (
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Warren only (restarts the broker): a persistent message whose TTL runs out while the broker
// is down is dead-lettered after recovery, with reason expired, and never delivered from its
// queue.
func TestRecovery_MessageExpiredWhileDownIsDeadLettered(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	b := durBroker(t, dir)
	q, dlq, dlx := uniqueName(t, "q"), uniqueName(t, "dlq"), uniqueName(t, "dlx")
	c := dialURL(t, b.URL)
	ch := openChannel(t, c)
	if err := ch.ExchangeDeclare(dlx, "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(dlq, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-message-ttl": int32(300), "x-dead-letter-exchange": dlx}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", q, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("late")})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctx(t)); !ok || err != nil {
		t.Fatalf("confirm: %v %v", ok, err)
	}
	c.Close()
	b.Stop()
	time.Sleep(400 * time.Millisecond) // the TTL passes while the broker is down
	b = durBroker(t, dir)
	c = dialURL(t, b.URL)
	ch = openChannel(t, c)
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, ok, err := ch.Get(dlq, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if string(m.Body) != "late" {
				t.Fatalf("dead letter %q", m.Body)
			}
			if d, _ := m.Headers["x-death"].([]any); len(d) != 1 || d[0].(amqp.Table)["reason"] != "expired" {
				t.Fatalf("x-death %v", m.Headers["x-death"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired message was not dead-lettered after recovery")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok, _ := ch.Get(q, true); ok {
		t.Fatal("the expired message was delivered from its queue")
	}
}
