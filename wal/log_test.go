package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tidwal "github.com/tidwall/wal"
)

func TestLog_AppendReplayOrder(t *testing.T) {
	dir := t.TempDir()
	m := openManager(t, testConfig(t, dir))
	l := openLog(t, m, "q")
	const n = 200
	for i := range n {
		buf := payloadFor(i)
		off := l.Append(buf, nil)
		clear(buf) // Append copied it
		if off != uint64(i+1) {
			t.Fatalf("Append %d returned offset %d, want %d", i, off, i+1)
		}
	}
	check := func(l *Log) {
		t.Helper()
		got := replayAll(t, l)
		if len(got) != n {
			t.Fatalf("Replay returned %d entries, want %d", len(got), n)
		}
		for i, e := range got {
			if e.Offset != uint64(i+1) || !bytes.Equal(e.Payload, payloadFor(i)) || e.Delivered {
				t.Fatalf("entry %d = {%d %q %v}, want {%d %q false}", i, e.Offset, e.Payload, e.Delivered, i+1, payloadFor(i))
			}
		}
	}
	check(l) // some records may still be pending: Replay reads them from memory
	syncLog(t, l)
	check(l)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = openManager(t, testConfig(t, dir))
	l = openLog(t, m, "q")
	check(l)
	if got := l.LastOffset(); got != n {
		t.Fatalf("LastOffset after reopen = %d, want %d", got, n)
	}
	if got := appendWait(t, l, []byte("next")); got != n+1 {
		t.Fatalf("first append after reopen got offset %d, want %d", got, n+1)
	}
}

func TestLog_RetireThenReplayReturnsOnlyLive(t *testing.T) {
	dir := t.TempDir()
	m := openManager(t, testConfig(t, dir))
	l := openLog(t, m, "q")
	for i := range 10 {
		l.Append(payloadFor(i), nil)
	}
	l.Retire(2, 4, 6, 8, 10)
	l.Retire(4, 99, 0) // already retired, never assigned: ignored
	syncLog(t, l)
	if got := l.Len(); got != 5 {
		t.Fatalf("Len = %d, want 5", got)
	}
	if _, err := l.Read(4); !errors.Is(err, ErrRetired) {
		t.Fatalf("Read(retired) err = %v, want ErrRetired", err)
	}
	if _, err := l.Read(11); !errors.Is(err, ErrRetired) { // the retirement record itself
		t.Fatalf("Read(bookkeeping record) err = %v, want ErrRetired", err)
	}
	if _, err := l.Read(1000); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read(beyond end) err = %v, want ErrNotFound", err)
	}
	if p, err := l.Read(5); err != nil || !bytes.Equal(p, payloadFor(4)) {
		t.Fatalf("Read(5) = %q, %v", p, err)
	}
	want := []uint64{1, 3, 5, 7, 9}
	offsets := func(es []Entry) []uint64 {
		var o []uint64
		for _, e := range es {
			o = append(o, e.Offset)
		}
		return o
	}
	if got := offsets(replayAll(t, l)); !slices.Equal(got, want) {
		t.Fatalf("Replay offsets %v, want %v", got, want)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = openManager(t, testConfig(t, dir))
	l = openLog(t, m, "q")
	got := replayAll(t, l)
	if o := offsets(got); !slices.Equal(o, want) {
		t.Fatalf("Replay after reopen offsets %v, want %v", o, want)
	}
	for _, e := range got {
		if !bytes.Equal(e.Payload, payloadFor(int(e.Offset-1))) {
			t.Fatalf("offset %d payload %q", e.Offset, e.Payload)
		}
	}
}

func TestLog_DeliveredHints(t *testing.T) {
	dir := t.TempDir()
	m := openManager(t, testConfig(t, dir))
	l := openLog(t, m, "q")
	for i := range 6 {
		appendWait(t, l, payloadFor(i))
	}
	l.MarkDelivered(2, 4, 5)
	l.MarkDelivered(2) // again: no new record needed
	l.Retire(4)
	l.MarkDelivered(4) // retired: ignored
	syncLog(t, l)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = openManager(t, testConfig(t, dir))
	l = openLog(t, m, "q")
	var got []string
	for _, e := range replayAll(t, l) {
		got = append(got, fmt.Sprintf("%d:%v", e.Offset, e.Delivered))
	}
	want := []string{"1:false", "2:true", "3:false", "5:true", "6:false"}
	if !slices.Equal(got, want) {
		t.Fatalf("Replay = %v, want %v", got, want)
	}
}

