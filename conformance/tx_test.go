package conformance

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Transactions: AMQP 0-9-1 §1.9 tx class (select, commit, rollback) and RabbitMQ's notes on it
// (https://www.rabbitmq.com/semantics.html#tx): publishes and acks inside a transaction take
// effect at commit; rollback discards them.

// txChannel opens a channel on a new connection and puts it in transactional mode (tx.select
// twice: it is idempotent).
func txChannel(t *testing.T) *amqp.Channel {
	t.Helper()
	_, ch := dialChannel(t)
	for range 2 {
		if err := ch.Tx(); err != nil {
			t.Fatalf("tx.select: %v", err)
		}
	}
	return ch
}

// txPublish publishes bodies to q on ch through the default exchange.
func txPublish(t *testing.T, ch *amqp.Channel, q string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if err := ch.PublishWithContext(ctx(t), "", q, false, false, amqp.Publishing{Body: []byte(b)}); err != nil {
			t.Fatalf("publish %q: %v", b, err)
		}
	}
}

// TestTx_PublishVisibleOnlyAfterCommit checks §1.9.2.3 tx.commit: publishes in a transaction are
// not routed to queues until the commit, and all are after it.
func TestTx_PublishVisibleOnlyAfterCommit(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	ch := txChannel(t)
	txPublish(t, ch, q, "m1", "m2", "m3")
	// A synchronous method on the same channel is handled after the publishes.
	consumeReady(t, ch, q)
	if n := consumeReady(t, admin, q); n != 0 {
		t.Fatalf("%d ready before tx.commit, want 0", n)
	}
	if err := ch.TxCommit(); err != nil {
		t.Fatalf("tx.commit: %v", err)
	}
	consumeWaitReady(t, admin, q, 3)
	for _, want := range []string{"m1", "m2", "m3"} {
		consumeExpect(t, consumeGet(t, admin, q, true), want, false)
	}
}

// TestTx_RollbackDiscardsPublishes checks §1.9.2.5 tx.rollback: uncommitted publishes are
// discarded, and the channel stays transactional for the next transaction.
func TestTx_RollbackDiscardsPublishes(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	ch := txChannel(t)
	txPublish(t, ch, q, "gone1", "gone2")
	if err := ch.TxRollback(); err != nil {
		t.Fatalf("tx.rollback: %v", err)
	}
	txPublish(t, ch, q, "kept")
	consumeReady(t, ch, q)
	if n := consumeReady(t, admin, q); n != 0 {
		t.Fatalf("%d ready after rollback and before the next commit, want 0", n)
	}
	if err := ch.TxCommit(); err != nil {
		t.Fatalf("tx.commit: %v", err)
	}
	consumeWaitReady(t, admin, q, 1)
	consumeExpect(t, consumeGet(t, admin, q, true), "kept", false)
}

// TestTx_AckTakesEffectOnCommit checks §1.9 (acks are part of the transaction): an ack that was
// never committed does not count, so the message is requeued when the channel closes; a
// committed ack removes it.
func TestTx_AckTakesEffectOnCommit(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1")

	ch := txChannel(t)
	m := consumeGet(t, ch, q, false)
	if err := m.Ack(false); err != nil {
		t.Fatal(err)
	}
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	consumeWaitReady(t, admin, q, 1)

	ch = txChannel(t)
	m = consumeGet(t, ch, q, false)
	consumeExpect(t, m, "m1", true)
	if err := m.Ack(false); err != nil {
		t.Fatal(err)
	}
	if err := ch.TxCommit(); err != nil {
		t.Fatalf("tx.commit: %v", err)
	}
	ackRemaining(t, admin, ch, q)
}

// TestTx_RollbackRestoresAckedToUnacked checks RabbitMQ's tx.rollback of acks (§1.9.2.5): the
// rolled-back acks are forgotten but the messages are NOT requeued; they stay unacked on the
// channel, so their tags can be acked again, and closing the channel requeues the others.
func TestTx_RollbackRestoresAckedToUnacked(t *testing.T) {
	t.Parallel()
	admin, q := consumeSetup(t)
	consumePublish(t, admin, q, "m1", "m2")
	ch := txChannel(t)
	m1, m2 := consumeGet(t, ch, q, false), consumeGet(t, ch, q, false)
	if err := ch.Ack(m2.DeliveryTag, true); err != nil {
		t.Fatal(err)
	}
	if err := ch.TxRollback(); err != nil {
		t.Fatalf("tx.rollback: %v", err)
	}
	if m, ok, err := ch.Get(q, false); err != nil || ok {
		t.Fatalf("get after rollback: ok=%v err=%v body=%q, want get-empty (rolled-back acks are not requeued)", ok, err, m.Body)
	}
	if err := m1.Ack(false); err != nil {
		t.Fatal(err)
	}
	if err := ch.TxCommit(); err != nil {
		t.Fatalf("tx.commit of a re-ack after rollback: %v", err)
	}
	ackRemaining(t, admin, ch, q, "m2")
}

// TestTx_CommitWithoutSelectPreconditionFailed checks §1.9.2.3 ("The client MUST NOT use the
// Commit method on non-transacted channels"): RabbitMQ closes the channel with 406.
func TestTx_CommitWithoutSelectPreconditionFailed(t *testing.T) {
	t.Parallel()
	c, ch := dialChannel(t)
	e := amqpErr(t, ch.TxCommit(), amqp.PreconditionFailed)
	consumeReason(t, e, "PRECONDITION_FAILED - channel is not transactional")
	if c.IsClosed() {
		t.Fatal("406 closed the connection, want only the channel closed")
	}
}

// TestTx_RollbackWithoutSelectPreconditionFailed checks §1.9.2.5 ("The client MUST NOT use the
// Rollback method on non-transacted channels"): RabbitMQ closes the channel with 406.
func TestTx_RollbackWithoutSelectPreconditionFailed(t *testing.T) {
	t.Parallel()
	c, ch := dialChannel(t)
	e := amqpErr(t, ch.TxRollback(), amqp.PreconditionFailed)
	consumeReason(t, e, "PRECONDITION_FAILED - channel is not transactional")
	if c.IsClosed() {
		t.Fatal("406 closed the connection, want only the channel closed")
	}
}
