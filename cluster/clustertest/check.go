package clustertest

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// QueueClass tells the checker what a queue promises.
type QueueClass struct {
	Kind string // "classic", "quorum", "quorum-async", "stream": for the report
	// MustNotLose makes a confirmed message that was never delivered a violation (sync
	// replicated queues; classic durable queues whose node keeps its disk).
	MustNotLose bool
	// LossWindow (async replicated queues): a confirmed message may be lost only if it may have
	// been confirmed while a fault was on, or at most LossWindow before one started (the
	// followers had not received it yet): the broker decided its confirm somewhere between its
	// publish and the client's receipt of the confirm, which arrives late when the fault cut the
	// way back. Any other loss is a violation. 0: no such check.
	LossWindow time.Duration
}

// CheckConfig is what the checker knows besides the history.
type CheckConfig struct {
	Queues map[string]QueueClass // queues not listed: kind "?", losses reported but allowed
	MaxIDs int                   // message ids listed per finding (default 10)
}

// QueueReport is the checker's verdict on one queue.
type QueueReport struct {
	Queue       string
	Kind        string
	MustNotLose bool
	LossWindow  time.Duration

	Published     int // messages sent
	Confirmed     int // acked by the broker (and not returned)
	Nacked        int
	Returned      int // returned unroutable: acked, but not in the queue
	Indeterminate int // no answer (the connection died first): may or may not be in the queue

	Delivered    int // distinct messages delivered
	Deliveries   int // deliveries in all
	Redeliveries int // deliveries flagged redelivered

	// Lost: confirmed but never delivered.
	Lost    int
	LostIDs []string
	// LostOutsideWindow: of Lost, those confirmed neither during a fault nor within
	// LossWindow before one (when LossWindow is set).
	LostOutsideWindow    int
	LostOutsideWindowIDs []string
	// Unexpected: delivered but never published to this queue.
	Unexpected    int
	UnexpectedIDs []string
	// Duplicates: deliveries of a message after its first. BadDuplicates: those of them
	// without the redelivered flag (a duplicate must be flagged).
	Duplicates       int
	BadDuplicates    int
	BadDuplicateIDs  []string
	OrderViolations  int // first deliveries of one publisher's messages out of its order
	OrderExamples    []string
	NackedDelivered  int // nacked, delivered nevertheless (allowed)
	UnknownDelivered int // indeterminate and delivered
}

// Violations lists what breaks the contract in this queue.
func (q QueueReport) Violations() []string {
	var v []string
	if q.MustNotLose && q.Lost > 0 {
		v = append(v, fmt.Sprintf("%s: %d confirmed messages lost (e.g. %s)", q.Queue, q.Lost, strings.Join(q.LostIDs, " ")))
	}
	if q.LossWindow > 0 && q.LostOutsideWindow > 0 {
		v = append(v, fmt.Sprintf("%s: %d confirmed messages lost that were confirmed neither during a fault nor within %v before one (e.g. %s)", q.Queue, q.LostOutsideWindow, q.LossWindow, strings.Join(q.LostOutsideWindowIDs, " ")))
	}
	if q.Unexpected > 0 {
		v = append(v, fmt.Sprintf("%s: %d deliveries of messages never published (e.g. %s)", q.Queue, q.Unexpected, strings.Join(q.UnexpectedIDs, " ")))
	}
	if q.BadDuplicates > 0 {
		v = append(v, fmt.Sprintf("%s: %d duplicates without the redelivered flag (e.g. %s)", q.Queue, q.BadDuplicates, strings.Join(q.BadDuplicateIDs, " ")))
	}
	if q.OrderViolations > 0 {
		v = append(v, fmt.Sprintf("%s: %d first deliveries out of publisher order (e.g. %s)", q.Queue, q.OrderViolations, strings.Join(q.OrderExamples, "; ")))
	}
	return v
}

// Unavailability is how long a queue took to work again after a fault: from the fault's start
// to the first confirm of, and the first delivery of, a message published after it started.
// -1 means none came.
type Unavailability struct {
	Queue     string
	ToConfirm time.Duration
	ToDeliver time.Duration
}

// FaultReport is one fault of the history and the unavailability it caused.
type FaultReport struct {
	ID       int
	Kind     string
	Detail   string
	Start    time.Duration // since the history's first event
	Duration time.Duration // until healed (-1: never healed in the history)
	Queues   []Unavailability
	// Worst over the queues (-1 when some queue got no confirm, or no delivery, after it).
	ToConfirm, ToDeliver time.Duration
}

// MetaReport counts metadata operations.
type MetaReport struct {
	Ops, OK, Failed int
	ByOp            map[string][2]int // op → {ok, failed}
	Errors          map[string]int    // error text → count
}

