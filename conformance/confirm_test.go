package conformance

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Publisher confirms: RabbitMQ's confirm class extension (https://www.rabbitmq.com/confirms.html,
// "Publisher Confirms"): after confirm.select every publish is numbered from 1 on the channel and
// acknowledged with basic.ack (possibly multiple=true), unroutable mandatory messages are returned
// before their ack, and a channel cannot be both transactional and in confirm mode.

// confirmCollect waits (bounded) for n confirmations on c and checks that they are acks for tags
// 1..n, each exactly once, and that nothing else follows.
func confirmCollect(t *testing.T, c <-chan amqp.Confirmation, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for i := 1; i <= n; i++ {
		select {
		case cf := <-c:
			if cf.DeliveryTag != uint64(i) || !cf.Ack {
				t.Fatalf("confirmation %d: tag %d ack=%v, want tag %d ack=true", i, cf.DeliveryTag, cf.Ack, i)
			}
		case <-timeout:
			t.Fatalf("only %d of %d confirms within 5s", i-1, n)
		}
	}
	select {
	case cf := <-c:
		t.Fatalf("extra confirmation: tag %d ack=%v", cf.DeliveryTag, cf.Ack)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestConfirm_EveryPublishAckedOnce checks that after confirm.select (sent twice: it is
// idempotent) every publish is acked and the delivery tags are 1..N, each confirmed exactly once
// whether the broker coalesces them with multiple=true or not.
func TestConfirm_EveryPublishAckedOnce(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	_, ch := dialChannel(t)
	for range 2 {
		if err := ch.Confirm(false); err != nil {
			t.Fatalf("confirm.select: %v", err)
		}
	}
	const n = 200
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n+1))
	for i := range n {
		if err := ch.PublishWithContext(ctx(t), "", q, false, false, amqp.Publishing{Body: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	confirmCollect(t, confirms, n)
	if got := consumeReady(t, admin, q); got != n {
		t.Fatalf("%d ready after %d confirmed publishes, want %d", got, n, n)
	}
}

// TestConfirm_MandatoryUnroutableReturnedBeforeAck checks the confirms guide: an unroutable
// mandatory message gets basic.return (312 NO_ROUTE) and then its basic.ack, in that order.
func TestConfirm_MandatoryUnroutableReturnedBeforeAck(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	key := uniqueName(t, "nowhere")
	if err := ch.PublishWithContext(ctx(t), "", key, true, false, amqp.Publishing{Body: []byte("lost")}); err != nil {
		t.Fatal(err)
	}
	confirmCollect(t, confirms, 1)
	// amqp091-go hands frames to listeners in arrival order, so a return sent before the
	// ack is already in the buffered channel.
	select {
	case r := <-returns:
		if r.ReplyCode != amqp.NoRoute || r.ReplyText != "NO_ROUTE" || r.RoutingKey != key || string(r.Body) != "lost" {
			t.Fatalf("basic.return %d %q key %q body %q, want 312 NO_ROUTE %q lost", r.ReplyCode, r.ReplyText, r.RoutingKey, r.Body, key)
		}
	default:
		t.Fatal("no basic.return before the basic.ack of an unroutable mandatory message")
	}
}

// TestConfirm_UnroutableNonMandatoryAcked checks the confirms guide: an unroutable message
// published without mandatory is simply acked (nothing returned).
func TestConfirm_UnroutableNonMandatoryAcked(t *testing.T) {
	t.Parallel()
	_, ch := dialChannel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	if err := ch.PublishWithContext(ctx(t), "", uniqueName(t, "nowhere"), false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	confirmCollect(t, confirms, 1)
	select {
	case r := <-returns:
		t.Fatalf("basic.return %d %q for a non-mandatory message", r.ReplyCode, r.ReplyText)
	default:
	}
}

// TestConfirm_TxSelectOnConfirmChannelPreconditionFailed checks that a channel in confirm mode
// refuses tx.select with 406 PRECONDITION_FAILED (a channel error).
func TestConfirm_TxSelectOnConfirmChannelPreconditionFailed(t *testing.T) {
	t.Parallel()
	c, ch := dialChannel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	e := amqpErr(t, ch.Tx(), amqp.PreconditionFailed)
	consumeReason(t, e, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")
	if c.IsClosed() {
		t.Fatal("406 closed the connection, want only the channel closed")
	}
}

// TestConfirm_ConfirmSelectOnTxChannelPreconditionFailed checks that a transactional channel
// refuses confirm.select with 406 PRECONDITION_FAILED (a channel error).
func TestConfirm_ConfirmSelectOnTxChannelPreconditionFailed(t *testing.T) {
	t.Parallel()
	c, ch := dialChannel(t)
	if err := ch.Tx(); err != nil {
		t.Fatal(err)
	}
	e := amqpErr(t, ch.Confirm(false), amqp.PreconditionFailed)
	consumeReason(t, e, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")
	if c.IsClosed() {
		t.Fatal("406 closed the connection, want only the channel closed")
	}
}
