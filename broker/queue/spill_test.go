package queue

import (
	"errors"
	"fmt"
	"testing"

	"github.com/warrenmq/warren/broker/message"
)

// badSpill is a spill whose records can be damaged (read as garbage or fail to read) and
// that can start refusing appends.
type badSpill struct {
	*memLog
	garbage    map[uint64]bool // read back as bytes that do not decode
	unreadable map[uint64]bool // read fails
	failAfter  int             // appends refused (offset 0) after this many (0: never)
	appended   int
}

func (s *badSpill) Append(p []byte, done func(uint64, error)) uint64 {
	if s.failAfter > 0 && s.appended >= s.failAfter {
		return 0
	}
	s.appended++
	return s.memLog.Append(p, done)
}

func (s *badSpill) Read(off uint64) ([]byte, error) {
	switch {
	case s.unreadable[off]:
		return nil, errors.New("disk says no")
	case s.garbage[off]:
		return []byte{0xff, 0xff, 0xff}, nil
	}
	return s.memLog.Read(off)
}

// spilledQueue returns a durable queue over a small memory budget whose spill is sp, with n
// messages published (even ones persistent), and the spill errors it reports.
func spilledQueue(t *testing.T, sp *badSpill, n int) (*Queue, *memLog, *Budget, *[]*SpillError) {
	t.Helper()
	durable := newMemLog()
	b := &Budget{MaxQueueBytes: 16 << 10}
	q := New("q", Options{Durable: true})
	q.SetLog(durable)
	q.SetBudget(b)
	q.SetSpill(func() (Spill, error) { return sp, nil })
	var reports []*SpillError
	q.OnSpillError = func(_ *Queue, err *SpillError) { reports = append(reports, err) }
	for i := range n {
		q.Publish(msg(t, fmt.Sprintf("m%05d", i), i%2 == 0), nil)
	}
	return q, durable, b, &reports
}

// Spilled records that cannot be read back (a transient one that does not decode, a
// persistent one that cannot be read) are counted and reported, the persistent loss flagged
// (the queue's log still has that message); every other message comes back in order, and the
// queue's byte and memory counts end at zero.
func TestQueue_SpillReadErrorsAreReportedAndCounted(t *testing.T) {
	sp := &badSpill{memLog: newMemLog(), garbage: map[uint64]bool{}, unreadable: map[uint64]bool{}}
	const n = 3000
	q, _, b, reports := spilledQueue(t, sp, n)
	if len(sp.data) < 100 {
		t.Fatalf("only %d messages spilled", len(sp.data))
	}
	// Damage a transient and a persistent record (offsets follow the queue's order).
	first := uint64(1)
	var bad []string
	for off := first; len(bad) < 2; off++ {
		e, err := decodeSpill(sp.data[off])
		if err != nil {
			t.Fatal(err)
		}
		persistent := e.LogOffset != 0
		if len(bad) == 0 && !persistent {
			sp.garbage[off] = true
			bad = append(bad, string(e.Msg.Body))
		} else if len(bad) == 1 && persistent && off > first+10 {
			sp.unreadable[off] = true
			bad = append(bad, string(e.Msg.Body))
		}
	}
	if in := q.Info(); in.Ready != n {
		t.Fatalf("ready %d, want %d", in.Ready, n)
	}
	c := &fakeConsumer{tag: "c", credit: -1, noAck: true}
	q.AddConsumer(c, false, nil)
	if len(c.got) != n-2 {
		t.Fatalf("consumer got %d, want %d", len(c.got), n-2)
	}
	j := 0
	for i := 0; i < n; i++ {
		want := fmt.Sprintf("m%05d", i)
		if want == bad[0] || want == bad[1] {
			continue
		}
		if got := string(c.got[j].Msg.Body); got != want {
			t.Fatalf("delivery %d is %q, want %q", j, got, want)
		}
		j++
	}
	lost, persistent := 0, false
	for _, r := range *reports {
		lost += r.Lost
		persistent = persistent || r.Persistent
		if r.Err == nil || r.Error() == "" {
			t.Fatalf("report without its error: %+v", r)
		}
	}
	if lost != 2 || !persistent {
		t.Fatalf("reported %d lost (persistent %v), want 2 with a persistent one: %v", lost, persistent, *reports)
	}
	in := q.Info()
	if in.Ready != 0 || in.ReadyBytes != 0 || in.PagedOut != 0 || in.PagedOutBytes != 0 || in.Memory != 0 || in.SpillLost != 2 {
		t.Fatalf("after draining: %+v", in)
	}
	if b.Used() != 0 {
		t.Fatalf("budget still counts %d bytes", b.Used())
	}
	if len(sp.retired) != len(sp.data) {
		t.Fatalf("spill retired %d of %d records", len(sp.retired), len(sp.data))
	}
}

