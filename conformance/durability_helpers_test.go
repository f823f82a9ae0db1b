package conformance

// Helpers for the durability tests (durability_test.go, crash_test.go): brokers a test starts,
// stops and kills itself on a data folder of its own, tagged message bodies, a bounded drain, the
// publish/consume workload whose outcome the crash tests check, and a finder for a queue's log
// files under the data folder.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	// durQuiet is how long a drain waits for one more message after it has the ready count.
	durQuiet = 200 * time.Millisecond
	// durConfirmWait bounds the wait for one publisher confirm in the workload. A dead broker
	// answers at once (amqp091-go nacks what is pending when the connection drops).
	durConfirmWait = 10 * time.Second
	// durBodySize is the size of a workload message body.
	durBodySize = 96
)

// durDataDir returns a fresh data folder for a broker the test starts itself. StartBroker writes
// its address file beside it, so the folder is one level below the test's temp folder.
func durDataDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "data")
}

// durBroker starts warren on dataDir (StartBroker) and kills it when the test ends, whatever
// the test did with it meanwhile (Kill of an exited process returns at once).
func durBroker(t *testing.T, dataDir string, extra ...string) *Broker {
	t.Helper()
	b, err := StartBroker(dataDir, extra...)
	if err != nil {
		t.Fatalf("start warren on %s: %v", dataDir, err)
	}
	t.Cleanup(b.Kill)
	return b
}

// durNeedFlag skips the test when the built warren binary has no --name flag (its -h usage).
func durNeedFlag(t *testing.T, name string) {
	t.Helper()
	out, _ := exec.Command(warrenBin, "-h").CombinedOutput() // exits 1 after printing usage
	if !bytes.Contains(out, []byte("-"+name+" ")) && !bytes.Contains(out, []byte("-"+name+"\n")) {
		t.Skipf("warren has no --%s flag", name)
	}
}

