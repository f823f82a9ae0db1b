package vhost

import (
	"errors"
	"sync"
	"testing"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

// heldLog is a queue.Log whose appends become durable when the test says so.
type heldLog struct {
	mu    sync.Mutex
	next  uint64
	dones []func(uint64, error)
}

func (l *heldLog) Append(_ []byte, done func(uint64, error)) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	if done != nil {
		l.dones = append(l.dones, done)
	}
	return l.next
}
func (l *heldLog) Retire(...uint64)        {}
func (l *heldLog) MarkDelivered(...uint64) {}

// complete makes the held appends durable (or failed with err).
func (l *heldLog) complete(err error) {
	l.mu.Lock()
	dones := l.dones
	l.dones = nil
	l.mu.Unlock()
	for _, d := range dones {
		d(0, err)
	}
}

// answers records what a Wait's owner is told.
type answers struct {
	mu  sync.Mutex
	got [][2]bool
}

func (a *answers) Answered(rejected, failed bool) {
	a.mu.Lock()
	a.got = append(a.got, [2]bool{rejected, failed})
	a.mu.Unlock()
}

func (a *answers) told() [][2]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][2]bool(nil), a.got...)
}

func pubMsg(t *testing.T, exchange, key string, p amqp.Properties) *message.Message {
	t.Helper()
	m, err := message.New(exchange, key, p.AppendTo(nil), []byte("body"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// publishVHost has a fanout "fan" to the durable queue "d" (writing to log) and the queue
// "full" (x-overflow reject-publish, full at 0), and a direct "direct" with alternate
// exchange "fan" that routes key "k" to "d".
func publishVHost(t *testing.T, log *heldLog) *VHost {
	t.Helper()
	v := New("/", nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := v.DeclareExchange(ExchangeDecl{Name: "fan", Type: "fanout", Durable: true})
	must(err)
	_, err = v.DeclareExchange(ExchangeDecl{Name: "direct", Type: "direct", Durable: true, Args: amqp.Table{"alternate-exchange": "fan"}})
	must(err)
	_, err = v.DeclareExchange(ExchangeDecl{Name: "only-full", Type: "fanout", Durable: true})
	must(err)
	_, _, err = v.DeclareQueue(QueueDecl{Name: "d", Durable: true})
	must(err)
	v.Queue("d").SetLog(log)
	_, _, err = v.DeclareQueue(QueueDecl{Name: "full", Args: amqp.Table{"x-overflow": "reject-publish", "x-max-length": int32(0)}})
	must(err)
	must(v.BindQueue("d", "fan", "", nil, nil))
	must(v.BindQueue("full", "fan", "", nil, nil))
	must(v.BindQueue("full", "only-full", "", nil, nil))
	must(v.BindQueue("d", "direct", "k", nil, nil))
	return v
}

// What Publish reports is what each caller answers from: routed (not returned), queued
// (the HTTP API's "routed"), rejected by overflow (nacked), duplicate; errors publish nothing.
func TestPublish_ReportsWhatBecameOfTheMessage(t *testing.T) {
	v := publishVHost(t, &heldLog{})
	var r Router
	for _, tc := range []struct {
		name                                 string
		m                                    *message.Message
		routed, queued, rejected, duplicated bool
	}{
		{name: "no queue", m: pubMsg(t, "", "nowhere", amqp.Properties{})},
		{name: "to a queue", m: pubMsg(t, "", "d", amqp.Properties{}), routed: true, queued: true},
		{name: "full and not", m: pubMsg(t, "fan", "", amqp.Properties{}), routed: true, queued: true, rejected: true},
		{name: "only full", m: pubMsg(t, "only-full", "", amqp.Properties{}), routed: true, rejected: true},
		{name: "alternate exchange", m: pubMsg(t, "direct", "other", amqp.Properties{}), routed: true, queued: true, rejected: true},
		{name: "bound key", m: pubMsg(t, "direct", "k", amqp.Properties{}), routed: true, queued: true},
		{name: "BCC", m: pubMsg(t, "", "nowhere", amqp.Properties{Headers: amqp.Table{"BCC": []any{"d"}}}), routed: true, queued: true},
	} {
		out, err := v.Publish(&r, tc.m, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if out.Routed != tc.routed || out.Queued != tc.queued || out.Rejected != tc.rejected || out.Duplicate != tc.duplicated || out.Pending {
			t.Errorf("%s: %+v", tc.name, out)
		}
		if len(r.Queues) != 0 {
			t.Errorf("%s: the router keeps %d queues", tc.name, len(r.Queues))
		}
	}
	// The BCC header routes, and the queue gets the message without it.
	e, _, ok, _ := v.Queue("d").Ref().Get(true)
	for ok {
		if _, has := e.Msg.Headers()["BCC"]; has {
			t.Fatal("a queue got the BCC header")
		}
		e, _, ok, _ = v.Queue("d").Ref().Get(true)
	}
	if _, err := v.Publish(&r, pubMsg(t, "missing", "", amqp.Properties{}), nil); err == nil {
		t.Fatal("publish to a missing exchange accepted")
	}
}

// A publish that waits (confirms, tx.commit-ok) is answered once, after its owner released
// it and every queue that had to write it has answered; a refusal by overflow and a failed
// write are reported; a Wait no queue held can be used again.
func TestPublish_WaitAnsweredWhenEveryQueueAnswered(t *testing.T) {
	log := &heldLog{}
	v := publishVHost(t, log)
	var r Router
	var a answers
	var w Wait

	w.Reset(&a) // transient: nothing to wait for, w stays free
	out, err := v.Publish(&r, pubMsg(t, "", "d", amqp.Properties{}), &w)
	if err != nil || out.Pending || !out.Queued {
		t.Fatalf("transient publish: %+v %v", out, err)
	}

	w.Reset(&a) // persistent to "d" and refused by "full"
	out, err = v.Publish(&r, pubMsg(t, "fan", "", amqp.Properties{DeliveryMode: 2}), &w)
	if err != nil || !out.Pending || !out.Rejected {
		t.Fatalf("persistent publish: %+v %v", out, err)
	}
	w.Release()
	if got := a.told(); len(got) != 0 {
		t.Fatalf("answered %v before the log had the message", got)
	}
	log.complete(nil)
	if got := a.told(); len(got) != 1 || got[0] != [2]bool{true, false} {
		t.Fatalf("told %v, want once: rejected, not failed", got)
	}

	var b answers
	w2 := &Wait{}
	w2.Reset(&b)
	if out, _ := v.Publish(&r, pubMsg(t, "", "d", amqp.Properties{DeliveryMode: 2}), w2); !out.Pending {
		t.Fatal("persistent publish not pending")
	}
	log.complete(errors.New("disk gone"))
	if got := b.told(); len(got) != 0 {
		t.Fatal("answered before the owner released it")
	}
	w2.Release()
	if got := b.told(); len(got) != 1 || got[0] != [2]bool{false, true} {
		t.Fatalf("told %v, want once: failed", got)
	}
}

// A deduplicating exchange drops a key it let through before: Duplicate, and no queue.
func TestPublish_Duplicate(t *testing.T) {
	v, q := dedupVHost(t, 10, newTestLog())
	var r Router
	m := func() *message.Message { return pubMsg(t, "x", "k", amqp.Properties{MessageID: "id-1"}) }
	if out, _ := v.Publish(&r, m(), nil); out.Duplicate || !out.Queued {
		t.Fatalf("first: %+v", out)
	}
	if out, _ := v.Publish(&r, m(), nil); !out.Duplicate || out.Routed || out.Queued {
		t.Fatalf("second: %+v", out)
	}
	if n := ready(q); n != 1 {
		t.Fatalf("queue holds %d", n)
	}
}