func TestLog_ReopenAfterClose(t *testing.T) {
	dir := t.TempDir()
	m := openManager(t, testConfig(t, dir))
	l := openLog(t, m, "a")
	appendWait(t, l, []byte("one"))
	if l2 := openLog(t, m, "a"); l2 != l {
		t.Fatal("Log returned a second instance of an open log")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var doneErr error
	if off := l.Append([]byte("late"), func(_ uint64, err error) { doneErr = err }); off != 0 || !errors.Is(doneErr, ErrClosed) {
		t.Fatalf("Append after Close = %d, %v; want 0, ErrClosed", off, doneErr)
	}
	if _, err := l.Read(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	l = openLog(t, m, "a")
	if got := appendWait(t, l, []byte("two")); got != 2 {
		t.Fatalf("offset after reopen = %d, want 2", got)
	}
	openLog(t, m, "b")
	names, err := m.Names()
	if err != nil || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("Names = %v, %v", names, err)
	}
	if got := replayAll(t, l); len(got) != 2 || string(got[1].Payload) != "two" {
		t.Fatalf("Replay = %v", got)
	}
}

func TestManager_CloseFlushesPendingCallbacks(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SyncInterval = time.Hour // nothing commits until Close
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := openLog(t, m, "q")
	var ok atomic.Int32
	for i := range 100 {
		l.Append(payloadFor(i), func(_ uint64, err error) {
			if err == nil {
				ok.Add(1)
			}
		})
	}
	// Not durable yet, but readable.
	if p, err := l.Read(7); err != nil || !bytes.Equal(p, payloadFor(6)) {
		t.Fatalf("Read(pending) = %q, %v", p, err)
	}
	if got := l.SyncedOffset(); got != 0 {
		t.Fatalf("SyncedOffset = %d before any commit", got)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ok.Load(); got != 100 {
		t.Fatalf("%d of 100 done callbacks ran with nil error", got)
	}
	if _, err := m.Log("q"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Log after Close: %v", err)
	}
}

func TestManager_SyncIntervalGathersAppends(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SyncInterval = 30 * time.Millisecond
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		l.Append(payloadFor(i), func(uint64, error) { wg.Done() })
	}
	wg.Wait()
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("commit after %v, want it to wait SyncInterval", d)
	}
	if got := m.fsyncs.Load(); got != 1 {
		t.Fatalf("%d syncs for 50 appends within one SyncInterval, want 1", got)
	}
}