// durLog collects a broker's stderr.
type durLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *durLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *durLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// find returns the JSON log lines (--log-json) at level whose text contains every one of words
// (case-insensitive).
func (l *durLog) find(level string, words ...string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		var rec struct {
			Level string `json:"level"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Level != level {
			continue
		}
		low := strings.ToLower(line)
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(low, strings.ToLower(w))
		}
		if ok {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// durBrokerLogged is durBroker with the broker's output captured (JSON lines, level warn and
// above) instead of passed through to the test binary's stderr, where the test cannot read it.
func durBrokerLogged(t *testing.T, dataDir string, extra ...string) (*Broker, *durLog) {
	t.Helper()
	logs := &durLog{}
	b, err := startBrokerTo(logs, dataDir, append([]string{"--log-json"}, extra...)...)
	if err != nil {
		t.Fatalf("start warren on %s: %v; log:\n%s", dataDir, err, logs.String())
	}
	t.Cleanup(func() {
		b.Kill()
		if t.Failed() {
			t.Logf("warren log (%s):\n%s", dataDir, logs.String())
		}
	})
	return b, logs
}

// durDeclare declares durable queues on c.
func durDeclare(t *testing.T, c *amqp.Connection, args amqp.Table, names ...string) {
	t.Helper()
	ch := openChannel(t, c)
	for _, n := range names {
		if _, err := ch.QueueDeclare(n, true, false, false, false, args); err != nil {
			t.Fatalf("queue.declare %s (durable): %v", n, err)
		}
	}
	ch.Close()
}

// durPublish publishes bodies to exchange/key on a fresh confirm-mode channel of c, with the
// given delivery mode, and waits (bounded) until every one is confirmed with basic.ack.
func durPublish(t *testing.T, c *amqp.Connection, exchange, key string, mode uint8, bodies ...string) {
	t.Helper()
	msgs := make([]amqp.Publishing, len(bodies))
	for i, b := range bodies {
		msgs[i] = amqp.Publishing{DeliveryMode: mode, Body: []byte(b)}
	}
	durPublishMsgs(t, c, exchange, key, msgs...)
}

// durPublishMsgs is durPublish for whole messages.
func durPublishMsgs(t *testing.T, c *amqp.Connection, exchange, key string, msgs ...amqp.Publishing) {
	t.Helper()
	ch := openChannel(t, c)
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm.select: %v", err)
	}
	cx := ctx(t, 10*time.Second)
	dcs := make([]*amqp.DeferredConfirmation, len(msgs))
	for i, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(cx, exchange, key, false, false, m)
		if err != nil {
			t.Fatalf("publish %d to %q/%q: %v", i, exchange, key, err)
		}
		dcs[i] = dc
	}
	for i, dc := range dcs {
		if ok, err := dc.WaitContext(cx); err != nil || !ok {
			t.Fatalf("confirm of message %d to %q/%q: ack=%v err=%v", i, exchange, key, ok, err)
		}
	}
	ch.Close()
}

// durBodies returns "prefix-000".."prefix-<n-1>".
func durBodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// durDrain consumes every ready message of q on a fresh channel of c (manual ack, unlimited
// prefetch) and returns the deliveries: at least the ready count a passive declare reports, then
// anything more that arrives within durQuiet of the previous one; the whole drain is bounded. It
// acks nothing and closes the channel, so the messages go back to the queue (redelivered).
func durDrain(t *testing.T, c *amqp.Connection, q string) []amqp.Delivery {
	t.Helper()
	ch := openChannel(t, c)
	defer ch.Close()
	info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("passive queue.declare %s: %v", q, err)
	}
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume %s: %v", q, err)
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	var out []amqp.Delivery
	for {
		wait := durQuiet
		if len(out) < info.Messages {
			wait = 5 * time.Second
		}
		idle := time.NewTimer(wait)
		select {
		case d, ok := <-ds:
			idle.Stop()
			if !ok {
				t.Fatalf("drain %s: consumer closed after %d of %d messages", q, len(out), info.Messages)
			}
			out = append(out, d)
		case <-idle.C:
			if len(out) < info.Messages {
				t.Fatalf("drain %s: %d of %d ready messages arrived, then nothing for %v", q, len(out), info.Messages, wait)
			}
			return out
		case <-deadline.C:
			t.Fatalf("drain %s: still receiving after 30s (%d messages)", q, len(out))
		}
	}
}

// durBodiesOf returns the bodies of ds as strings.
func durBodiesOf(ds []amqp.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Body)
	}
	return out
}

// durExpectBodies asserts that q holds exactly want, in that order (durDrain).
func durExpectBodies(t *testing.T, c *amqp.Connection, q string, want []string) []amqp.Delivery {
	t.Helper()
	ds := durDrain(t, c, q)
	if got := durBodiesOf(ds); !slices.Equal(got, want) {
		t.Errorf("queue %s holds %d messages %s, want %d %s", q, len(got), durShort(got), len(want), durShort(want))
	}
	return ds
}

// durShort prints a long list of bodies by its first and last few.
func durShort(s []string) string {
	if len(s) <= 12 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q … %q", s[:6], s[len(s)-6:])
}

// durID names one workload message: its publisher and that publisher's sequence number.
type durID struct{ pub, seq int }

// durBody encodes a workload message: tag, publisher, sequence number and the index of the queue
// it was sent to, padded to durBodySize.
func durBody(tag string, id durID, qi int) []byte {
	b := fmt.Appendf(make([]byte, 0, durBodySize), "%s|p=%d|s=%d|q=%d|", tag, id.pub, id.seq, qi)
	for len(b) < durBodySize {
		b = append(b, '.')
	}
	return b
}

// durParse decodes a durBody; ok is false for anything else.
func durParse(tag string, body []byte) (id durID, qi int, ok bool) {
	rest, found := strings.CutPrefix(string(body), tag+"|")
	if !found {
		return id, 0, false
	}
	n, err := fmt.Sscanf(rest, "p=%d|s=%d|q=%d|", &id.pub, &id.seq, &qi)
	return id, qi, err == nil && n == 3 && len(body) == durBodySize
}

// durWorkload publishes persistent messages from several connections in confirm mode,
// round-robin over durable queues, optionally consumes some of them, and records exactly what
// the broker promised: which messages were confirmed (basic.ack), which were seen by a consumer,
// which were acked by the consumer. One workload spans several broker lifetimes on one data
// folder; sequence numbers continue from round to round.
type durWorkload struct {
	tag    string
	queues []string
	pubs   int
	window int // most unconfirmed publishes per publisher
	limit  int // most publishes per publisher per round

	mu         sync.Mutex
	next       []int         // next sequence number per publisher
	attempted  map[durID]int // every message handed to basic.publish → queue index
	confirmed  map[durID]bool
	nacked     int // confirmations with ack=false (basic.nack, or pending when the connection died)
	unanswered int // no confirmation within durConfirmWait
	delivered  map[durID]bool
	acked      map[durID]bool // basic.ack sent: the message may or may not come back
	consumed   map[int]bool   // queue indexes a consumer ever subscribed to
	errs       []string
}

func newDurWorkload(tag string, queues []string, pubs int) *durWorkload {
	return &durWorkload{
		tag: tag, queues: queues, pubs: pubs, window: 64, limit: 20000,
		next:      make([]int, pubs),
		attempted: map[durID]int{}, confirmed: map[durID]bool{},
		delivered: map[durID]bool{}, acked: map[durID]bool{}, consumed: map[int]bool{},
	}
}

func (w *durWorkload) errorf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, fmt.Sprintf(format, args...))
}

// round runs the publishers and, when consumeQueues is not empty, one consumer subscribed to
// those queues against url; delay after all clients are connected it calls end (which kills or
// stops the broker), then waits (bounded) until every client noticed.
func (w *durWorkload) round(t *testing.T, url string, consumeQueues []int, delay time.Duration, end func()) {
	t.Helper()
	var wg sync.WaitGroup
	ready := make(chan error, w.pubs+1)
	start := make(chan struct{})
	for p := range w.pubs {
		wg.Go(func() { w.publish(url, p, ready, start) })
	}
	clients := w.pubs
	if len(consumeQueues) > 0 {
		clients++
		wg.Go(func() { w.consume(url, consumeQueues, ready) })
	}
	for range clients {
		select {
		case err := <-ready:
			if err != nil {
				t.Errorf("workload client: %v", err)
			}
		case <-time.After(10 * time.Second):
			close(start)
			end()
			t.Fatalf("workload clients not connected within 10s")
		}
	}
	close(start)
	time.Sleep(delay)
	end()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("workload clients still running 20s after the broker went down")
	}
}

// publish is one publisher: its own connection and confirm-mode channel; it publishes until the
// connection fails or limit is reached, with at most window publishes unconfirmed.
func (w *durWorkload) publish(url string, p int, ready chan<- error, start <-chan struct{}) {
	c, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		ready <- fmt.Errorf("publisher %d: dial: %w", p, err)
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		ready <- fmt.Errorf("publisher %d: channel/confirm.select: %w", p, err)
		return
	}
	ready <- nil
	<-start
	type pending struct {
		id durID
		dc *amqp.DeferredConfirmation
	}
	var out []pending
	settle := func(pd pending) {
		select {
		case <-pd.dc.Done():
		case <-time.After(durConfirmWait):
			w.mu.Lock()
			w.unanswered++
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		if pd.dc.Acked() {
			w.confirmed[pd.id] = true
		} else {
			w.nacked++
		}
		w.mu.Unlock()
	}
	for range w.limit {
		w.mu.Lock()
		id := durID{p, w.next[p]}
		w.next[p]++
		qi := (id.pub + id.seq) % len(w.queues)
		w.attempted[id] = qi
		w.mu.Unlock()
		msg := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: durBody(w.tag, id, qi)}
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", w.queues[qi], false, false, msg)
		if err != nil {
			break // the broker is gone
		}
		out = append(out, pending{id, dc})
		for len(out) >= w.window {
			settle(out[0])
			out = out[1:]
		}
	}
	for _, pd := range out {
		settle(pd)
	}
}

// consume is the consumer: one connection and channel, manual ack, no prefetch limit, subscribed
// to the queues qis. It acks three messages in four (by sequence number) and leaves the rest
// unacked, so they are delivered but pending when the broker goes down.
func (w *durWorkload) consume(url string, qis []int, ready chan<- error) {
	c, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		ready <- fmt.Errorf("consumer: dial: %w", err)
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		ready <- fmt.Errorf("consumer: channel: %w", err)
		return
	}
	var streams []<-chan amqp.Delivery
	for _, qi := range qis {
		w.mu.Lock()
		w.consumed[qi] = true
		w.mu.Unlock()
		ds, err := ch.Consume(w.queues[qi], "", false, false, false, false, nil)
		if err != nil {
			ready <- fmt.Errorf("consumer: basic.consume %s: %w", w.queues[qi], err)
			return
		}
		streams = append(streams, ds)
	}
	ready <- nil
	var wg sync.WaitGroup
	for _, ds := range streams {
		wg.Go(func() {
			for d := range ds {
				id, _, ok := durParse(w.tag, d.Body)
				if !ok {
					w.errorf("consumer got a message never published: %q", d.Body)
					continue
				}
				w.mu.Lock()
				w.delivered[id] = true
				ack := id.seq%4 != 0
				if ack {
					w.acked[id] = true // before sending: once sent it may be gone
				}
				w.mu.Unlock()
				if ack {
					d.Ack(false)
				}
			}
		})
	}
	wg.Wait()
}

// durFigures sums up a workload checked against the drained queues.
type durFigures struct {
	published, confirmed, nacked, unanswered int
	delivered, acked                         int
	recovered, recoveredUnconfirmed          int
	redelivered, duplicates, lost            int
}

func (f durFigures) String() string {
	return fmt.Sprintf("published=%d confirmed=%d nacked/unconfirmed=%d unanswered=%d delivered-before-crash=%d acked=%d "+
		"recovered=%d (of which unconfirmed=%d, redelivered=%d, duplicates=%d) lost=%d",
		f.published, f.confirmed, f.nacked, f.unanswered, f.delivered, f.acked,
		f.recovered, f.recoveredUnconfirmed, f.redelivered, f.duplicates, f.lost)
}

// verify checks the drained contents of every queue (drained[i] is w.queues[i]) against what
// the workload recorded:
//   - every confirmed message whose consumer ack was never sent is present at least once;
//   - every message present was published, to that queue;
//   - per queue, the messages of one publisher that no consumer had seen come in increasing
//     sequence order (recovery replays the log in order);
//   - in a queue that never had a consumer nothing is marked redelivered (AMQP 0-9-1 §1.8.3.9:
//     redelivered means the message may have been delivered before; here none could have been).
func (w *durWorkload) verify(t *testing.T, drained [][]amqp.Delivery) durFigures {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.errs {
		t.Error(e)
	}
	f := durFigures{published: len(w.attempted), confirmed: len(w.confirmed), nacked: w.nacked,
		unanswered: w.unanswered, delivered: len(w.delivered), acked: len(w.acked)}
	seen := map[durID]int{}
	problems := map[string]int{} // kind → count; the first few of each kind are printed
	report := func(kind, format string, args ...any) {
		t.Helper()
		if problems[kind]++; problems[kind] <= 5 {
			t.Errorf(format, args...)
		}
	}
	defer func() {
		for kind, n := range problems {
			if n > 5 {
				t.Errorf("%d problems of kind %q in all", n, kind)
			}
		}
	}()
	for qi, ds := range drained {
		last := map[int]int{} // publisher → last sequence number, over never-delivered messages
		for _, d := range ds {
			f.recovered++
			id, bqi, ok := durParse(w.tag, d.Body)
			if !ok {
				report("unpublished", "queue %s: message never published: %q", w.queues[qi], d.Body)
				continue
			}
			wantQ, published := w.attempted[id]
			switch {
			case !published:
				report("unpublished", "queue %s: message never published: %q", w.queues[qi], d.Body)
				continue
			case wantQ != qi || bqi != qi:
				report("wrong queue", "queue %s: message %q was published to %s", w.queues[qi], d.Body, w.queues[wantQ])
			}
			seen[id]++
			if seen[id] > 1 {
				f.duplicates++
			}
			if !w.confirmed[id] {
				f.recoveredUnconfirmed++
			}
			if d.Redelivered {
				f.redelivered++
				if !w.consumed[qi] {
					report("redelivered", "queue %s never had a consumer, yet %q came back redelivered", w.queues[qi], d.Body)
				}
			}
			if w.delivered[id] || d.Redelivered {
				continue // delivered before a crash: not checked for order
			}
			if prev, ok := last[id.pub]; ok && id.seq <= prev {
				report("order", "queue %s: publisher %d's message %d came after its message %d", w.queues[qi], id.pub, id.seq, prev)
			}
			last[id.pub] = id.seq
		}
	}
	var lost []durID
	for id := range w.confirmed {
		if seen[id] == 0 && !w.acked[id] {
			lost = append(lost, id)
		}
	}
	f.lost = len(lost)
	if len(lost) > 0 {
		slices.SortFunc(lost, func(a, b durID) int {
			if a.pub != b.pub {
				return a.pub - b.pub
			}
			return a.seq - b.seq
		})
		t.Errorf("%d confirmed, never-acked messages lost, e.g. %s", len(lost), durShort(durNames(w.tag, lost, w.attempted)))
	}
	return f
}

func durNames(tag string, ids []durID, qs map[durID]int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%s|p=%d|s=%d|q=%d", tag, id.pub, id.seq, qs[id])
	}
	return out
}

// durFindLog returns the folder under dataDir whose segment files contain marker (payloads are
// stored in plain text without a cipher), that is the log of the queue the marker was published
// to, and the segment files in it: tidwall/wal names a segment after its first index, 20 decimal
// digits. Folders named "spill" (the broker's memory-overflow cache, wiped on restart) are
// skipped. It fails the test unless exactly one folder matches.
func durFindLog(t *testing.T, dataDir string, marker []byte) (dir string, segments []string) {
	t.Helper()
	dirs := map[string]bool{}
	err := filepath.WalkDir(dataDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && e.Name() == "spill" {
			return filepath.SkipDir
		}
		if n := e.Name(); !e.Type().IsRegular() || len(n) != 20 || strings.Trim(n, "0123456789") != "" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, marker) {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dataDir, err)
	}
	if len(dirs) != 1 {
		t.Fatalf("%d folders under %s hold %q, want 1: %v\n%s", len(dirs), dataDir, marker, dirs, durTree(dataDir))
	}
	for d := range dirs {
		dir = d
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); len(n) == 20 && strings.Trim(n, "0123456789") == "" && e.Type().IsRegular() {
			segments = append(segments, filepath.Join(dir, n))
		}
	}
	if len(segments) == 0 {
		t.Fatalf("no segment files in %s\n%s", dir, durTree(dataDir))
	}
	return dir, segments // ReadDir sorts by name: oldest segment first
}

// durDiskUsage returns the bytes of the files under each top-level folder of dataDir.
func durDiskUsage(dataDir string) map[string]int64 {
	use := map[string]int64{}
	filepath.WalkDir(dataDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dataDir, path)
		top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		if info, err := e.Info(); err == nil {
			use[top] += info.Size()
		}
		return nil
	})
	return use
}

// durTree lists the files under dir with their sizes, for failure messages and logs.
func durTree(dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		if info, err := e.Info(); err == nil && !e.IsDir() {
			fmt.Fprintf(&b, "  %s (%d bytes)\n", rel, info.Size())
		} else if e.IsDir() {
			fmt.Fprintf(&b, "  %s/\n", rel)
		}
		return nil
	})
	return b.String()
}
