package meta

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/amqp"
)

// memLog is a Log in memory with the wal's durability: an append is durable when its done
// runs (at commit), a retirement only after the next commit (Sync, or a later append's
// commit). crash returns what a restart would find.
type memLog struct {
	mu      sync.Mutex
	next    uint64
	data    map[uint64][]byte // durable records
	retired map[uint64]bool   // durable retirements
	pending []uint64          // retirements not yet durable
	hold    bool              // appends wait for commit (manual)
	waiting []func()          // held appends' completions
	syncs   int
	failAt  uint64 // an append at this offset fails
}

func newMemLog() *memLog {
	return &memLog{next: 1, data: map[uint64][]byte{}, retired: map[uint64]bool{}}
}

func (l *memLog) Append(payload []byte, done func(uint64, error)) uint64 {
	l.mu.Lock()
	off := l.next
	l.next++
	finish := func() {
		l.mu.Lock()
		var err error
		if off == l.failAt {
			err = errors.New("disk full")
		} else {
			l.data[off] = append([]byte(nil), payload...)
		}
		l.commitLocked()
		l.mu.Unlock()
		done(off, err)
	}
	if l.hold {
		l.waiting = append(l.waiting, finish)
		l.mu.Unlock()
		return off
	}
	l.mu.Unlock()
	finish()
	return off
}

// commitLocked makes pending retirements durable (a commit writes everything queued).
func (l *memLog) commitLocked() {
	for _, o := range l.pending {
		l.retired[o] = true
	}
	l.pending = nil
}

func (l *memLog) Retire(offs ...uint64) {
	l.mu.Lock()
	l.pending = append(l.pending, offs...)
	l.mu.Unlock()
}

func (l *memLog) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.syncs++
	l.commitLocked()
	return nil
}

func (l *memLog) Replay(fn func(uint64, []byte) error) error {
	l.mu.Lock()
	var offs []uint64
	for o := range l.data {
		if !l.retired[o] {
			offs = append(offs, o)
		}
	}
	l.mu.Unlock()
	slices.Sort(offs)
	for _, o := range offs {
		if err := fn(o, l.data[o]); err != nil {
			return err
		}
	}
	return nil
}

// live returns the number of live durable records.
func (l *memLog) live() int {
	n := 0
	l.Replay(func(uint64, []byte) error { n++; return nil })
	return n
}

// crash returns the log a restart finds: durable records and retirements only.
func (l *memLog) crash() *memLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := newMemLog()
	c.next = l.next
	for o, d := range l.data {
		c.data[o] = d
	}
	for o := range l.retired {
		c.retired[o] = true
	}
	return c
}

// kv is a small state machine: entities by key with a value ("val"); deleting a vhost drops
// its queues; a record with "fail" fails.
type kv struct {
	mu      sync.Mutex
	state   map[string]string
	vhostOf map[string]string
	order   []string // applied records, for order checks
}

func newKV() *kv { return &kv{state: map[string]string{}, vhostOf: map[string]string{}} }

func (k *kv) Apply(rec Record, fx Effects) (any, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.order = append(k.order, rec.Name)
	if rec.Kind == "future" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKind, rec.Kind)
	}
	if rec.Bool("fail") {
		return nil, errors.New("refused")
	}
	key := rec.Key()
	if rec.Delete {
		if _, ok := k.state[key]; !ok {
			return false, nil
		}
		delete(k.state, key)
		fx.Drop(key)
		if rec.Kind == KindVHost {
			for q, vh := range k.vhostOf {
				if vh == rec.Name {
					delete(k.state, q)
					delete(k.vhostOf, q)
					fx.Drop(q)
				}
			}
		}
		return true, nil
	}
	if rec.VHost != "" {
		if _, ok := k.state[VHostKey(rec.VHost)]; !ok {
			if fx.Replaying() {
				return nil, nil
			}
			return nil, errors.New("no vhost")
		}
		k.vhostOf[key] = rec.VHost
	}
	val := rec.Str("val")
	if old, ok := k.state[key]; ok && old == val {
		return false, nil
	}
	k.state[key] = val
	fx.Keep()
	return true, nil
}