func TestManager_GroupCommit(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.NoSync = false // real fsyncs
	const logs, writers, perWriter = 8, 32, 100
	var mu sync.Mutex
	syncedTo := map[*Log]uint64{} // the last offset of each log covered by a completed sync
	cfg.testSyncHook = func(l *Log, last uint64) {
		time.Sleep(200 * time.Microsecond) // a disk at least this slow makes batching certain
		mu.Lock()
		syncedTo[l] = max(syncedTo[l], last)
		mu.Unlock()
	}
	m := openManager(t, cfg)
	ls := make([]*Log, logs)
	for i := range ls {
		ls[i] = openLog(t, m, fmt.Sprintf("q%d", i))
	}
	var (
		wg       sync.WaitGroup
		early    atomic.Int32
		failed   atomic.Int32
		doneSeen sync.Map // log/offset -> true, to catch a callback running twice
		dups     atomic.Int32
	)
	for w := range writers {
		wg.Go(func() {
			l := ls[w%logs]
			var inner sync.WaitGroup
			window := make(chan struct{}, 8) // like a publisher with at most 8 unconfirmed messages
			for i := range perWriter {
				inner.Add(1)
				window <- struct{}{}
				l.Append(payloadFor(i), func(off uint64, err error) {
					defer func() { <-window; inner.Done() }()
					if err != nil {
						failed.Add(1)
					}
					mu.Lock()
					if off > syncedTo[l] {
						early.Add(1)
					}
					mu.Unlock()
					if _, loaded := doneSeen.LoadOrStore(fmt.Sprint(l.name, "/", off), true); loaded {
						dups.Add(1)
					}
				})
			}
			inner.Wait()
		})
	}
	wg.Wait()
	appends := int64(writers * perWriter)
	syncs := m.fsyncs.Load()
	t.Logf("%d appends over %d logs, %d log syncs", appends, logs, syncs)
	if failed.Load() != 0 || early.Load() != 0 || dups.Load() != 0 {
		t.Fatalf("callbacks: %d failed, %d ran before their sync, %d ran twice", failed.Load(), early.Load(), dups.Load())
	}
	if syncs*5 > appends {
		t.Fatalf("%d syncs for %d appends: group commit is not batching", syncs, appends)
	}
	for _, l := range ls {
		if got, want := len(replayAll(t, l)), writers/logs*perWriter; got != want {
			t.Fatalf("%s holds %d records, want %d", l.name, got, want)
		}
	}
}

func TestLog_ReclaimsSpaceWithoutBacklog(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SegmentSize = 4 << 10
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	payload := bytes.Repeat([]byte("p"), 100)
	var maxSize int64
	for i := range 5000 {
		off := l.Append(payload, nil)
		l.Retire(off)
		if i%10 == 9 {
			syncLog(t, l)
			maxSize = max(maxSize, l.Size())
		}
	}
	syncLog(t, l)
	checkMirror(t, l)
	segs := segmentFiles(t, l.dir)
	if len(segs) > 2 {
		t.Fatalf("%d segment files after publish+consume, want <= 2: %v", len(segs), segs)
	}
	t.Logf("max size %d, final %d, segments %v", maxSize, l.Size(), segs)
	if maxSize > (reclaimFactor+2)*4<<10 {
		t.Fatalf("log grew to %d bytes with no backlog", maxSize)
	}
	last := l.LastOffset()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = openManager(t, cfg)
	l = openLog(t, m, "q")
	if got := replayAll(t, l); len(got) != 0 {
		t.Fatalf("Replay after full retirement returned %d entries", len(got))
	}
	if got := appendWait(t, l, payload); got != last+1 {
		t.Fatalf("offset after reopen = %d, want %d (never reused)", got, last+1)
	}
}

func TestLog_ReclaimsSpaceAsBacklogDrains(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SegmentSize = 4 << 10
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	payload := bytes.Repeat([]byte("b"), 200)
	const n = 2000
	for range n {
		l.Append(payload, nil)
	}
	syncLog(t, l)
	checkMirror(t, l)
	full := l.Size()
	if full < n*200 {
		t.Fatalf("Size = %d with %d records of 200 bytes", full, n)
	}
	// Consume in order, with a few stragglers that are acked last.
	for off := uint64(1); off <= n; off++ {
		if off%500 != 0 {
			l.Retire(off)
		}
		if off%50 == 0 {
			syncLog(t, l)
		}
	}
	syncLog(t, l)
	checkMirror(t, l)
	if got := l.FirstOffset(); got > 500 {
		t.Fatalf("FirstOffset = %d, but offset 500 is still live", got)
	}
	if p, err := l.Read(500); err != nil || !bytes.Equal(p, payload) {
		t.Fatalf("Read(500) = %v", err)
	}
	l.Retire(500, 1000, 1500, 2000)
	newest := l.Append(payload, nil) // a new live record at the end
	syncLog(t, l)
	checkMirror(t, l)
	if segs := segmentFiles(t, l.dir); len(segs) > 2 {
		t.Fatalf("%d segment files after draining, want <= 2", len(segs))
	}
	if _, err := l.ReadRaw(1, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadRaw(reclaimed) err = %v, want ErrNotFound", err)
	}
	if got := replayAll(t, l); len(got) != 1 || got[0].Offset != newest {
		t.Fatalf("Replay returned %d entries, want only offset %d", len(got), newest)
	}
}

