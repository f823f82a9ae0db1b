package queue

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

func streamArgs(extra ...any) amqp.Table {
	t := amqp.Table{"x-queue-type": "stream"}
	for i := 0; i+1 < len(extra); i += 2 {
		t[extra[i].(string)] = extra[i+1]
	}
	return t
}

// testClock is a settable clock for SetClock.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time      { return c.t }
func (c *testClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTestClock() *testClock           { return &testClock{t: time.Unix(1_700_000_000, 0)} }
func consumeArgs(offset any) StreamConsume {
	return StreamConsume{Args: amqp.Table{"x-stream-offset": offset}, Prefetch: 100}
}
func defaultConsume() StreamConsume          { return StreamConsume{Prefetch: 100} }
func publishN(t *testing.T, q *Queue, n int) { publishRange(t, q, 0, n) }

func publishRange(t *testing.T, q *Queue, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if st := q.Publish(msg(t, fmt.Sprint(i), false), nil); st != PubQueued && st != PubPending {
			t.Fatalf("publish %d: status %d", i, st)
		}
	}
}

// offsets returns the x-stream-offset header of each delivery, checking it matches Entry.Offset.
func offsets(t *testing.T, es []Entry) []int64 {
	t.Helper()
	var out []int64
	for _, e := range es {
		p, err := amqp.DecodeProperties(e.Msg.RawProps)
		if err != nil {
			t.Fatal(err)
		}
		off, ok := p.Headers["x-stream-offset"].(int64)
		if !ok {
			t.Fatalf("delivery %q without a long x-stream-offset header: %#v", e.Msg.Body, p.Headers)
		}
		if uint64(off) != e.Offset {
			t.Fatalf("header offset %d, entry offset %d", off, e.Offset)
		}
		if string(e.Msg.Body) != fmt.Sprint(off) {
			t.Fatalf("offset %d carries body %q", off, e.Msg.Body)
		}
		if e.LogOffset != 0 {
			t.Fatal("stream delivery with a LogOffset: an ack would retire it")
		}
		out = append(out, off)
	}
	return out
}

