package queue

import (
	"testing"

	"github.com/warrenmq/warren/amqp"
)

// refConsumer records the Ref each delivery it took came through.
type refConsumer struct {
	fakeConsumer
	refs []Ref
}

func (c *refConsumer) Deliver(q Ref, e Entry) Result {
	res := c.fakeConsumer.Deliver(q, e)
	if res != Refused {
		c.refs = append(c.refs, q)
	}
	return res
}

// The local Ref is the queue's own: every Ref of a queue is equal (a map key for the
// session), deliveries come through it, and what goes back through it settles the queue.
func TestRef_LocalDeliversAndSettlesThroughTheSameRef(t *testing.T) {
	q := New("q", Options{})
	r := q.Ref()
	if r != q.Ref() || r.Name() != "q" || r.IsStream() {
		t.Fatal("Ref of a queue not stable")
	}
	c := &refConsumer{fakeConsumer: fakeConsumer{tag: "c", credit: 2}}
	added := 0
	if err := r.Subscribe(c, Subscription{Prefetch: 2, Added: func() { added++ }}); err != nil {
		t.Fatal(err)
	}
	if added != 1 {
		t.Fatalf("Added ran %d times", added)
	}
	for _, b := range []string{"a", "b", "c"} {
		if st := r.Publish(msg(t, b, false), nil); st != PubQueued {
			t.Fatalf("publish %s: %v", b, st)
		}
	}
	if len(c.refs) != 2 || c.refs[0] != r || c.refs[1] != r {
		t.Fatalf("deliveries through %v, want 2 through the queue's Ref", c.refs)
	}
	if ready, unacked, consumers, _ := r.Counts(); ready != 1 || unacked != 2 || consumers != 1 {
		t.Fatalf("counts %d ready %d unacked %d consumers", ready, unacked, consumers)
	}
	// Requeue the first, ack the second: the consumer has one credit left for the requeued one.
	c.credit = 1
	r.Settle(c.got[:1], SettleRequeue)
	if len(c.got) != 3 || string(c.got[2].Msg.Body) != "a" || !c.got[2].Redelivered {
		t.Fatalf("after requeue got %q", bodies(c.got))
	}
	r.Settle([]Entry{c.got[1], c.got[2]}, SettleAck)
	r.Unsubscribe(c)
	// basic.get: with no-ack the message is settled as it is taken.
	e, remaining, ok, err := r.Get(true)
	if err != nil || !ok || string(e.Msg.Body) != "c" || remaining != 0 {
		t.Fatalf("get: %q %d %v %v", e.Msg.Body, remaining, ok, err)
	}
	if ready, unacked, consumers, _ := r.Counts(); ready != 0 || unacked != 0 || consumers != 0 {
		t.Fatalf("after no-ack get: %d ready %d unacked %d consumers", ready, unacked, consumers)
	}
	if _, _, ok, _ := r.Get(false); ok {
		t.Fatal("get from an empty queue")
	}
}

// A rejected entry is dead-lettered by its queue; a requeued one comes back.
func TestRef_SettleRejectDeadLetters(t *testing.T) {
	q := New("q", Options{Args: amqp.Table{"x-dead-letter-exchange": "dlx"}})
	var dead []DeadLetter
	q.OnDeadLetter = func(_ *Queue, d []DeadLetter) { dead = append(dead, d...) }
	r := q.Ref()
	r.Publish(msg(t, "x", false), nil)
	e, _, ok, _ := r.Get(false)
	if !ok {
		t.Fatal("no message")
	}
	r.Settle([]Entry{e}, SettleReject)
	if len(dead) != 1 || dead[0].Reason != "rejected" {
		t.Fatalf("dead letters %+v", dead)
	}
	if n, _ := r.Purge(); n != 0 {
		t.Fatalf("purged %d", n)
	}
}

// A publish the queue writes to its log answers PubPending and completes once, with the
// final status, when the log has it; without a Completion nothing is pending; a deleted
// queue drops the publish and keeps no Completion.
func TestRef_PublishCompletesWhenDurable(t *testing.T) {
	l := newMemLog()
	q := New("q", Options{Durable: true})
	q.SetLog(l)
	r := q.Ref()
	var got []PubStatus
	done := CompletionFunc(func(st PubStatus, err error) {
		if err != nil {
			t.Error(err)
		}
		got = append(got, st)
	})
	if st := r.Publish(msg(t, "p", true), done); st != PubPending {
		t.Fatalf("persistent publish answered %v", st)
	}
	if st := r.Publish(msg(t, "t", false), done); st != PubQueued {
		t.Fatalf("transient publish answered %v", st)
	}
	if len(got) != 0 {
		t.Fatal("completed before the log had it")
	}
	for _, d := range l.dones {
		d()
	}
	if len(got) != 1 || got[0] != PubQueued {
		t.Fatalf("completions %v, want one PubQueued", got)
	}
	if n, err := r.Delete(false, false); err != nil || n != 2 {
		t.Fatalf("delete: %d %v", n, err)
	}
	if st := r.Publish(msg(t, "late", true), done); st != PubDropped {
		t.Fatalf("publish to a deleted queue answered %v", st)
	}
	if len(l.dones) != 1 {
		t.Fatal("a deleted queue wrote the publish")
	}
}
