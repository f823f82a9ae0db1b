package clustertest

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// hist builds a synthetic history, one millisecond per event.
type hist struct {
	t  time.Time
	ev []Event
}

func newHist() *hist { return &hist{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (h *hist) add(e Event) *hist {
	h.t = h.t.Add(time.Millisecond)
	e.Time = h.t
	h.ev = append(h.ev, e)
	return h
}

func (h *hist) wait(d time.Duration) *hist { h.t = h.t.Add(d); return h }

func id(pub string, seq uint64) string { return fmt.Sprintf("%s-%d", pub, seq) }

func (h *hist) pub(q, p string, seq uint64) *hist {
	return h.add(Event{Kind: EvPublish, Queue: q, ID: id(p, seq), Pub: p, Seq: seq, Client: p})
}
func (h *hist) confirm(q, p string, seq uint64) *hist {
	return h.add(Event{Kind: EvConfirm, Queue: q, ID: id(p, seq), Client: p})
}
func (h *hist) nack(q, p string, seq uint64) *hist {
	return h.add(Event{Kind: EvNack, Queue: q, ID: id(p, seq), Client: p})
}
func (h *hist) ret(q, p string, seq uint64) *hist {
	return h.add(Event{Kind: EvReturn, Queue: q, ID: id(p, seq), Client: p})
}
func (h *hist) deliver(q, consumer string, session int, p string, seq uint64, redelivered bool) *hist {
	return h.add(Event{Kind: EvDeliver, Queue: q, ID: id(p, seq), Client: consumer, Session: session, Redelivered: redelivered})
}

// ok publishes, confirms and delivers seqs 1..n of publisher p on q through consumer c.
func (h *hist) ok(q, p, c string, from, to uint64) *hist {
	for s := from; s <= to; s++ {
		h.pub(q, p, s).confirm(q, p, s).deliver(q, c, 1, p, s, false)
	}
	return h
}

func TestCheck_Findings(t *testing.T) {
	classes := map[string]QueueClass{"q": {Kind: "quorum", MustNotLose: true}, "async": {Kind: "quorum-async"}}
	type want struct {
		confirmed, nacked, returned, indeterminate, delivered                     int
		lost, unexpected, dups, badDups, order, nackedDelivered, unknownDelivered int
		lostIDs                                                                   []string
		ok                                                                        bool
	}
	cases := []struct {
		name string
		h    *hist
		q    string
		want want
	}{
		{"clean", newHist().ok("q", "p1", "c1", 1, 5), "q",
			want{confirmed: 5, delivered: 5, ok: true}},
		{"one confirmed message lost",
			newHist().ok("q", "p1", "c1", 1, 2).pub("q", "p1", 3).confirm("q", "p1", 3).ok("q", "p1", "c1", 4, 5), "q",
			want{confirmed: 5, delivered: 4, lost: 1, lostIDs: []string{"p1-3"}}},
		{"loss allowed in an async queue (reported, not a violation)",
			newHist().pub("async", "p1", 1).confirm("async", "p1", 1), "async",
			want{confirmed: 1, lost: 1, lostIDs: []string{"p1-1"}, ok: true}},
		{"delivered but never published",
			newHist().ok("q", "p1", "c1", 1, 1).deliver("q", "c1", 1, "ghost", 7, false), "q",
			want{confirmed: 1, delivered: 1, unexpected: 1}},
		{"published to another queue counts as unexpected here",
			newHist().pub("other", "p1", 1).confirm("other", "p1", 1).deliver("q", "c1", 1, "p1", 1, false), "q",
			want{unexpected: 1}},
		{"duplicate flagged redelivered is allowed",
			newHist().ok("q", "p1", "c1", 1, 1).deliver("q", "c2", 1, "p1", 1, true), "q",
			want{confirmed: 1, delivered: 1, dups: 1, ok: true}},
		{"duplicate without the redelivered flag",
			newHist().ok("q", "p1", "c1", 1, 1).deliver("q", "c1", 2, "p1", 1, false), "q",
			want{confirmed: 1, delivered: 1, dups: 1, badDups: 1}},
		{"the original seen after its flagged redelivery (another client, a dying node) is allowed",
			newHist().pub("q", "p1", 1).confirm("q", "p1", 1).deliver("q", "c1", 1, "p1", 1, true).deliver("q", "c2", 1, "p1", 1, false), "q",
			want{confirmed: 1, delivered: 1, dups: 1, ok: true}},
		{"two deliveries without the flag, whatever their order with a flagged one",
			newHist().pub("q", "p1", 1).confirm("q", "p1", 1).deliver("q", "c1", 1, "p1", 1, true).deliver("q", "c2", 1, "p1", 1, false).deliver("q", "c3", 1, "p1", 1, false), "q",
			want{confirmed: 1, delivered: 1, dups: 2, badDups: 1}},
		{"publisher order broken among first deliveries",
			newHist().pub("q", "p1", 1).pub("q", "p1", 2).confirm("q", "p1", 1).confirm("q", "p1", 2).
				deliver("q", "c1", 1, "p1", 2, false).deliver("q", "c1", 1, "p1", 1, false), "q",
			want{confirmed: 2, delivered: 2, order: 1}},
		{"redelivered messages may come out of order",
			newHist().pub("q", "p1", 1).pub("q", "p1", 2).confirm("q", "p1", 1).confirm("q", "p1", 2).
				deliver("q", "c1", 1, "p1", 2, false).deliver("q", "c1", 1, "p1", 1, true), "q",
			want{confirmed: 2, delivered: 2, ok: true}},
		{"order is per consumer connection: two consumers interleave freely",
			newHist().pub("q", "p1", 1).pub("q", "p1", 2).confirm("q", "p1", 1).confirm("q", "p1", 2).
				deliver("q", "c2", 1, "p1", 2, false).deliver("q", "c1", 1, "p1", 1, false), "q",
			want{confirmed: 2, delivered: 2, ok: true}},
		{"two publishers are ordered independently",
			newHist().pub("q", "a", 1).pub("q", "b", 5).confirm("q", "a", 1).confirm("q", "b", 5).
				deliver("q", "c1", 1, "b", 5, false).deliver("q", "c1", 1, "a", 1, false), "q",
			want{confirmed: 2, delivered: 2, ok: true}},
		{"a nacked message enqueued late owes no order (it was in flight on a broken path)",
			newHist().pub("q", "p1", 1).nack("q", "p1", 1).pub("q", "p1", 2).confirm("q", "p1", 2).
				deliver("q", "c1", 1, "p1", 2, false).deliver("q", "c1", 1, "p1", 1, false), "q",
			want{confirmed: 1, nacked: 1, delivered: 2, nackedDelivered: 1, ok: true}},
		{"a confirmed message after an unanswered one is still ordered against confirmed ones",
			newHist().pub("q", "p1", 1).pub("q", "p1", 2).pub("q", "p1", 3).confirm("q", "p1", 1).confirm("q", "p1", 3).
				deliver("q", "c1", 1, "p1", 3, false).deliver("q", "c1", 1, "p1", 2, false).deliver("q", "c1", 1, "p1", 1, false), "q",
			want{confirmed: 2, indeterminate: 1, delivered: 3, unknownDelivered: 1, order: 1}},
		{"nacked and delivered is counted, allowed",
			newHist().pub("q", "p1", 1).nack("q", "p1", 1).deliver("q", "c1", 1, "p1", 1, false), "q",
			want{nacked: 1, delivered: 1, nackedDelivered: 1, ok: true}},
		{"nacked and never delivered is not lost",
			newHist().pub("q", "p1", 1).nack("q", "p1", 1), "q",
			want{nacked: 1, ok: true}},
		{"unconfirmed (connection died) may be delivered or not",
			newHist().pub("q", "p1", 1).pub("q", "p1", 2).deliver("q", "c1", 1, "p1", 2, false), "q",
			want{indeterminate: 2, delivered: 1, unknownDelivered: 1, ok: true}},
		{"returned unroutable then acked is not lost",
			newHist().pub("q", "p1", 1).ret("q", "p1", 1).confirm("q", "p1", 1), "q",
			want{returned: 1, ok: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.h.ev, CheckConfig{Queues: classes})
			var q *QueueReport
			for i := range r.Queues {
				if r.Queues[i].Queue == tc.q {
					q = &r.Queues[i]
				}
			}
			if q == nil {
				t.Fatalf("no report for queue %q: %+v", tc.q, r.Queues)
			}
			got := want{q.Confirmed, q.Nacked, q.Returned, q.Indeterminate, q.Delivered,
				q.Lost, q.Unexpected, q.Duplicates, q.BadDuplicates, q.OrderViolations, q.NackedDelivered, q.UnknownDelivered,
				q.LostIDs, len(q.Violations()) == 0}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v\nviolations: %v", got, tc.want, q.Violations())
			}
			if r.OK() != tc.want.ok && tc.q == "q" {
				t.Errorf("Report.OK() = %v, want %v (%v)", r.OK(), tc.want.ok, r.Violations())
			}
		})
	}
}