// Report is the checker's result over one history.
type Report struct {
	Queues []QueueReport
	Faults []FaultReport
	Meta   MetaReport
}

// Violations lists every broken promise.
func (r Report) Violations() []string {
	var v []string
	for _, q := range r.Queues {
		v = append(v, q.Violations()...)
	}
	return v
}

// OK reports whether the history keeps every promise.
func (r Report) OK() bool { return len(r.Violations()) == 0 }

// Check analyses a history. It is a pure function of its arguments.
func Check(events []Event, cfg CheckConfig) Report {
	if cfg.MaxIDs == 0 {
		cfg.MaxIDs = 10
	}
	type msg struct {
		queue     string
		pub       string
		seq       uint64
		published time.Time
		confirmed bool
		publishAt time.Duration // since the history's first event
		confirmAt time.Duration
		nacked    bool
		returned  bool
		delivered int
		unflagged int // deliveries without the redelivered flag
	}
	msgs := map[string]*msg{}
	queues := map[string]*QueueReport{}
	qr := func(name string) *QueueReport {
		q := queues[name]
		if q == nil {
			c, ok := cfg.Queues[name]
			if !ok {
				c.Kind = "?"
			}
			q = &QueueReport{Queue: name, Kind: c.Kind, MustNotLose: c.MustNotLose, LossWindow: c.LossWindow}
			queues[name] = q
		}
		return q
	}
	for name := range cfg.Queues {
		qr(name)
	}
	add := func(list *[]string, s string) {
		if len(*list) < cfg.MaxIDs {
			*list = append(*list, s)
		}
	}
	type streamKey struct {
		client  string
		session int
		queue   string
		pub     string
	}
	lastSeq := map[streamKey]uint64{}
	// Order is owed only for messages whose publish was confirmed: one that was nacked, or
	// whose connection died before an answer, may still be enqueued later (it was in flight
	// on a link to the queue's node when the publisher was told or gave up, and arrives after
	// what the publisher sent next through another node), as with RabbitMQ.
	confirmedIDs := map[string]bool{}
	for _, e := range events {
		if e.Kind == EvConfirm {
			confirmedIDs[e.ID] = true
		}
	}
	var meta MetaReport
	meta.ByOp, meta.Errors = map[string][2]int{}, map[string]int{}
	var t0 time.Time
	var faults []*FaultReport
	faultByID := map[int]*FaultReport{}
	for _, e := range events {
		if t0.IsZero() {
			t0 = e.Time
		}
		switch e.Kind {
		case EvPublish:
			if _, dup := msgs[e.ID]; dup {
				continue // a republish of the same id: the first publish counts
			}
			msgs[e.ID] = &msg{queue: e.Queue, pub: e.Pub, seq: e.Seq, published: e.Time, publishAt: e.Time.Sub(t0)}
			qr(e.Queue).Published++
		case EvConfirm:
			if m := msgs[e.ID]; m != nil && !m.confirmed {
				m.confirmed = true
				m.confirmAt = e.Time.Sub(t0)
			}
		case EvNack:
			if m := msgs[e.ID]; m != nil {
				m.nacked = true
			}
		case EvReturn:
			if m := msgs[e.ID]; m != nil {
				m.returned = true
			}
		case EvDeliver:
			q := qr(e.Queue)
			q.Deliveries++
			if e.Redelivered {
				q.Redeliveries++
			}
			m := msgs[e.ID]
			if m == nil || m.queue != e.Queue {
				q.Unexpected++
				add(&q.UnexpectedIDs, e.ID)
				continue
			}
			m.delivered++
			if !e.Redelivered {
				m.unflagged++
			}
			if m.delivered > 1 {
				q.Duplicates++
				// Every delivery but the original must be flagged. Which one is the original
				// is not the order clients saw them in: one sent before its consumer's node
				// died can reach its client after the flagged redelivery reached another.
				if !e.Redelivered && m.unflagged > 1 {
					q.BadDuplicates++
					add(&q.BadDuplicateIDs, e.ID)
				}
				continue
			}
			q.Delivered++
			if e.Redelivered || !confirmedIDs[e.ID] {
				continue
			}
			k := streamKey{e.Client, e.Session, e.Queue, m.pub}
			if last, ok := lastSeq[k]; ok && m.seq < last {
				q.OrderViolations++
				add(&q.OrderExamples, fmt.Sprintf("%s seq %d after %d on %s#%d", m.pub, m.seq, last, e.Client, e.Session))
				continue
			}
			lastSeq[k] = m.seq
		case EvMeta:
			meta.Ops++
			c := meta.ByOp[e.Op]
			if e.OK {
				meta.OK++
				c[0]++
			} else {
				meta.Failed++
				c[1]++
				meta.Errors[e.Err]++
			}
			meta.ByOp[e.Op] = c
		case EvFault:
			f := &FaultReport{ID: e.FaultID, Kind: e.Op, Detail: e.Detail, Start: e.Time.Sub(t0), Duration: -1}
			faults = append(faults, f)
			faultByID[e.FaultID] = f
		case EvHeal:
			if f := faultByID[e.FaultID]; f != nil {
				f.Duration = e.Time.Sub(t0) - f.Start
			}
		}
	}
	for id, m := range msgs {
		q := qr(m.queue)
		switch {
		case m.returned:
			q.Returned++
		case m.confirmed:
			q.Confirmed++
			if m.delivered == 0 {
				q.Lost++
				q.LostIDs = append(q.LostIDs, id)
				if q.LossWindow > 0 && !nearFault(faults, m.publishAt, m.confirmAt, q.LossWindow) {
					q.LostOutsideWindow++
					q.LostOutsideWindowIDs = append(q.LostOutsideWindowIDs, id)
				}
			}
		case m.nacked:
			q.Nacked++
			if m.delivered > 0 {
				q.NackedDelivered++
			}
		default:
			q.Indeterminate++
			if m.delivered > 0 {
				q.UnknownDelivered++
			}
		}
	}
	var r Report
	names := make([]string, 0, len(queues))
	for n := range queues {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		q := queues[n]
		sort.Strings(q.LostIDs)
		if len(q.LostIDs) > cfg.MaxIDs {
			q.LostIDs = q.LostIDs[:cfg.MaxIDs]
		}
		sort.Strings(q.LostOutsideWindowIDs)
		if len(q.LostOutsideWindowIDs) > cfg.MaxIDs {
			q.LostOutsideWindowIDs = q.LostOutsideWindowIDs[:cfg.MaxIDs]
		}
		r.Queues = append(r.Queues, *q)
	}
	// Unavailability: per fault and queue, the first confirm and the first delivery of a
	// message published at or after the fault's start.
	for _, f := range faults {
		start := t0.Add(f.Start)
		f.ToConfirm, f.ToDeliver = 0, 0
		for _, n := range names {
			u := Unavailability{Queue: n, ToConfirm: -1, ToDeliver: -1}
			for _, e := range events {
				if e.Time.Before(start) || e.Queue != n || (e.Kind != EvConfirm && e.Kind != EvDeliver) {
					continue
				}
				m := msgs[e.ID]
				if m == nil || m.published.Before(start) {
					continue
				}
				d := e.Time.Sub(start)
				if e.Kind == EvConfirm && u.ToConfirm < 0 {
					u.ToConfirm = d
				}
				if e.Kind == EvDeliver && u.ToDeliver < 0 {
					u.ToDeliver = d
				}
				if u.ToConfirm >= 0 && u.ToDeliver >= 0 {
					break
				}
			}
			f.Queues = append(f.Queues, u)
			f.ToConfirm = worst(f.ToConfirm, u.ToConfirm)
			f.ToDeliver = worst(f.ToDeliver, u.ToDeliver)
		}
		r.Faults = append(r.Faults, *f)
	}
	r.Meta = meta
	return r
}

