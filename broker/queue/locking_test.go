package queue

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// slowLog is a memLog whose Sync (waiting for the disk) blocks until gate is closed.
type slowLog struct {
	*memLog
	syncing chan struct{} // closed when a Sync starts
	gate    chan struct{}
}

func (l *slowLog) Sync() error {
	close(l.syncing)
	<-l.gate
	return nil
}

// A publish that waits for the queue's log (a publisher without confirms that has put
// logSyncBytes ahead of the disk) must not hold the queue's lock while it waits: consumers,
// acks, gets and other publishes of the same queue go on. The publisher itself still waits
// (backpressure).
func TestQueue_LogWaitOutsideLock(t *testing.T) {
	l := &slowLog{memLog: newMemLog(), syncing: make(chan struct{}), gate: make(chan struct{})}
	defer func() {
		select {
		case <-l.gate:
		default:
			close(l.gate)
		}
	}()
	q := New("q", Options{Durable: true})
	q.SetLog(l)
	q.Publish(msg(t, "before", true), nil)
	e, _, ok := q.Get() // delivered, waiting for its ack
	if !ok {
		t.Fatal("get: empty queue")
	}
	published := make(chan struct{})
	go func() {
		defer close(published)
		q.Publish(msg(t, strings.Repeat("x", logSyncBytes), true), nil) // crosses logSyncBytes: waits
	}()
	select {
	case <-l.syncing:
	case <-time.After(10 * time.Second):
		t.Fatal("the big publish never waited for the log")
	}
	done := make(chan struct{})
	c := &fakeConsumer{tag: "c", credit: 2}
	go func() {
		defer close(done)
		q.Ack([]Entry{e})
		q.Publish(msg(t, "during", false), nil)
		q.AddConsumer(c, false, nil)
		q.Counts()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ack, publish and consume on the queue blocked while a publisher waited for the disk")
	}
	if bodies(c.got) != strings.Repeat("x", logSyncBytes)+"during" {
		t.Fatalf("consumer got %d bytes, want the big message then \"during\"", len(bodies(c.got)))
	}
	select {
	case <-published:
		t.Fatal("the publisher did not wait for the log")
	default:
	}
	close(l.gate)
	select {
	case <-published:
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher still waits after the log caught up")
	}
}

// slowReadLog is a memLog whose first Read blocks until gate is closed, as a read of a wal.Log
// waits while the log's fsync holds its segment lock.
type slowReadLog struct {
	*memLog
	once    sync.Once
	reading chan struct{} // closed when the first Read starts
	gate    chan struct{}
}

func (l *slowReadLog) Read(off uint64) ([]byte, error) {
	l.once.Do(func() {
		close(l.reading)
		<-l.gate
	})
	return l.memLog.Read(off)
}

// A stream consumer that reaches messages evicted from memory reads them back from the log
// without holding the queue's lock: publishers (and everyone else) go on meanwhile.
func TestStream_LogReadOutsideLock(t *testing.T) {
	l := &slowReadLog{memLog: newMemLog(), reading: make(chan struct{}), gate: make(chan struct{})}
	defer func() {
		select {
		case <-l.gate:
		default:
			close(l.gate)
		}
	}()
	q := New("s", Options{Durable: true, Args: streamArgs()})
	q.SetLog(l)
	q.SetBudget(&Budget{MaxQueueBytes: 4000}) // about 10 messages in memory
	publishN(t, q, 100)
	c := &fakeConsumer{tag: "c", credit: -1}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		q.AddStreamConsumer(c, consumeArgs("first"), nil)
	}()
	select {
	case <-l.reading:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer never read the log")
	}
	published := make(chan struct{})
	go func() {
		defer close(published)
		q.Publish(msg(t, "100", false), nil)
		q.StreamBounds()
	}()
	select {
	case <-published:
	case <-time.After(10 * time.Second):
		t.Fatal("a publish to the stream blocked while a consumer read the log")
	}
	close(l.gate)
	select {
	case <-consumed:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer never finished")
	}
	q.Kick()
	q.mu.Lock()
	got := offsets(t, c.got)
	q.mu.Unlock()
	if !sameOffsets(got, span(0, 101)) {
		t.Fatalf("consumer got %v, want 0..100", got)
	}
}