func (k *kv) get(key string) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.state[key]
	return v, ok
}

func put(kind Kind, vh, name, val string) Record {
	return Record{Kind: kind, VHost: vh, Name: name, Fields: amqp.Table{"val": val}}
}

func del(kind Kind, vh, name string) Record {
	return Record{Kind: kind, VHost: vh, Name: name, Delete: true}
}

func open(t *testing.T, l *memLog) (*LogStore, *kv) {
	t.Helper()
	k := newKV()
	s := NewLogStore(l, k, zerolog.New(zerolog.NewTestWriter(t)))
	if err := s.Recover(func([]Record) ([]Record, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	return s, k
}

func propose(t *testing.T, s *LogStore, rec Record) any {
	t.Helper()
	res, err := s.Propose(rec)
	if err != nil {
		t.Fatalf("%s: %v", rec.String(), err)
	}
	return res
}

func TestLogStore_OneLiveRecordPerEntity(t *testing.T) {
	l := newMemLog()
	s, k := open(t, l)
	propose(t, s, put(KindVHost, "", "/", ""))
	propose(t, s, put(KindPolicy, "/", "p", "v1"))
	propose(t, s, put(KindPolicy, "/", "p", "v2"))
	propose(t, s, put(KindPolicy, "/", "p", "v2")) // no change: its record goes
	l.Sync()
	if got := l.live(); got != 2 {
		t.Fatalf("%d live records, want 2 (the vhost and the policy's latest)", got)
	}
	// Restarts with no change leave the log as it is.
	for range 5 {
		l = l.crash()
		s, k = open(t, l)
	}
	if v, _ := k.get(PolicyKey("/", "p")); v != "v2" {
		t.Fatalf("policy %q after restarts", v)
	}
	if got, next := l.live(), l.next; got != 2 || next != 5 {
		t.Fatalf("after restarts: %d live records, next offset %d; want 2 and 5", got, next)
	}
}

// A replaced record whose retirement was not yet durable comes back after a crash; the
// newer record is replayed after it and wins.
func TestLogStore_ReplacedRecordComingBackLoses(t *testing.T) {
	l := newMemLog()
	s, _ := open(t, l)
	propose(t, s, put(KindVHost, "", "/", ""))
	propose(t, s, put(KindUser, "", "u", "old"))
	propose(t, s, put(KindPermission, "/", "u", "perm")) // after the user's first record
	propose(t, s, put(KindUser, "", "u", "new"))
	c := l.crash() // the retirement of "old" was never committed
	if got := c.live(); got != 4 {
		t.Fatalf("%d live records after the crash, want 4", got)
	}
	_, k := open(t, c)
	if v, _ := k.get(UserKey("u")); v != "new" {
		t.Fatalf("user %q, want new", v)
	}
	if _, ok := k.get(PermissionKey("/", "u")); !ok {
		t.Fatal("the permission of a user changed after it was lost")
	}
	c.Sync()
	if got := c.live(); got != 3 {
		t.Fatalf("%d live records after recovery, want 3", got)
	}
}

// An answered delete stays deleted through a crash, with what went with it.
func TestLogStore_DeleteIsDurableWhenAnswered(t *testing.T) {
	l := newMemLog()
	s, _ := open(t, l)
	propose(t, s, put(KindVHost, "", "v", ""))
	propose(t, s, put(KindQueue, "v", "q1", "a"))
	propose(t, s, put(KindQueue, "v", "q2", "a"))
	syncs := l.syncs
	if res := propose(t, s, del(KindVHost, "", "v")); res != true {
		t.Fatalf("delete returned %v", res)
	}
	if l.syncs == syncs {
		t.Fatal("delete answered without syncing its retirements")
	}
	_, k := open(t, l.crash())
	for _, key := range []string{VHostKey("v"), QueueKey("v", "q1"), QueueKey("v", "q2")} {
		if _, ok := k.get(key); ok {
			t.Errorf("%s came back", key)
		}
	}
}

// A record whose Apply fails is retired, durably before the error is answered: replayed
// after a crash, in an order where it could succeed, it would bring back what the client
// was told failed.
func TestLogStore_FailedRecordIsRetired(t *testing.T) {
	l := newMemLog()
	s, _ := open(t, l)
	l.mu.Lock()
	l.hold = true
	l.mu.Unlock()
	errs := make(chan error, 2)
	for i, rec := range []Record{put(KindQueue, "later", "q", "a"), put(KindVHost, "", "later", "")} {
		go func() { _, err := s.Propose(rec); errs <- err }()
		waitHeld(t, l, i+1)
	}
	release(l)
	if err := <-errs; err == nil {
		t.Fatal("no error for a queue of a vhost created after it")
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	_, k := open(t, l.crash())
	if _, ok := k.get(QueueKey("later", "q")); ok {
		t.Fatal("a refused record came back and succeeded")
	}
}

// waitHeld waits until n appends are held by the log.
func waitHeld(t *testing.T, l *memLog, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		l.mu.Lock()
		got := len(l.waiting)
		l.mu.Unlock()
		if got >= n {
			return
		}
	}
	t.Fatalf("%d appends not held", n)
}

// release completes the held appends in order and stops holding.
func release(l *memLog) {
	l.mu.Lock()
	w := l.waiting
	l.waiting, l.hold = nil, false
	l.mu.Unlock()
	for _, f := range w {
		f()
	}
}

// Replay applies by kind (what is referred to first), and in log order within a kind.
func TestLogStore_RecoverOrder(t *testing.T) {
	l := newMemLog()
	// Written in an order a replay in log order could not apply.
	for _, r := range []Record{put(KindBinding, "v", "b", ""), put(KindQueue, "v", "q2", ""), put(KindQueue, "v", "q1", ""),
		put(KindVHost, "", "v", ""), put(KindPolicy, "v", "p", "")} {
		l.Append(r.Encode(), func(uint64, error) {})
	}
	_, k := open(t, l)
	if got := fmt.Sprint(k.order); got != "[v p q2 q1 b]" {
		t.Fatalf("replay order %s", got)
	}
}

// Records an Apply refuses at replay stay (a newer version's kinds, a damaged queue), and
// seed's records are durable before anything is applied.
func TestLogStore_RecoverKeepsRefusedAndSeeds(t *testing.T) {
	l := newMemLog()
	l.Append(Record{Kind: "future", Name: "f"}.encodeForTest(), func(uint64, error) {})
	k := newKV()
	s := NewLogStore(l, k, zerolog.New(zerolog.NewTestWriter(t)))
	var seen []Record
	err := s.Recover(func(held []Record) ([]Record, error) {
		seen = held
		if len(l.data) != 1 {
			t.Errorf("seed called with %d records on disk", len(l.data))
		}
		return []Record{put(KindVHost, "", "/", ""), {Kind: KindInit}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].Kind != "future" {
		t.Fatalf("seed saw %v", seen)
	}
	if _, ok := k.get(VHostKey("/")); !ok {
		t.Fatal("seeded vhost not applied")
	}
	for range 3 {
		l = l.crash()
		open(t, l)
	}
	if got := l.live(); got != 3 {
		t.Fatalf("%d live records, want 3 (the unknown one kept, the seeded ones)", got)
	}
}

// Records are applied in the order they were written, whichever is durable first.
func TestLogStore_AppliesInLogOrder(t *testing.T) {
	l := newMemLog()
	s, k := open(t, l)
	propose(t, s, put(KindVHost, "", "/", ""))
	l.mu.Lock()
	l.hold = true
	l.mu.Unlock()
	var wg sync.WaitGroup
	for i, name := range []string{"first", "second"} {
		wg.Go(func() { propose(t, s, put(KindQueue, "/", name, "")) })
		waitHeld(t, l, i+1)
	}
	l.mu.Lock()
	w := l.waiting
	l.waiting, l.hold = nil, false
	l.mu.Unlock()
	w[1]() // the second is durable first
	time.Sleep(20 * time.Millisecond)
	k.mu.Lock()
	early := slices.Contains(k.order, "second")
	k.mu.Unlock()
	if early {
		t.Fatal("the second record was applied before the first")
	}
	w[0]()
	wg.Wait()
	if got := fmt.Sprint(k.order[len(k.order)-2:]); got != "[first second]" {
		t.Fatalf("applied %s", got)
	}
}

// A record that cannot be written is not applied, and later records still are.
func TestLogStore_AppendFailure(t *testing.T) {
	l := newMemLog()
	s, k := open(t, l)
	propose(t, s, put(KindVHost, "", "/", ""))
	l.failAt = l.next
	if _, err := s.Propose(put(KindQueue, "/", "lost", "")); err == nil {
		t.Fatal("no error for a record that was not written")
	}
	if _, ok := k.get(QueueKey("/", "lost")); ok {
		t.Fatal("a record that was not written was applied")
	}
	propose(t, s, put(KindQueue, "/", "next", ""))
}

// Transient records are applied without being written.
func TestLogStore_TransientNotWritten(t *testing.T) {
	l := newMemLog()
	s, k := open(t, l)
	propose(t, s, put(KindVHost, "", "/", ""))
	rec := put(KindQueue, "/", "tmp", "")
	rec.Transient = true
	propose(t, s, rec)
	if _, ok := k.get(QueueKey("/", "tmp")); !ok {
		t.Fatal("transient record not applied")
	}
	if got := l.live(); got != 1 {
		t.Fatalf("%d live records, want 1", got)
	}
}

func TestRecord_EncodeDecode(t *testing.T) {
	r := Record{Kind: KindBinding, VHost: "/v", Fields: amqp.Table{"s": "x", "d": "q", "de": false, "rk": "k", "a": amqp.Table{"n": int64(1)}}}
	got, err := Decode(r.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Key() != r.Key() || got.Kind != r.Kind || got.VHost != "/v" || got.Delete {
		t.Fatalf("decoded %+v", got)
	}
	// A definition record written before this package (a queue) reads the same.
	old := amqp.AppendTable(nil, amqp.Table{"k": "queue", "v": "/", "n": "jobs", "ad": false, "a": amqp.Table{}})
	q, err := Decode(old)
	if err != nil || q.Kind != KindQueue || q.Name != "jobs" || q.VHost != "/" || q.Key() != QueueKey("/", "jobs") || !q.BoolOr("du", true) {
		t.Fatalf("old record: %+v %v", q, err)
	}
	if _, err := Decode([]byte{0, 0, 0, 0}); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("record without a kind: %v", err)
	}
	// Keys do not collide across the parts of a name.
	if QueueKey("a", "bc") == QueueKey("ab", "c") || BindingKey("/", "x", "q", false, "k", nil) == BindingKey("/", "x", "q", true, "k", nil) {
		t.Fatal("keys collide")
	}
}

func (r Record) encodeForTest() []byte { return r.Encode() }

// A proposal made while the store recovers (a restored queue's timer) waits for the replay.
func TestLogStore_ProposeWaitsForRecover(t *testing.T) {
	l := newMemLog()
	k := newKV()
	s := NewLogStore(l, k, zerolog.New(zerolog.NewTestWriter(t)))
	done := make(chan error, 1)
	go func() { _, err := s.Propose(put(KindQueue, "/", "early", "")); done <- err }()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("proposal applied before Recover: %v", err)
	default:
	}
	if err := s.Recover(func([]Record) ([]Record, error) { return []Record{put(KindVHost, "", "/", "")}, nil }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := k.get(QueueKey("/", "early")); !ok {
		t.Fatal("the early proposal was not applied")
	}
}