// worst combines durations where -1 (never) is the worst.
func worst(a, b time.Duration) time.Duration {
	if a < 0 || b < 0 {
		return -1
	}
	return max(a, b)
}

// Converged compares what every node reports for the same set of objects (for example the
// sorted names of queues, exchanges and bindings read from each node's HTTP API after the
// faults healed) and lists the differences: objects some nodes have and others lack.
func Converged(views map[int][]string) (ok bool, diffs []string) {
	seen := map[string]map[int]bool{}
	nodes := make([]int, 0, len(views))
	for n, objs := range views {
		nodes = append(nodes, n)
		for _, o := range objs {
			if seen[o] == nil {
				seen[o] = map[int]bool{}
			}
			seen[o][n] = true
		}
	}
	sort.Ints(nodes)
	objs := make([]string, 0, len(seen))
	for o := range seen {
		objs = append(objs, o)
	}
	sort.Strings(objs)
	for _, o := range objs {
		if len(seen[o]) == len(nodes) {
			continue
		}
		var missing []string
		for _, n := range nodes {
			if !seen[o][n] {
				missing = append(missing, fmt.Sprint(n))
			}
		}
		diffs = append(diffs, fmt.Sprintf("%s missing on node %s", o, strings.Join(missing, ",")))
	}
	return len(diffs) == 0, diffs
}

// nearFault reports whether [from, to] meets a fault's time, or the window before it started
// (a fault never healed lasts to the end).
func nearFault(faults []*FaultReport, from, to, window time.Duration) bool {
	for _, f := range faults {
		end := f.Start + f.Duration
		if f.Duration < 0 {
			end = 1<<63 - 1
		}
		if to >= f.Start-window && from <= end {
			return true
		}
	}
	return false
}