func TestLog_SegmentSizeChangeKeepsMirror(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.SegmentSize = 8 << 10
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	for i := range 300 {
		l.Append(payloadFor(i), nil)
	}
	syncLog(t, l)
	checkMirror(t, l)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.SegmentSize = 1 << 10 // the tail is now over the limit: tidwall cycles before the next batch
	m = openManager(t, cfg)
	l = openLog(t, m, "q")
	for i := range 300 {
		l.Append(payloadFor(i), nil)
		if i%7 == 0 {
			syncLog(t, l)
			checkMirror(t, l)
		}
	}
	syncLog(t, l)
	checkMirror(t, l)
	if got := len(replayAll(t, l)); got != 600 {
		t.Fatalf("Replay returned %d, want 600", got)
	}
}

func TestLog_ReadRawAndOnAppend(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	var mu sync.Mutex
	var streamed []Record
	cfg.OnAppend = func(name string, rec Record) {
		if name != "q" {
			t.Errorf("OnAppend for log %q", name)
		}
		mu.Lock()
		streamed = append(streamed, Record{Offset: rec.Offset, Kind: rec.Kind, Body: bytes.Clone(rec.Body)})
		mu.Unlock()
	}
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	appendWait(t, l, []byte("a"))
	appendWait(t, l, []byte("b"))
	l.MarkDelivered(1)
	l.Retire(2)
	syncLog(t, l)
	recs, err := l.ReadRaw(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		s := fmt.Sprintf("%d:%v:", r.Offset, r.Kind)
		if r.Kind == KindData {
			s += string(r.Body)
		} else {
			offs, err := r.Offsets()
			if err != nil {
				t.Fatal(err)
			}
			s += fmt.Sprint(offs)
		}
		got = append(got, s)
	}
	want := []string{"1:data:a", "2:data:b", "3:delivered:[1]", "4:retire:[2]"}
	if !slices.Equal(got, want) {
		t.Fatalf("ReadRaw = %v, want %v", got, want)
	}
	mu.Lock()
	if fmt.Sprint(streamed) != fmt.Sprint(recs) {
		t.Fatalf("OnAppend saw %v, ReadRaw %v", streamed, recs)
	}
	mu.Unlock()
	if recs, err := l.ReadRaw(3, 1); err != nil || len(recs) != 1 || recs[0].Offset != 3 {
		t.Fatalf("ReadRaw(3, 1) = %v, %v", recs, err)
	}
	if recs, err := l.ReadRaw(5, 10); err != nil || len(recs) != 0 {
		t.Fatalf("ReadRaw past the end = %v, %v", recs, err)
	}
}

// xorCipher is a stand-in for real encryption: it only proves that the seam is used.
type xorCipher struct{}

func (xorCipher) Seal(dst, p []byte, off uint64) []byte {
	for _, c := range p {
		dst = append(dst, c^byte(off)^0x5a)
	}
	return append(dst, 'S') // sealed output differs in length, as with an AEAD tag
}

func (xorCipher) Open(dst, c []byte, off uint64) ([]byte, error) {
	if len(c) == 0 || c[len(c)-1] != 'S' {
		return nil, errors.New("not sealed")
	}
	for _, b := range c[:len(c)-1] {
		dst = append(dst, b^byte(off)^0x5a)
	}
	return dst, nil
}