func TestCheck_UnavailabilityPerFault(t *testing.T) {
	h := newHist().ok("q", "p1", "c1", 1, 3)
	// p1-4 is published just before the fault and confirmed after it: it does not count as
	// the queue working again.
	h.pub("q", "p1", 4)
	h.add(Event{Kind: EvFault, FaultID: 1, Op: "kill", Detail: "node 1"})
	h.wait(2 * time.Second)
	h.add(Event{Kind: EvHeal, FaultID: 1})
	h.confirm("q", "p1", 4).deliver("q", "c1", 2, "p1", 4, false)
	h.pub("q", "p1", 5).wait(500*time.Millisecond).confirm("q", "p1", 5).wait(time.Second).deliver("q", "c1", 2, "p1", 5, false)
	r := Check(h.ev, CheckConfig{Queues: map[string]QueueClass{"q": {MustNotLose: true}}})
	if len(r.Faults) != 1 {
		t.Fatalf("faults: %+v", r.Faults)
	}
	f := r.Faults[0]
	var fault, conf5, del5 time.Time
	for _, e := range h.ev {
		switch {
		case e.Kind == EvFault:
			fault = e.Time
		case e.Kind == EvConfirm && e.ID == "p1-4":
			// published before the fault: must not be the answer
		case e.Kind == EvConfirm && e.ID == "p1-5":
			conf5 = e.Time
		case e.Kind == EvDeliver && e.ID == "p1-5":
			del5 = e.Time
		}
	}
	if f.Kind != "kill" || f.ToConfirm != conf5.Sub(fault) || f.ToDeliver != del5.Sub(fault) {
		t.Errorf("fault report %+v; want to-confirm %v to-deliver %v", f, conf5.Sub(fault), del5.Sub(fault))
	}
	if f.Duration < 2*time.Second || f.Duration > 3*time.Second {
		t.Errorf("fault duration %v", f.Duration)
	}
	if !r.OK() {
		t.Errorf("violations: %v", r.Violations())
	}
}

