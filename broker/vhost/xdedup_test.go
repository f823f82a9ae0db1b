package vhost

import (
	"sort"
	"sync"
	"testing"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
	"github.com/warrenmq/warren/broker/queue"
)

// testLog is an in-memory queue.Log.
type testLog struct {
	mu      sync.Mutex
	next    uint64
	data    map[uint64][]byte
	retired map[uint64]bool
}

func newTestLog() *testLog { return &testLog{data: map[uint64][]byte{}, retired: map[uint64]bool{}} }

func (l *testLog) Append(p []byte, done func(uint64, error)) uint64 {
	l.mu.Lock()
	l.next++
	off := l.next
	l.data[off] = append([]byte(nil), p...)
	l.mu.Unlock()
	if done != nil {
		done(off, nil)
	}
	return off
}

func (l *testLog) Retire(offs ...uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range offs {
		l.retired[o] = true
	}
}

func (l *testLog) MarkDelivered(...uint64) {}

func (l *testLog) live() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint64
	for o := range l.data {
		if !l.retired[o] {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// dedupVHost returns a vhost with exchange "x" (deduplicating, window of size) routing to a
// durable queue "q" that writes to log.
func dedupVHost(t *testing.T, size int32, log *testLog) (*VHost, *queue.Queue) {
	t.Helper()
	v := New("/", nil)
	if _, err := v.DeclareExchange(ExchangeDecl{Name: "x", Type: "direct", Durable: true, Args: amqp.Table{"x-message-deduplication": true, "x-cache-size": size}}); err != nil {
		t.Fatal(err)
	}
	q, _, err := v.declareQueue(QueueDecl{Name: "q", Durable: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("q", "x", "k", nil, nil); err != nil {
		t.Fatal(err)
	}
	q.SetLog(log)
	return v, q
}

// publishID routes a persistent message with message-id id through x; it reports whether the
// exchange dropped it as a duplicate.
func publishID(t *testing.T, v *VHost, id string) bool {
	t.Helper()
	m, err := message.New("x", "k", (&amqp.Properties{DeliveryMode: 2, MessageID: id}).AppendTo(nil), []byte(id))
	if err != nil {
		t.Fatal(err)
	}
	var r Router
	out, err := v.Publish(&r, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out.Duplicate
}

// An acked message's key is written to the queue's log while it is in the exchange's window;
// that record is retired when the window lets the key go, and when the exchange is deleted.
func TestXDedup_KeyRecordsFollowTheWindow(t *testing.T) {
	log := newTestLog()
	v, q := dedupVHost(t, 2, log)
	if publishID(t, v, "a") || !publishID(t, v, "a") {
		t.Fatal("the second 'a' should be a duplicate, the first not")
	}
	e, _, ok := q.Get()
	if !ok {
		t.Fatal("no message")
	}
	q.Ack([]queue.Entry{e})
	live := log.live()
	if len(live) != 1 || log.data[live[0]][0] != 4 {
		t.Fatalf("live records %v: want one exchange key record (kind 4)", live)
	}
	if !publishID(t, v, "a") {
		t.Fatal("'a' was acked but is still in the window: a duplicate")
	}
	publishID(t, v, "b")
	publishID(t, v, "c") // the window (size 2) lets 'a' go: its key record is retired
	for _, o := range log.live() {
		if log.data[o][0] == 4 {
			t.Fatalf("key record %d still live after its key left the window", o)
		}
	}
	if n, ok := v.ExchangeDuplicates("x"); !ok || n != 2 {
		t.Fatalf("duplicates %d (deduplicating %v), want 2", n, ok)
	}

	// Ack 'b' (its key record is written), then delete the exchange: the record goes.
	e, _, _ = q.Get()
	q.Ack([]queue.Entry{e})
	keyRecs := 0
	for _, o := range log.live() {
		if log.data[o][0] == 4 {
			keyRecs++
		}
	}
	if keyRecs != 1 {
		t.Fatalf("%d key records live, want 1", keyRecs)
	}
	if err := v.DeleteExchange("x", false); err != nil {
		t.Fatal(err)
	}
	for _, o := range log.live() {
		if log.data[o][0] == 4 {
			t.Fatal("key record live after its exchange was deleted")
		}
	}
	if _, ok := v.ExchangeDuplicates("x"); ok {
		t.Fatal("deleted exchange still has a window")
	}
}

// At startup, keys come back from the queue's log (message records and key records) once
// every definition is back; key records of an exchange that no longer deduplicates are retired.
func TestXDedup_RestoreFromQueueLog(t *testing.T) {
	log := newTestLog()
	v, q := dedupVHost(t, 100, log)
	publishID(t, v, "kept")
	publishID(t, v, "acked")
	e, _, _ := q.Get() // "kept"
	e2, _, _ := q.Get()
	q.Ack([]queue.Entry{e2})
	q.Requeue([]queue.Entry{e})

	replay := func(v2 *VHost) *queue.Queue {
		q2, _, err := v2.declareQueue(QueueDecl{Name: "q2", Durable: true}, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range log.live() {
			if err := q2.RestoreRecord(o, log.data[o], false); err != nil {
				t.Fatal(err)
			}
		}
		q2.SetLog(log)
		v2.FinishRestore()
		return q2
	}
	// The exchange is declared after the queue's records are read, as a definitions log may have it.
	v2 := New("/", nil)
	q2, _, _ := v2.declareQueue(QueueDecl{Name: "q2", Durable: true}, false)
	for _, o := range log.live() {
		if err := q2.RestoreRecord(o, log.data[o], false); err != nil {
			t.Fatal(err)
		}
	}
	q2.SetLog(log)
	if _, err := v2.DeclareExchange(ExchangeDecl{Name: "x", Type: "direct", Durable: true, Args: amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(100)}}); err != nil {
		t.Fatal(err)
	}
	if err := v2.BindQueue("q2", "x", "k", nil, nil); err != nil {
		t.Fatal(err)
	}
	v2.FinishRestore()
	for _, id := range []string{"kept", "acked"} {
		if !publishID(t, v2, id) {
			t.Fatalf("%q is not a duplicate after the restart", id)
		}
	}
	if publishID(t, v2, "new") {
		t.Fatal("a new key was dropped")
	}

	// Without the deduplicating exchange, the key record is retired at startup.
	v3 := New("/", nil)
	replay(v3)
	for _, o := range log.live() {
		if log.data[o][0] == 4 {
			t.Fatal("a key record no exchange wants stayed live")
		}
	}
}

func TestXDedup_Args(t *testing.T) {
	for _, c := range []struct {
		args amqp.Table
		on   bool
		err  bool
	}{
		{amqp.Table{}, false, false},
		{amqp.Table{"x-message-deduplication": false}, false, false},
		{amqp.Table{"x-message-deduplication": true, "x-cache-size": int64(5), "x-cache-ttl": int32(100), "x-deduplication-header": "h"}, true, false},
		{amqp.Table{"x-message-deduplication": "true"}, false, true},
		{amqp.Table{"x-message-deduplication": true, "x-cache-size": int64(-1)}, false, true},
		{amqp.Table{"x-message-deduplication": true, "x-cache-ttl": "1s"}, false, true},
		{amqp.Table{"x-message-deduplication": true, "x-deduplication-header": int32(1)}, false, true},
	} {
		w, err := dedupArgs(c.args, "x", "/")
		if (err != nil) != c.err || (w != nil) != c.on {
			t.Errorf("%v: window %v err %v", c.args, w != nil, err)
		}
		if err != nil {
			if ae, ok := err.(*amqp.Error); !ok || ae.Code != amqp.PreconditionFailed {
				t.Errorf("%v: error %v, want 406", c.args, err)
			}
		}
	}
}
