package vhost

import (
	"testing"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/queue"
)

// At start, definitions come back by kind (queues before bindings), and a message whose TTL
// ran out while the node was down expires as soon as its queue is back: its dead letter waits
// until every definition is back (FinishRestore), then goes through the dead-letter exchange
// and its binding, and with the dead-letter exchange a policy gives (applied at the end).
func TestRestore_DeadLettersWaitForTheDefinitions(t *testing.T) {
	v := New("/", nil)
	v.BeginRestore()
	replay := replayEffects{}
	apply := func(rec meta.Record) {
		t.Helper()
		rec.VHost = v.Name
		if _, err := v.Apply(rec, replay); err != nil {
			t.Fatalf("%s: %v", rec.String(), err)
		}
	}
	apply(meta.Record{Kind: meta.KindPolicy, Name: "dlx", Fields: amqp.Table{"p": "^q$", "at": "queues", "pr": int64(0), "d": amqp.Table{"dead-letter-exchange": "dlx"}}})
	apply(meta.Record{Kind: meta.KindExchange, Name: "dlx", Fields: amqp.Table{"t": "fanout"}})
	apply(meta.Record{Kind: meta.KindQueue, Name: "q"})
	apply(meta.Record{Kind: meta.KindQueue, Name: "dlq"})
	q := v.Queue("q")
	m, err := message.New("", "q", []byte{0, 0}, []byte("late"))
	if err != nil {
		t.Fatal(err)
	}
	v.deadLetter(q, []queue.DeadLetter{{Msg: m, Reason: "expired"}}) // as the expiry timer does
	apply(meta.Record{Kind: meta.KindBinding, Fields: amqp.Table{"s": "dlx", "d": "dlq", "de": false, "rk": "", "a": amqp.Table{}}})
	dlq := v.Queue("dlq")
	if ready(dlq) != 0 {
		t.Fatal("dead-lettered before the definitions were back")
	}
	v.ApplyPolicies()
	v.FinishRestore()
	if ready(dlq) != 1 {
		t.Fatalf("dead-letter queue holds %d, want 1", ready(dlq))
	}
	// Once restored, dead letters go at once.
	v.deadLetter(q, []queue.DeadLetter{{Msg: m, Reason: "expired"}})
	if ready(dlq) != 2 {
		t.Fatalf("dead-letter queue holds %d, want 2", ready(dlq))
	}
}

// replayEffects is the Effects of a replay without a store.
type replayEffects struct{}

func (replayEffects) Keep()           {}
func (replayEffects) Drop(string)     {}
func (replayEffects) Replaying() bool { return true }