func TestLog_CipherSealsPayloadsAtRest(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Cipher = xorCipher{}
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	secret := []byte("top secret payload")
	appendWait(t, l, secret)
	appendWait(t, l, []byte("second"))
	if p, err := l.Read(1); err != nil || !bytes.Equal(p, secret) {
		t.Fatalf("Read = %q, %v", p, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "q", segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, secret) {
		t.Fatal("plaintext payload found on disk")
	}
	m = openManager(t, cfg)
	l = openLog(t, m, "q")
	got := replayAll(t, l)
	if len(got) != 2 || !bytes.Equal(got[0].Payload, secret) || string(got[1].Payload) != "second" {
		t.Fatalf("Replay = %v", got)
	}
	recs, err := l.ReadRaw(1, 1)
	if err != nil || bytes.Equal(recs[0].Body, secret) {
		t.Fatalf("ReadRaw returned %q, %v; want the sealed body", recs[0].Body, err)
	}
}

func TestManager_RemoveAndNames(t *testing.T) {
	dir := t.TempDir()
	m := openManager(t, testConfig(t, dir))
	for _, n := range []string{"c", "a", "b"} {
		appendWait(t, openLog(t, m, n), []byte(n))
	}
	if err := m.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("never-existed"); err != nil {
		t.Fatal(err)
	}
	names, err := m.Names()
	if err != nil || !slices.Equal(names, []string{"a", "c"}) {
		t.Fatalf("Names = %v, %v", names, err)
	}
	l := openLog(t, m, "b") // a new, empty log
	if got := l.LastOffset(); got != 0 {
		t.Fatalf("recreated log LastOffset = %d", got)
	}
	for _, bad := range []string{"", ".", "..", "a/b", `a\b`, "x\x00"} {
		if _, err := m.Log(bad); !errors.Is(err, ErrInvalidName) {
			t.Fatalf("Log(%q) err = %v, want ErrInvalidName", bad, err)
		}
	}
}

func TestLog_CorruptionFoundByReadTakesLogOutOfService(t *testing.T) {
	dir := t.TempDir()
	lb := &logBuf{}
	cfg := testConfig(t, dir)
	cfg.Logger = testLogger(t, lb)
	cfg.SegmentSize = 1 << 10
	m := openManager(t, cfg)
	l := openLog(t, m, "victim")
	other := openLog(t, m, "other")
	for i := range 300 { // several segments: tidwall caches only the one it cycled last
		l.Append(payloadFor(i), nil)
	}
	syncLog(t, l)
	// Flip a payload byte of offset 2, in the first segment, which tidwall has not loaded.
	path := filepath.Join(dir, "victim", segmentName(1))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, payloadFor(1))
	data[i+3] ^= 0xff
	mustWriteFile(t, path, data)

	if _, err := l.Read(2); !isCorrupt(err, "victim") {
		t.Fatalf("Read of damaged record err = %v, want ErrCorrupt", err)
	}
	if !isCorrupt(l.Err(), "victim") {
		t.Fatalf("Err() = %v", l.Err())
	}
	if _, err := m.Log("victim"); !isCorrupt(err, "victim") {
		t.Fatalf("Log(victim) err = %v", err)
	}
	var doneErr error
	l.Append([]byte("x"), func(_ uint64, err error) { doneErr = err })
	if !errors.Is(doneErr, ErrCorrupt) {
		t.Fatalf("Append on an out-of-service log: done err = %v", doneErr)
	}
	if !strings.Contains(lb.String(), `"level":"error"`) {
		t.Fatalf("no error logged:\n%s", lb.String())
	}
	appendWait(t, other, []byte("still fine"))
}