func span(from, to int64) []int64 {
	var out []int64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func sameOffsets(got, want []int64) bool { return fmt.Sprint(got) == fmt.Sprint(want) }

func TestStream_OffsetsFromZeroAndMessagesStayAfterAck(t *testing.T) {
	q := New("s", Options{Durable: true, Args: streamArgs()})
	if !q.IsStream() {
		t.Fatal("not a stream")
	}
	publishN(t, q, 10)
	a := &fakeConsumer{tag: "a", credit: -1}
	if err := q.AddStreamConsumer(a, consumeArgs("first"), nil); err != nil {
		t.Fatal(err)
	}
	if got := offsets(t, a.got); !sameOffsets(got, span(0, 10)) {
		t.Fatalf("first consumer got %v", got)
	}
	q.Ack(a.got)
	// acked messages stay: a second consumer reads them all again
	b := &fakeConsumer{tag: "b", credit: -1}
	if err := q.AddStreamConsumer(b, consumeArgs("first"), nil); err != nil {
		t.Fatal(err)
	}
	if got := offsets(t, b.got); !sameOffsets(got, span(0, 10)) {
		t.Fatalf("second consumer got %v", got)
	}
	// new messages go to both
	publishRange(t, q, 10, 12)
	if got := offsets(t, a.got[10:]); !sameOffsets(got, span(10, 12)) {
		t.Fatalf("a got %v after publishing", got)
	}
	if got := offsets(t, b.got[10:]); !sameOffsets(got, span(10, 12)) {
		t.Fatalf("b got %v after publishing", got)
	}
	if first, next, _ := q.StreamBounds(); first != 0 || next != 12 {
		t.Fatalf("bounds %d..%d", first, next)
	}
	if ready, unacked, consumers := q.Counts(); ready != 0 || unacked != 14 || consumers != 2 {
		t.Fatalf("counts ready=%d unacked=%d consumers=%d", ready, unacked, consumers)
	}
}

func TestStream_CreditAndRequeue(t *testing.T) {
	q := New("s", Options{Durable: true, Args: streamArgs()})
	publishN(t, q, 5)
	c := &fakeConsumer{tag: "c", credit: 2}
	if err := q.AddStreamConsumer(c, consumeArgs("first"), nil); err != nil {
		t.Fatal(err)
	}
	if got := offsets(t, c.got); !sameOffsets(got, span(0, 2)) {
		t.Fatalf("with credit 2 got %v", got)
	}
	// a requeue (channel closed, basic.recover) returns credit and delivers nothing again
	c.credit = 1
	q.Requeue(c.got[:1])
	if got := offsets(t, c.got); !sameOffsets(got, span(0, 3)) {
		t.Fatalf("after requeue got %v", got)
	}
	c.credit = 5
	q.Ack(c.got[1:3]) // an ack releases credit and dispatches
	if got := offsets(t, c.got); !sameOffsets(got, span(0, 5)) {
		t.Fatalf("after ack got %v", got)
	}
	if _, unacked, _ := q.Counts(); unacked != 2 {
		t.Fatalf("unacked %d, want 2", unacked)
	}
}

func TestStream_OffsetSpecs(t *testing.T) {
	clock := newTestClock()
	q := New("s", Options{Durable: true, Args: streamArgs()})
	q.SetClock(clock.now)
	start := clock.t
	for i := range 10 { // one message a minute: offset i at start + i minutes
		publishRange(t, q, i, i+1)
		clock.add(time.Minute)
	}
	// now = start + 10m
	cases := []struct {
		name   string
		sc     StreamConsume
		before []int64 // delivered at once
	}{
		{"default is next", defaultConsume(), nil},
		{"next", consumeArgs("next"), nil},
		{"first", consumeArgs("first"), span(0, 10)},
		{"last", consumeArgs("last"), span(9, 10)},
		{"offset", consumeArgs(int64(7)), span(7, 10)},
		{"offset int8", consumeArgs(int8(3)), span(3, 10)},
		{"offset uint32", consumeArgs(uint32(8)), span(8, 10)},
		{"negative offset is first", consumeArgs(int64(-1)), span(0, 10)},
		{"offset past the end waits", consumeArgs(int64(11)), nil},
		{"timestamp", consumeArgs(start.Add(4 * time.Minute)), span(4, 10)},
		{"timestamp between messages", consumeArgs(start.Add(4*time.Minute + time.Second)), span(5, 10)},
		{"timestamp before all", consumeArgs(start.Add(-time.Hour)), span(0, 10)},
		{"timestamp in the future", consumeArgs(start.Add(time.Hour)), nil},
		{"interval", consumeArgs("3m"), span(7, 10)},
		{"interval covering all", consumeArgs("1h"), span(0, 10)},
		{"interval in days", consumeArgs("7D"), span(0, 10)},
		{"interval shorter than the last message", consumeArgs("30s"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeConsumer{tag: tc.name, credit: -1}
			if err := q.AddStreamConsumer(c, tc.sc, nil); err != nil {
				t.Fatal(err)
			}
			defer q.RemoveConsumer(c)
			if got := offsets(t, c.got); !sameOffsets(got, tc.before) {
				t.Fatalf("got %v, want %v", got, tc.before)
			}
		})
	}
	// every consumer waits for new messages; the one at 11 skips offset 10
	ten := &fakeConsumer{tag: "at10", credit: -1}
	eleven := &fakeConsumer{tag: "at11", credit: -1}
	q.AddStreamConsumer(ten, consumeArgs("next"), nil)
	q.AddStreamConsumer(eleven, consumeArgs(int64(11)), nil)
	publishRange(t, q, 10, 12)
	if got := offsets(t, ten.got); !sameOffsets(got, span(10, 12)) {
		t.Fatalf("next consumer got %v", got)
	}
	if got := offsets(t, eleven.got); !sameOffsets(got, span(11, 12)) {
		t.Fatalf("consumer at 11 got %v", got)
	}
	// "last" on an empty stream waits for the first message
	e := New("empty", Options{Durable: true, Args: streamArgs()})
	c := &fakeConsumer{tag: "c", credit: -1}
	e.AddStreamConsumer(c, consumeArgs("last"), nil)
	publishN(t, e, 1)
	if got := offsets(t, c.got); !sameOffsets(got, span(0, 1)) {
		t.Fatalf("last on empty stream got %v", got)
	}
}

func TestStream_HeadersKeepPublishedOnes(t *testing.T) {
	q := New("s", Options{Durable: true, Args: streamArgs()})
	p := amqp.Properties{Headers: amqp.Table{"app": "x", "x-stream-offset": "spoofed"}, ContentType: "text/plain"}
	m, err := message.New("", "s", p.AppendTo(nil), []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	q.Publish(m, nil)
	c := &fakeConsumer{tag: "c", credit: -1}
	q.AddStreamConsumer(c, consumeArgs("first"), nil)
	got, _ := amqp.DecodeProperties(c.got[0].Msg.RawProps)
	if got.Headers["app"] != "x" || got.Headers["x-stream-offset"] != int64(0) || got.ContentType != "text/plain" {
		t.Fatalf("delivered properties %+v", got)
	}
	if orig, _ := amqp.DecodeProperties(m.RawProps); orig.Headers["x-stream-offset"] != "spoofed" {
		t.Fatal("the stored message was changed")
	}
}

func TestStream_RetentionByBytesDropsWholeSegments(t *testing.T) {
	l := newMemLog()
	// records are about 20 bytes: several per 130-byte segment, about 200 bytes kept
	q := New("s", Options{Durable: true, Args: streamArgs("x-max-length-bytes", int64(200), "x-stream-max-segment-size-bytes", int64(130))})
	q.SetLog(l)
	slow := &fakeConsumer{tag: "slow", credit: 0}
	q.AddStreamConsumer(slow, consumeArgs("first"), nil)
	publishN(t, q, 60)
	first, next, bytes := q.StreamBounds()
	q.mu.Lock()
	segs := append([]streamSeg(nil), q.stream.segs...)
	q.mu.Unlock()
	if next != 60 || first == 0 || segs[0].first != first {
		t.Fatalf("bounds %d..%d, segments %v: want whole segments dropped", first, next, segs)
	}
	if len(segs) > 1 && bytes > 200 {
		t.Fatalf("%d bytes in %d segments kept for x-max-length-bytes 200", bytes, len(segs))
	}
	if bytes < 200-130-40 {
		t.Fatalf("only %d bytes kept for x-max-length-bytes 200: dropped too much", bytes)
	}
	var retired []uint64
	for off := range l.retired {
		retired = append(retired, off)
	}
	sort.Slice(retired, func(i, j int) bool { return retired[i] < retired[j] })
	if uint64(len(retired)) != first || retired[len(retired)-1] != first {
		t.Fatalf("retired log offsets %v for %d dropped messages", retired, first)
	}
	// a consumer behind the retention point continues from the first message kept
	slow.credit = -1
	q.Kick()
	if got := offsets(t, slow.got); !sameOffsets(got, span(int64(first), 60)) {
		t.Fatalf("slow consumer got %v, first kept %d", got, first)
	}
	// the current segment is never dropped, even with x-max-length-bytes 0
	z := New("z", Options{Durable: true, Args: streamArgs("x-max-length-bytes", int64(0), "x-stream-max-segment-size-bytes", int64(0))})
	publishN(t, z, 10)
	if first, next, _ := z.StreamBounds(); first != 9 || next != 10 {
		t.Fatalf("x-max-length-bytes 0 keeps %d..%d, want the last segment (9..10)", first, next)
	}
}

func TestStream_DefaultSegmentKeepsEverythingUnderIt(t *testing.T) {
	// As RabbitMQ: retention works by segment, and the default segment is 500 MB.
	q := New("s", Options{Durable: true, Args: streamArgs("x-max-length-bytes", int64(100))})
	publishN(t, q, 50)
	if first, next, _ := q.StreamBounds(); first != 0 || next != 50 {
		t.Fatalf("bounds %d..%d", first, next)
	}
}

func TestStream_RetentionByAge(t *testing.T) {
	clock := newTestClock()
	l := newMemLog()
	q := New("s", Options{Durable: true, Args: streamArgs("x-max-age", "1h", "x-stream-max-segment-size-bytes", int64(0))})
	q.SetClock(clock.now)
	q.SetLog(l)
	for i := range 6 { // offsets 0..5, 20 minutes apart
		publishRange(t, q, i, i+1)
		clock.add(20 * time.Minute)
	}
	// now = start+2h: the appends dropped 0 and 1 (older than an hour when 4 and 5 came)
	first, next, _ := q.StreamBounds()
	if first != 2 || next != 6 {
		t.Fatalf("bounds %d..%d, want 2..6", first, next)
	}
	clock.add(5 * time.Hour)
	publishRange(t, q, 6, 7) // everything else is older than an hour now; the current segment stays
	if first, next, _ := q.StreamBounds(); first != 6 || next != 7 {
		t.Fatalf("bounds %d..%d, want 6..7", first, next)
	}
	if len(l.retired) != 6 {
		t.Fatalf("%d records retired, want 6", len(l.retired))
	}
}

// replayStream feeds a new stream the live records of l, as recovery does.
func replayStream(t *testing.T, l *memLog, args amqp.Table) *Queue {
	t.Helper()
	return replay(t, l, args, time.Now)
}

func TestStream_RestartKeepsOffsetsAfterRetention(t *testing.T) {
	l := newMemLog()
	args := streamArgs("x-max-length-bytes", int64(200), "x-stream-max-segment-size-bytes", int64(130))
	q := New("s", Options{Durable: true, Args: args})
	q.SetLog(l)
	durable := 0
	for i := range 20 {
		// persistent or not, every message is written and confirmed
		if q.Publish(msg(t, fmt.Sprint(i), i%2 == 0), CompletionFunc(func(PubStatus, error) { durable++ })) != PubPending {
			t.Fatalf("publish %d not pending on the log", i)
		}
	}
	for _, d := range l.dones {
		d()
	}
	if durable != 20 {
		t.Fatalf("%d confirmations, want 20", durable)
	}
	first, next, _ := q.StreamBounds()

	r := replayStream(t, l, args)
	if f, n, _ := r.StreamBounds(); f != first || n != next {
		t.Fatalf("restored bounds %d..%d, want %d..%d", f, n, first, next)
	}
	c := &fakeConsumer{tag: "c", credit: -1}
	r.AddStreamConsumer(c, consumeArgs("first"), nil)
	publishRange(t, r, 20, 21)
	if got := offsets(t, c.got); !sameOffsets(got, span(int64(first), 21)) {
		t.Fatalf("after restart got %v", got)
	}
}

func TestStream_EvictedMessagesAreReadFromTheLog(t *testing.T) {
	l := newMemLog()
	q := New("s", Options{Durable: true, Args: streamArgs()})
	q.SetLog(l)
	q.SetBudget(&Budget{MaxQueueBytes: 4000}) // about 10 messages in memory
	publishN(t, q, 100)
	q.mu.Lock()
	held := 0
	for _, r := range q.stream.recs {
		if r.msg != nil {
			held++
		}
	}
	q.mu.Unlock()
	if held == 0 || held > 20 {
		t.Fatalf("%d of 100 messages held in memory", held)
	}
	c := &fakeConsumer{tag: "c", credit: -1}
	q.AddStreamConsumer(c, consumeArgs("first"), nil)
	if got := offsets(t, c.got); !sameOffsets(got, span(0, 100)) {
		t.Fatalf("got %v", got)
	}
}

func TestStream_DeleteCancelsConsumersAndDropsPublishes(t *testing.T) {
	q := New("s", Options{Durable: true, Args: streamArgs()})
	c := &fakeConsumer{tag: "c", credit: -1}
	q.AddStreamConsumer(c, defaultConsume(), nil)
	publishN(t, q, 3)
	// RabbitMQ ignores if-unused and if-empty for streams, and reports 0 messages
	if n, err := q.Delete(true, true); err != nil || n != 0 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	if c.cancel != 1 {
		t.Fatalf("consumer cancelled %d times", c.cancel)
	}
	if st := q.Publish(msg(t, "x", false), nil); st != PubDropped {
		t.Fatalf("publish to deleted stream: %d", st)
	}
}

func TestStream_ConsumeChecks(t *testing.T) {
	q := New("s", Options{Durable: true, Args: streamArgs(), VHost: "/"})
	inval := func(s string) string {
		return `PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 's' in vhost '/': {invalid_stream_offset_arg,{longstr,<<"` + s + `">>}}`
	}
	cases := []struct {
		name string
		sc   StreamConsume
		code amqp.ReplyCode
		text string
	}{
		{"no prefetch", StreamConsume{}, amqp.PreconditionFailed, "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's' in vhost '/''"},
		{"no prefetch and no-ack", StreamConsume{NoAck: true}, amqp.PreconditionFailed, "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's' in vhost '/''"},
		{"no-ack", StreamConsume{Prefetch: 1, NoAck: true}, amqp.NotImplemented, "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue 's' in vhost '/'"},
		{"global qos", StreamConsume{Prefetch: 1, GlobalQos: true}, amqp.NotImplemented, "NOT_IMPLEMENTED - queue 's' in vhost '/' does not support global qos"},
		{"x-priority", StreamConsume{Prefetch: 1, Args: amqp.Table{"x-priority": int32(1)}}, amqp.PreconditionFailed, "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 's' in vhost '/' of queue type rabbit_stream_queue"},
		{"offset before x-priority", StreamConsume{Args: amqp.Table{"x-priority": int32(1), "x-stream-offset": "10"}}, amqp.PreconditionFailed, inval("10")},
		{"age without unit", StreamConsume{Prefetch: 1, Args: amqp.Table{"x-stream-offset": "10"}}, amqp.PreconditionFailed, inval("10")},
		{"zero age", StreamConsume{Prefetch: 1, Args: amqp.Table{"x-stream-offset": "0s"}}, amqp.PreconditionFailed, inval("0s")},
		{"unknown unit", StreamConsume{Prefetch: 1, Args: amqp.Table{"x-stream-offset": "1x"}}, amqp.PreconditionFailed, inval("1x")},
		{"word", StreamConsume{Prefetch: 1, Args: amqp.Table{"x-stream-offset": "FIRST"}}, amqp.InternalError, "INTERNAL_ERROR"},
		{"empty", StreamConsume{Prefetch: 1, Args: amqp.Table{"x-stream-offset": ""}}, amqp.InternalError, "INTERNAL_ERROR"},
		{"double", StreamConsume{Prefetch: 1, Args: amqp.Table{"x-stream-offset": 1.5}}, amqp.InternalError, "INTERNAL_ERROR"},
		{"bool", StreamConsume{Prefetch: 1, Args: amqp.Table{"x-stream-offset": true}}, amqp.InternalError, "INTERNAL_ERROR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeConsumer{tag: "c", credit: -1}
			err := q.AddStreamConsumer(c, tc.sc, nil)
			var ae *amqp.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v, want %d %q", err, tc.code, tc.text)
			}
			if ae.Code != tc.code || ae.Text != tc.text {
				t.Fatalf("error %d %q, want %d %q", ae.Code, ae.Text, tc.code, tc.text)
			}
			if hard := tc.code != amqp.PreconditionFailed; hard != (ae.Scope == amqp.ScopeConnection) {
				t.Fatalf("scope %d for code %d", ae.Scope, ae.Code)
			}
		})
	}
	if _, _, n := q.Counts(); n != 0 {
		t.Fatalf("%d consumers attached by refused consumes", n)
	}
	// exclusive use does not apply to streams
	a, b := &fakeConsumer{tag: "a"}, &fakeConsumer{tag: "b"}
	if err := q.AddStreamConsumer(a, defaultConsume(), nil); err != nil {
		t.Fatal(err)
	}
	if err := q.AddStreamConsumer(b, defaultConsume(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestStream_DeclareChecks(t *testing.T) {
	type decl struct {
		name                        string
		serverNamed                 bool
		durable, exclusive, autoDel bool
		args                        amqp.Table
	}
	s := func(extra ...any) decl { return decl{name: "s", durable: true, args: streamArgs(extra...)} }
	invalid := func(arg, reason string) string {
		return "PRECONDITION_FAILED - invalid arg '" + arg + "' for queue 's' in vhost '/': " + reason
	}
	ofType := func(arg, qtype string) string {
		return "PRECONDITION_FAILED - invalid arg '" + arg + "' for queue 's' in vhost '/' of queue type " + qtype
	}
	cases := []struct {
		d    decl
		text string // "" accepted; "INTERNAL_ERROR" is 541
	}{
		{s(), ""},
		{s("x-max-age", "7D", "x-max-length-bytes", int64(1000), "x-stream-max-segment-size-bytes", int32(100)), ""},
		{s("x-max-age", "01h"), ""},
		{s("x-max-age", "1Y"), ""},
		{s("x-max-age", "99999999999999999999h"), ""},
		{s("x-foo", "bar", "x-message-deduplication", true, "x-initial-cluster-size", int32(3), "x-queue-leader-locator", "balanced"), ""},
		{s("x-max-age", "10"), invalid("x-max-age", "invalid_max_age")},
		{s("x-max-age", "0s"), invalid("x-max-age", "invalid_max_age")},
		{s("x-max-age", "1.5h"), invalid("x-max-age", "invalid_max_age")},
		{s("x-max-age", "1d"), invalid("x-max-age", "invalid_max_age")},
		{s("x-max-age", "foo"), "INTERNAL_ERROR"},
		{s("x-max-age", "-1h"), "INTERNAL_ERROR"},
		{s("x-max-age", int32(10)), invalid("x-max-age", "{unacceptable_type,signedint}")},
		{s("x-max-age", int64(10)), invalid("x-max-age", "{unacceptable_type,long}")},
		{s("x-max-length-bytes", "1000"), invalid("x-max-length-bytes", `"expected integer, got longstr"`)},
		{s("x-max-length-bytes", int64(-1)), invalid("x-max-length-bytes", "{value_negative,-1}")},
		{s("x-stream-max-segment-size-bytes", true), invalid("x-stream-max-segment-size-bytes", `"expected integer, got bool"`)},
		{s("x-initial-cluster-size", int32(0)), invalid("x-initial-cluster-size", "{value_zero,0}")},
		{s("x-queue-leader-locator", "foo"), invalid("x-queue-leader-locator", "invalid_queue_locator_arg")},
		{s("x-max-length", int32(4)), ofType("x-max-length", "rabbit_stream_queue")},
		{s("x-max-length", "x"), ofType("x-max-length", "rabbit_stream_queue")},
		{s("x-message-ttl", int32(5), "x-expires", int32(5)), ofType("x-expires", "rabbit_stream_queue")},
		{s("x-max-age", "10", "x-max-length", int32(4)), invalid("x-max-age", "invalid_max_age")},
		{decl{name: "s", durable: false, args: streamArgs("x-max-length", int32(4))}, ofType("x-max-length", "rabbit_stream_queue")},
		{decl{name: "s", durable: false, args: streamArgs()}, "PRECONDITION_FAILED - invalid property 'non-durable' for queue 's' in vhost '/'"},
		{decl{name: "s", durable: false, exclusive: true, args: streamArgs()}, "PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 's' in vhost '/'"},
		{decl{name: "s", exclusive: true, autoDel: true, args: streamArgs()}, "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 's' in vhost '/'"},
		{decl{name: "s", serverNamed: true, durable: true, args: streamArgs("x-max-age", "foo")}, "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue"},
		{decl{name: "s", args: amqp.Table{"x-max-age": "1h"}}, ofType("x-max-age", "rabbit_classic_queue")},
		{decl{name: "s", durable: true, args: amqp.Table{"x-queue-type": "quorum", "x-stream-max-segment-size-bytes": int32(1)}}, ofType("x-stream-max-segment-size-bytes", "rabbit_quorum_queue")},
		{decl{name: "s", args: amqp.Table{"x-queue-type": "bogus", "x-max-age": "1h"}}, ""}, // the generic check refuses the type
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.d.args, tc.d.durable, tc.d.exclusive, tc.d.autoDel), func(t *testing.T) {
			d := tc.d
			err := CheckTypeDeclare(d.name, "/", d.serverNamed, d.durable, d.exclusive, d.autoDel, d.args)
			if tc.text == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ae *amqp.Error
			if !errors.As(err, &ae) || ae.Text != tc.text {
				t.Fatalf("error %v, want %q", err, tc.text)
			}
			if strings.HasPrefix(tc.text, "INTERNAL_ERROR") != (ae.Code == amqp.InternalError && ae.Scope == amqp.ScopeConnection) {
				t.Fatalf("code %d scope %d", ae.Code, ae.Scope)
			}
		})
	}
}

func TestStream_RecordRoundTrip(t *testing.T) {
	m := msg(t, "body", true)
	b := appendStreamRecord(nil, 1<<40, 1_700_000_000_123, m)
	off, ts, got, err := decodeStreamRecord(b)
	if err != nil || off != 1<<40 || ts != 1_700_000_000_123 || string(got.Body) != "body" || !got.Persistent() {
		t.Fatalf("decoded %d %d %v %v", off, ts, got, err)
	}
	for i := range b[:len(b)-len(m.Body)] {
		if _, _, _, err := decodeStreamRecord(b[:i]); err == nil {
			t.Fatalf("truncated record of %d bytes decoded", i)
		}
	}
	if _, _, _, err := decodeStreamRecord(AppendLogRecord(nil, m, 0)); err == nil {
		t.Fatal("a classic record decoded as a stream record")
	}
}

func BenchmarkStream_Deliver(b *testing.B) {
	for _, headers := range []bool{false, true} {
		b.Run(fmt.Sprintf("headers=%v", headers), func(b *testing.B) {
			q := New("s", Options{Durable: true, Args: streamArgs()})
			p := amqp.Properties{DeliveryMode: 2, ContentType: "application/json"}
			if headers {
				p.Headers = amqp.Table{"trace-id": "0123456789abcdef", "attempt": int32(1)}
			}
			m, err := message.New("", "s", p.AppendTo(nil), make([]byte, 256))
			if err != nil {
				b.Fatal(err)
			}
			q.Publish(m, nil)
			c := &fakeConsumer{tag: "c"}
			q.AddStreamConsumer(c, consumeArgs("first"), nil)
			b.ReportAllocs()
			b.SetBytes(256)
			for b.Loop() {
				q.mu.Lock()
				if _, ok := q.streamEntryLocked(0); !ok {
					b.Fatal("not delivered")
				}
				q.mu.Unlock()
			}
		})
	}
}

// Messages read back from the log are kept only while a consumer is about to reach them: a
// consumer without credit holds one read batch in memory while another reads the whole
// backlog, and each still gets every message in order.
func TestStream_ReadBackKeepsOnlyWhatConsumersNeed(t *testing.T) {
	l := newMemLog()
	q := New("s", Options{Durable: true, Args: streamArgs()})
	q.SetLog(l)
	q.SetBudget(&Budget{MaxQueueBytes: 4000}) // about 10 messages in memory
	publishN(t, q, 1000)
	waiting := &fakeConsumer{tag: "waiting", credit: 0}
	reading := &fakeConsumer{tag: "reading", credit: -1}
	q.AddStreamConsumer(waiting, consumeArgs("first"), nil)
	q.AddStreamConsumer(reading, consumeArgs("first"), nil)
	if got := offsets(t, reading.got); !sameOffsets(got, span(0, 1000)) {
		t.Fatalf("reading consumer got %v", got)
	}
	q.mu.Lock()
	held := len(q.stream.loaded)
	waiting.credit = -1
	q.mu.Unlock()
	if held > 2*streamReadBatch {
		t.Fatalf("%d read-back messages held, want at most %d", held, 2*streamReadBatch)
	}
	q.Kick()
	if got := offsets(t, waiting.got); !sameOffsets(got, span(0, 1000)) {
		t.Fatalf("waiting consumer got %v", got)
	}
}