func TestCheck_UnavailabilityNeverRecovered(t *testing.T) {
	h := newHist().ok("q", "p1", "c1", 1, 1)
	h.add(Event{Kind: EvFault, FaultID: 3, Op: "pause"})
	h.pub("q", "p1", 2)
	r := Check(h.ev, CheckConfig{})
	if f := r.Faults[0]; f.ToConfirm != -1 || f.ToDeliver != -1 || f.Duration != -1 {
		t.Errorf("want never (-1): %+v", f)
	}
}

func TestCheck_Meta(t *testing.T) {
	h := newHist()
	h.add(Event{Kind: EvMeta, Op: "queue.declare", OK: true})
	h.add(Event{Kind: EvMeta, Op: "queue.declare", Err: "no quorum"})
	h.add(Event{Kind: EvMeta, Op: "queue.delete", OK: true})
	m := Check(h.ev, CheckConfig{}).Meta
	if m.Ops != 3 || m.OK != 2 || m.Failed != 1 || m.ByOp["queue.declare"] != [2]int{1, 1} || m.Errors["no quorum"] != 1 {
		t.Errorf("meta %+v", m)
	}
}

func TestConverged(t *testing.T) {
	ok, diffs := Converged(map[int][]string{1: {"q/a", "q/b"}, 2: {"q/a", "q/b"}, 3: {"q/b", "q/a"}})
	if !ok || len(diffs) != 0 {
		t.Errorf("same objects: ok=%v %v", ok, diffs)
	}
	ok, diffs = Converged(map[int][]string{1: {"q/a", "q/b"}, 2: {"q/a"}, 3: {"q/a"}})
	if ok || !reflect.DeepEqual(diffs, []string{"q/b missing on node 2,3"}) {
		t.Errorf("diverged: ok=%v %v", ok, diffs)
	}
}

// An async queue may lose what it confirmed during a fault or just before one, not otherwise.
func TestCheck_AsyncLossOnlyNearAFault(t *testing.T) {
	classes := map[string]QueueClass{"a": {Kind: "quorum-async", LossWindow: 500 * time.Millisecond}}
	h := newHist()
	h.ok("a", "p", "c", 1, 2)
	h.pub("a", "p", 3).confirm("a", "p", 3) // lost, 2 s before any fault: a violation
	h.wait(2 * time.Second)
	h.pub("a", "p", 4).confirm("a", "p", 4) // lost, just before the fault: allowed
	h.wait(100 * time.Millisecond)
	h.add(Event{Kind: EvFault, FaultID: 1, Op: "kill", Detail: "node 1"})
	h.pub("a", "p", 5).confirm("a", "p", 5) // lost, during the fault: allowed
	h.pub("a", "p", 7)                      // published during the fault, its confirm received a second after the heal: allowed
	h.wait(time.Second)
	h.add(Event{Kind: EvHeal, FaultID: 1})
	h.wait(time.Second)
	h.confirm("a", "p", 7)
	h.wait(2 * time.Second)
	h.pub("a", "p", 6).confirm("a", "p", 6) // lost, 2 s after the heal: a violation
	r := Check(h.ev, CheckConfig{Queues: classes})
	q := r.Queues[0]
	if q.Lost != 5 || q.LostOutsideWindow != 2 || !reflect.DeepEqual(q.LostOutsideWindowIDs, []string{"p-3", "p-6"}) {
		t.Fatalf("lost %d, outside the window %d %v; want 5, 2 [p-3 p-6]", q.Lost, q.LostOutsideWindow, q.LostOutsideWindowIDs)
	}
	if r.OK() {
		t.Fatal("losses away from any fault passed")
	}
	classes["a"] = QueueClass{Kind: "quorum-async"}
	if r := Check(h.ev, CheckConfig{Queues: classes}); !r.OK() {
		t.Fatalf("without a window an async loss is allowed: %v", r.Violations())
	}
}