// Purging a spill with an unreadable persistent record reports it (its copy in the log
// cannot be retired); the counts still end at zero.
func TestQueue_SpillPurgeReportsUnreadablePersistent(t *testing.T) {
	sp := &badSpill{memLog: newMemLog(), garbage: map[uint64]bool{}, unreadable: map[uint64]bool{}}
	const n = 2000
	q, durable, b, reports := spilledQueue(t, sp, n)
	for off := uint64(1); ; off++ {
		if e, _ := decodeSpill(sp.data[off]); e.LogOffset != 0 {
			sp.unreadable[off] = true
			break
		}
	}
	if got := q.Purge(); got != n {
		t.Fatalf("purged %d, want %d", got, n)
	}
	if len(*reports) != 1 || (*reports)[0].Lost != 1 || !(*reports)[0].Persistent {
		t.Fatalf("reports %+v, want one persistent loss", *reports)
	}
	if len(durable.retired) != n/2-1 {
		t.Fatalf("retired %d of the log's records, want %d", len(durable.retired), n/2-1)
	}
	if in := q.Info(); in.Ready != 0 || in.ReadyBytes != 0 || in.Memory != 0 || b.Used() != 0 {
		t.Fatalf("after purge: %+v, budget %d", in, b.Used())
	}
}

// A spill that stops taking records is reported; the messages that follow wait in memory
// behind those already spilled, so the order holds and nothing is lost.
func TestQueue_SpillAppendFailureKeepsOrder(t *testing.T) {
	sp := &badSpill{memLog: newMemLog(), failAfter: 200}
	const n = 3000
	q, _, b, reports := spilledQueue(t, sp, n)
	if len(*reports) != 1 || (*reports)[0].Lost != 0 {
		t.Fatalf("reports %+v, want one spill failure", *reports)
	}
	if in := q.Info(); in.Ready != n {
		t.Fatalf("ready %d, want %d", in.Ready, n)
	}
	c := &fakeConsumer{tag: "c", credit: -1, noAck: true}
	q.AddConsumer(c, false, nil)
	if len(c.got) != n {
		t.Fatalf("consumer got %d of %d", len(c.got), n)
	}
	for i, e := range c.got {
		if want := fmt.Sprintf("m%05d", i); string(e.Msg.Body) != want {
			t.Fatalf("delivery %d is %q, want %q", i, e.Msg.Body, want)
		}
	}
	if in := q.Info(); in.ReadyBytes != 0 || in.Memory != 0 || b.Used() != 0 {
		t.Fatalf("after draining: %+v, budget %d", in, b.Used())
	}
	// A purge of such a queue releases the waiting messages' memory exactly once.
	q2, _, b2, _ := spilledQueue(t, &badSpill{memLog: newMemLog(), failAfter: 200}, n)
	if got := q2.Purge(); got != n {
		t.Fatalf("purged %d, want %d", got, n)
	}
	if in := q2.Info(); in.Ready != 0 || in.ReadyBytes != 0 || in.Memory != 0 || b2.Used() != 0 {
		t.Fatalf("after purge: %+v, budget %d", in, b2.Used())
	}
}

// Queues count the large messages they let go of (Budget.LargeFreed), so the broker can
// return memory after them: settled deliveries, acks, drops and purges; small ones are not
// counted, and messages still held are not.
func TestQueue_CountsLargeMessagesLetGo(t *testing.T) {
	b := &Budget{MaxQueueBytes: 1 << 40}
	q := New("q", Options{Args: map[string]any{"x-max-length": int64(3)}})
	q.SetBudget(b)
	large := func() *message.Message {
		m, err := message.New("", "q", []byte{0, 0}, make([]byte, LargeMessage))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for range 4 { // the fourth drops the head (x-max-length 3)
		q.Publish(large(), nil)
	}
	q.Publish(msg(t, "small", false), nil) // drops another large one
	if got := b.TakeLargeFreed(); got != 2*LargeMessage {
		t.Fatalf("after two drops: %d freed, want %d", got, 2*LargeMessage)
	}
	e, _, _ := q.Get() // held until acked
	if got := b.LargeFreed(); got != 0 {
		t.Fatalf("a message held unacked counted as freed: %d", got)
	}
	q.Ack([]Entry{e})
	c := &fakeConsumer{tag: "c", credit: 1, noAck: true}
	q.AddConsumer(c, false, nil) // settles one on delivery
	if got := b.TakeLargeFreed(); got != 2*LargeMessage {
		t.Fatalf("after an ack and a settled delivery: %d freed, want %d", got, 2*LargeMessage)
	}
	q.Publish(large(), nil)
	q.Purge()
	if got := b.TakeLargeFreed(); got != LargeMessage {
		t.Fatalf("after a purge: %d freed, want %d", got, LargeMessage)
	}
}
