package queue

import (
	"fmt"
	"sync"
	"testing"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

func msg(t testing.TB, body string, persistent bool) *message.Message {
	t.Helper()
	p := amqp.Properties{}
	if persistent {
		p.DeliveryMode = 2
	}
	m, err := message.New("", "q", p.AppendTo(nil), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fakeConsumer takes up to credit messages (no limit when credit < 0).
type fakeConsumer struct {
	tag    string
	credit int
	noAck  bool
	got    []Entry
	cancel int
}

func (f *fakeConsumer) Tag() string { return f.tag }
func (f *fakeConsumer) Deliver(q Ref, e Entry) Result {
	if f.credit == 0 {
		return Refused
	}
	f.credit--
	f.got = append(f.got, e)
	if f.noAck {
		return Settled
	}
	return Taken
}
func (f *fakeConsumer) Cancelled(q Ref) { f.cancel++ }

func bodies(es []Entry) string {
	s := ""
	for _, e := range es {
		s += string(e.Msg.Body)
	}
	return s
}

func TestQueue_RoundRobinAndCredit(t *testing.T) {
	q := New("q", Options{})
	a := &fakeConsumer{tag: "a", credit: 2}
	b := &fakeConsumer{tag: "b", credit: -1}
	q.AddConsumer(a, false, nil)
	q.AddConsumer(b, false, nil)
	for i := range 6 {
		q.Publish(msg(t, fmt.Sprint(i), false), nil)
	}
	if bodies(a.got) != "02" || bodies(b.got) != "1345" {
		t.Fatalf("a=%q b=%q", bodies(a.got), bodies(b.got))
	}
	ready, unacked, consumers := q.Counts()
	if ready != 0 || unacked != 6 || consumers != 2 {
		t.Fatalf("counts %d %d %d", ready, unacked, consumers)
	}
}

func TestQueue_RequeueKeepsOrder(t *testing.T) {
	q := New("q", Options{})
	for i := range 5 {
		q.Publish(msg(t, fmt.Sprint(i), false), nil)
	}
	var got []Entry
	for range 3 {
		e, _, ok := q.Get()
		if !ok {
			t.Fatal("empty")
		}
		got = append(got, e)
	}
	// requeue 2 then 0: they go back in front, in original order, marked redelivered
	q.Requeue([]Entry{got[2], got[0]})
	var order string
	for {
		e, _, ok := q.Get()
		if !ok {
			break
		}
		order += string(e.Msg.Body)
		if (e.Msg.Body[0] == '0' || e.Msg.Body[0] == '2') != e.Redelivered {
			t.Fatalf("message %s redelivered=%v", e.Msg.Body, e.Redelivered)
		}
	}
	if order != "0234" {
		t.Fatalf("order %q, want 0234", order)
	}
}

func TestQueue_ExclusiveConsumerAndDelete(t *testing.T) {
	q := New("q", Options{VHost: "/"})
	a := &fakeConsumer{tag: "a", credit: -1}
	if err := q.AddConsumer(a, true, nil); err != nil {
		t.Fatal(err)
	}
	err := q.AddConsumer(&fakeConsumer{tag: "b"}, false, nil)
	if e, ok := err.(*amqp.Error); !ok || e.Code != amqp.AccessRefused {
		t.Fatalf("second consumer: %v", err)
	}
	if _, err := q.Delete(true, false); err == nil {
		t.Fatal("delete if-unused with a consumer succeeded")
	}
	q.RemoveConsumer(a)
	q.Publish(msg(t, "x", false), nil)
	if _, err := q.Delete(false, true); err == nil {
		t.Fatal("delete if-empty of a non-empty queue succeeded")
	}
	b := &fakeConsumer{tag: "b", credit: 0}
	q.AddConsumer(b, false, nil)
	if n, err := q.Delete(false, false); err != nil || n != 1 || b.cancel != 1 {
		t.Fatalf("delete: n=%d err=%v cancelled=%d", n, err, b.cancel)
	}
	if st := q.Publish(msg(t, "y", false), nil); st != PubDropped {
		t.Fatal("publish to a deleted queue accepted")
	}
}

func TestQueue_AutoDeleteAfterLastConsumer(t *testing.T) {
	q := New("q", Options{AutoDelete: true})
	unused := 0
	q.OnUnused = func(*Queue) { unused++ }
	a, b := &fakeConsumer{tag: "a"}, &fakeConsumer{tag: "b"}
	q.AddConsumer(a, false, nil)
	q.AddConsumer(b, false, nil)
	q.RemoveConsumer(a)
	if unused != 0 {
		t.Fatal("unused with a consumer left")
	}
	q.RemoveConsumer(b)
	if unused != 1 {
		t.Fatalf("OnUnused called %d times", unused)
	}
}

// memLog is an in-memory queue.Log.
type memLog struct {
	mu        sync.Mutex
	next      uint64
	data      map[uint64][]byte
	retired   map[uint64]bool
	delivered map[uint64]bool
	dones     []func()
}

func newMemLog() *memLog {
	return &memLog{data: map[uint64][]byte{}, retired: map[uint64]bool{}, delivered: map[uint64]bool{}}
}

func (l *memLog) Append(p []byte, done func(uint64, error)) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	off := l.next
	l.data[off] = append([]byte(nil), p...)
	if done != nil {
		l.dones = append(l.dones, func() { done(off, nil) })
	}
	return off
}
func (l *memLog) Retire(offs ...uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range offs {
		l.retired[o] = true
	}
}
func (l *memLog) MarkDelivered(offs ...uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range offs {
		l.delivered[o] = true
	}
}

func TestQueue_PersistsOnlyPersistentMessagesAndRetiresOnAck(t *testing.T) {
	l := newMemLog()
	q := New("q", Options{Durable: true})
	q.SetLog(l)
	durable := 0
	if q.Publish(msg(t, "p1", true), CompletionFunc(func(PubStatus, error) { durable++ })) != PubPending {
		t.Fatal("persistent publish not pending")
	}
	if q.Publish(msg(t, "t1", false), CompletionFunc(func(PubStatus, error) { t.Fatal("transient waited") })) != PubQueued {
		t.Fatal("transient publish pending")
	}
	q.Publish(msg(t, "p2", true), nil)
	if len(l.data) != 2 {
		t.Fatalf("%d records, want 2 (persistent only)", len(l.data))
	}
	for _, d := range l.dones {
		d()
	}
	if durable != 1 {
		t.Fatalf("onDurable ran %d times", durable)
	}
	e1, _, _ := q.Get() // p1: delivered
	if !l.delivered[e1.LogOffset] {
		t.Fatal("delivery not marked")
	}
	q.Ack([]Entry{e1})
	if !l.retired[e1.LogOffset] {
		t.Fatal("ack did not retire")
	}
	// a no-ack consumer retires on delivery
	c := &fakeConsumer{tag: "c", credit: -1, noAck: true}
	q.AddConsumer(c, false, nil)
	if bodies(c.got) != "t1p2" {
		t.Fatalf("consumer got %q", bodies(c.got))
	}
	if !l.retired[c.got[1].LogOffset] {
		t.Fatal("no-ack delivery not retired")
	}
	// decoded records are the messages
	m, _, err := DecodeLogRecord(l.data[e1.LogOffset])
	if err != nil || string(m.Body) != "p1" {
		t.Fatalf("record: %v %q", err, m.Body)
	}
}

func TestQueue_PurgeRetiresPersisted(t *testing.T) {
	l := newMemLog()
	q := New("q", Options{Durable: true})
	q.SetLog(l)
	for i := range 3 {
		q.Publish(msg(t, fmt.Sprint(i), true), nil)
	}
	if n := q.Purge(); n != 3 {
		t.Fatalf("purged %d", n)
	}
	if len(l.retired) != 3 {
		t.Fatalf("retired %d", len(l.retired))
	}
}

func (l *memLog) Read(off uint64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.retired[off] {
		return nil, fmt.Errorf("retired")
	}
	return append([]byte(nil), l.data[off]...), nil
}

func TestQueue_SpillsBeyondBudgetAndReadsBackInOrder(t *testing.T) {
	spill := newMemLog()
	durable := newMemLog()
	b := &Budget{MaxQueueBytes: 64 << 10}
	q := New("q", Options{Durable: true})
	q.SetLog(durable)
	q.SetBudget(b)
	opened := 0
	q.SetSpill(func() (Spill, error) { opened++; return spill, nil })
	const n = 5000
	for i := range n {
		q.Publish(msg(t, fmt.Sprintf("m%05d", i), i%2 == 0), nil)
	}
	if opened != 1 || len(spill.data) == 0 {
		t.Fatalf("spill opened %d times with %d records", opened, len(spill.data))
	}
	if used := b.Used(); used > 64<<10+1024 {
		t.Fatalf("memory used %d over the queue budget", used)
	}
	if ready, _, _ := q.Counts(); ready != n {
		t.Fatalf("ready %d, want %d", ready, n)
	}
	// What management and metrics read counts the spilled messages too.
	if in := q.Info(); in.Ready != n || in.PagedOut == 0 || in.PagedOut >= n || in.PagedOutBytes == 0 ||
		in.ReadyBytes <= in.PagedOutBytes || in.Memory <= 0 || in.Memory > 64<<10+1024 {
		t.Fatalf("Info with a spilled backlog: %+v", in)
	}
	// A requeued message goes back before everything spilled.
	e0, rem, _ := q.Get()
	if rem != n-1 || string(e0.Msg.Body) != "m00000" {
		t.Fatalf("first get %q remaining %d", e0.Msg.Body, rem)
	}
	q.Requeue([]Entry{e0})
	c := &fakeConsumer{tag: "c", credit: -1, noAck: true}
	q.AddConsumer(c, false, nil)
	if len(c.got) != n {
		t.Fatalf("consumer got %d of %d", len(c.got), n)
	}
	for i, e := range c.got {
		if want := fmt.Sprintf("m%05d", i); string(e.Msg.Body) != want {
			t.Fatalf("message %d is %q, want %q", i, e.Msg.Body, want)
		}
		if (i%2 == 0) != (e.LogOffset != 0) {
			t.Fatalf("message %d: persistent=%v LogOffset=%d", i, i%2 == 0, e.LogOffset)
		}
	}
	if len(spill.retired) != len(spill.data) {
		t.Fatalf("spill retired %d of %d records", len(spill.retired), len(spill.data))
	}
	if b.Used() != 0 {
		t.Fatalf("budget still counts %d bytes", b.Used())
	}
	// every persistent message was retired from the durable log on (no-ack) delivery
	if len(durable.retired) != n/2 {
		t.Fatalf("durable retired %d, want %d", len(durable.retired), n/2)
	}
}

func TestQueue_PurgeDropsSpill(t *testing.T) {
	spill, durable := newMemLog(), newMemLog()
	q := New("q", Options{Durable: true})
	q.SetLog(durable)
	q.SetBudget(&Budget{MaxQueueBytes: 8 << 10})
	q.SetSpill(func() (Spill, error) { return spill, nil })
	for i := range 1000 {
		q.Publish(msg(t, fmt.Sprint(i), true), nil)
	}
	if n := q.Purge(); n != 1000 {
		t.Fatalf("purged %d", n)
	}
	if len(durable.retired) != 1000 {
		t.Fatalf("durable retired %d", len(durable.retired))
	}
	if ready, _, _ := q.Counts(); ready != 0 {
		t.Fatalf("ready %d after purge", ready)
	}
}

// A publish that reaches a queue taken out of service (a replicated queue whose leadership
// moved: routed before the move, published after) is refused, so the publisher is nacked; as
// a dropped publish (a deleted queue) it was confirmed without being stored anywhere. Its
// consumers move to the successor (queue.Mover), or are cancelled.
func TestQueue_OutOfServiceRefusesPublishesAndMovesConsumers(t *testing.T) {
	q := New("q", Options{})
	next := New("q", Options{})
	mover := &movingConsumer{fakeConsumer: fakeConsumer{tag: "m", credit: -1}}
	plain := &fakeConsumer{tag: "p", credit: -1}
	q.AddConsumer(mover, false, nil)
	q.AddConsumer(plain, false, nil)
	q.OutOfServiceTo(next.Ref())
	if st := q.Publish(msg(t, "late", true), nil); st != PubRejected {
		t.Fatalf("publish to a queue out of service: %v, want PubRejected", st)
	}
	if mover.to != next.Ref() || mover.cancel != 0 {
		t.Fatalf("mover: moved to %v, cancelled %d times", mover.to, mover.cancel)
	}
	if plain.cancel != 1 {
		t.Fatal("a consumer that cannot move is not cancelled")
	}
	d := New("d", Options{})
	d.Delete(false, false)
	if st := d.Publish(msg(t, "x", true), nil); st != PubDropped {
		t.Fatalf("publish to a deleted queue: %v, want PubDropped", st)
	}
}

type movingConsumer struct {
	fakeConsumer
	to Ref
}

func (c *movingConsumer) Moved(_, to Ref) { c.to = to }
