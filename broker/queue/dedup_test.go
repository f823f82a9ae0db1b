package queue

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

func keyed(t *testing.T, id string) *message.Message {
	t.Helper()
	m, err := message.New("", "q", (&amqp.Properties{DeliveryMode: 2, MessageID: id}).AppendTo(nil), []byte("body-"+id))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// replay feeds a new queue the live records of l, as recovery does.
func replay(t *testing.T, l *memLog, args amqp.Table, clock func() time.Time) *Queue {
	t.Helper()
	q := New("q", Options{Durable: true, Args: args})
	q.SetClock(clock)
	var offs []uint64
	for off := range l.data {
		if !l.retired[off] {
			offs = append(offs, off)
		}
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	for _, off := range offs {
		if err := q.RestoreRecord(off, l.data[off], l.delivered[off]); err != nil {
			t.Fatal(err)
		}
	}
	q.SetLog(l)
	return q
}

func TestDedup_DropsRepeatsAndKeepsWindowAcrossRestart(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	args := amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(100)}
	l := newMemLog()
	q := New("q", Options{Durable: true, Args: args})
	q.SetClock(clock)
	q.SetLog(l)
	for range 3 {
		for i := range 5 {
			if st := q.Publish(keyed(t, fmt.Sprint("id-", i)), nil); st != PubQueued {
				t.Fatalf("status %d", st)
			}
		}
	}
	if r, _, _ := q.Counts(); r != 5 || q.Duplicates() != 10 {
		t.Fatalf("ready %d duplicates %d, want 5 and 10", r, q.Duplicates())
	}
	// consume and ack two: their keys must survive as records of their own
	e0, _, _ := q.Get()
	e1, _, _ := q.Get()
	q.Ack([]Entry{e0, e1})

	q2 := replay(t, l, args, clock)
	if r, _, _ := q2.Counts(); r != 3 {
		t.Fatalf("after restart ready %d, want 3", r)
	}
	for i := range 5 {
		q2.Publish(keyed(t, fmt.Sprint("id-", i)), nil)
	}
	if r, _, _ := q2.Counts(); r != 3 || q2.Duplicates() != 5 {
		t.Fatalf("after restart: ready %d duplicates %d, want 3 and 5 (acked keys kept too)", r, q2.Duplicates())
	}
	q2.Publish(keyed(t, "new"), nil)
	if r, _, _ := q2.Counts(); r != 4 {
		t.Fatalf("a new key was dropped")
	}
}

func TestDedup_WindowBySizeAndAge(t *testing.T) {
	now := time.Unix(1000, 0)
	q := New("q", Options{Args: amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(2), "x-cache-ttl": int32(1000)}})
	q.SetClock(func() time.Time { return now })
	pub := func(id string) { q.Publish(keyed(t, id), nil) }
	pub("a")
	pub("b")
	pub("c") // evicts a (size 2)
	pub("a") // accepted again
	if r, _, _ := q.Counts(); r != 4 {
		t.Fatalf("ready %d, want 4", r)
	}
	pub("c")
	if q.Duplicates() != 1 {
		t.Fatalf("duplicates %d, want 1", q.Duplicates())
	}
	now = now.Add(2 * time.Second) // everything is older than the TTL
	pub("c")
	if q.Duplicates() != 1 {
		t.Fatal("an expired key still deduplicated")
	}
	// header-based keys
	h := New("h", Options{Args: amqp.Table{"x-message-deduplication": true, "x-deduplication-header": "x-id"}})
	mk := func(id string) *message.Message {
		m, _ := message.New("", "h", (&amqp.Properties{Headers: amqp.Table{"x-id": id}}).AppendTo(nil), nil)
		return m
	}
	h.Publish(mk("1"), nil)
	h.Publish(mk("1"), nil)
	h.Publish(mk("2"), nil)
	if r, _, _ := h.Counts(); r != 2 {
		t.Fatalf("header dedup: ready %d, want 2", r)
	}
}

// An exchange key record round-trips, and every truncation of it is refused as a bad record
// (a damaged log never panics the restore).
func TestXKeyRecord_RoundTripAndTruncation(t *testing.T) {
	rec := appendXKeyRecord(nil, "orders", "order-42", 1700000000123)
	x, k, seen, err := decodeXKeyRecord(rec)
	if err != nil || x != "orders" || k != "order-42" || seen != 1700000000123 {
		t.Fatalf("decoded %q %q %d %v", x, k, seen, err)
	}
	// Cut inside the varints or the exchange name: refused. (A cut inside the key only
	// shortens the key: the record's CRC in the wal catches that kind of damage.)
	nameEnd := len(rec) - len("order-42")
	for n := 0; n < nameEnd; n++ {
		if _, _, _, err := decodeXKeyRecord(rec[:n]); err == nil {
			t.Fatalf("a record cut to %d bytes decoded", n)
		}
	}
	q := New("q", Options{Durable: true})
	if err := q.RestoreRecord(1, rec[:3], false); err == nil {
		t.Fatal("RestoreRecord took a truncated exchange key record")
	}
}