// TestLog_ConcurrentUse runs appends, retirements, reads, raw tailing and reclamation at the same
// time on one log with small segments; run it with -race.
func TestLog_ConcurrentUse(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SegmentSize = 2 << 10
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	var (
		payloads sync.Map // offset -> payload
		stop     atomic.Bool
		wg       sync.WaitGroup
		reads    atomic.Int64
	)
	fail := func(format string, args ...any) {
		t.Errorf(format, args...)
		stop.Store(true)
	}
	for w := range 3 {
		wg.Go(func() {
			var mine []uint64
			for i := 0; !stop.Load(); i++ {
				p := []byte(fmt.Sprintf("writer-%d-%d", w, i))
				off := l.Append(p, nil)
				payloads.Store(off, p)
				mine = append(mine, off)
				if len(mine) > 20 { // a consumer 20 messages behind
					l.MarkDelivered(mine[0])
					l.Retire(mine[0])
					mine = mine[1:]
				}
				if i%50 == 0 {
					if err := l.Sync(); err != nil {
						fail("Sync: %v", err)
					}
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				last := l.LastOffset()
				if last == 0 {
					continue
				}
				for off := max(l.FirstOffset(), last-40); off <= last; off++ {
					got, err := l.Read(off)
					switch {
					case errors.Is(err, ErrRetired):
					case err != nil:
						fail("Read(%d): %v", off, err)
						return
					default:
						if want, ok := payloads.Load(off); ok && !bytes.Equal(got, want.([]byte)) {
							fail("Read(%d) = %q, want %q", off, got, want)
							return
						}
						reads.Add(1)
					}
				}
			}
		})
	}
	wg.Go(func() { // a follower tailing by offset
		next := uint64(1)
		for !stop.Load() {
			recs, err := l.ReadRaw(next, 100)
			if errors.Is(err, ErrNotFound) {
				next = l.FirstOffset() // fell behind reclamation: a real follower would fetch a snapshot
				continue
			}
			if err != nil {
				fail("ReadRaw(%d): %v", next, err)
				return
			}
			for _, r := range recs {
				if r.Offset != next {
					fail("ReadRaw gave offset %d, want %d", r.Offset, next)
					return
				}
				next++
			}
		}
	})
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	syncLog(t, l)
	checkMirror(t, l)
	t.Logf("%d offsets, %d reads, %d bytes in %d segments", l.LastOffset(), reads.Load(), l.Size(), len(l.segs))
	if segs := len(segmentFiles(t, l.dir)); segs > 2*reclaimFactor+2 {
		t.Fatalf("%d segments with a backlog of 60 small messages", segs)
	}
}

func TestLog_EmptyPayload(t *testing.T) {
	m := openManager(t, testConfig(t, t.TempDir()))
	l := openLog(t, m, "q")
	off := appendWait(t, l, nil)
	if p, err := l.Read(off); err != nil || p == nil || len(p) != 0 {
		t.Fatalf("Read = %v (nil: %v), %v", p, p == nil, err)
	}
}

// A large record's copies (the log's pending buffer, the manager's batch) are not kept once it
// is written: an idle log that took one 8 MiB record holds no 8 MiB buffer after its commit,
// and the record still reads back.
func TestLog_LargeRecordBuffersNotKept(t *testing.T) {
	m := openManager(t, testConfig(t, t.TempDir()))
	l := openLog(t, m, "big")
	rec := bytes.Repeat([]byte("0123456789abcdef"), (8<<20)/16)
	off := l.Append(rec, nil)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	kept := cap(l.inflight.buf) + cap(l.cur.buf)
	l.mu.Unlock()
	if kept > maxKeptBuf {
		t.Fatalf("the log keeps %d bytes of buffers after writing a large record", kept)
	}
	if !reflect.DeepEqual(m.batch, tidwal.Batch{}) { // Sync returned after the commit that wrote it
		t.Fatal("the manager keeps the batch that carried a large record")
	}
	got, err := l.Read(off)
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("read back: %v (%d bytes)", err, len(got))
	}
}

// KeepFrom holds reclamation back to its floor (a replicated log's leader keeps what a lagging
// follower still needs); the floor lifted, the space goes.
func TestLog_KeepFromHoldsReclamation(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SegmentSize = 4 << 10
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	l.KeepFrom(100)
	payload := bytes.Repeat([]byte("p"), 100)
	for i := range 3000 {
		off := l.Append(payload, nil)
		l.Retire(off)
		if i%10 == 9 {
			syncLog(t, l)
		}
	}
	syncLog(t, l)
	if f := l.FirstOffset(); f > 100 {
		t.Fatalf("first offset %d: reclaimed past the floor 100", f)
	}
	recs, err := l.ReadRaw(100, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("record at the floor: %v %v", recs, err)
	}
	l.KeepFrom(0)
	l.Retire(l.Append(payload, nil))
	syncLog(t, l)
	if f := l.FirstOffset(); f <= 100 {
		t.Fatalf("first offset %d after the floor was lifted: nothing reclaimed", f)
	}
}
