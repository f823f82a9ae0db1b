package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func errNoSpace() error { return &fs.PathError{Op: "write", Path: "segment", Err: syscall.ENOSPC} }

// waitErr waits for one answer from a done callback.
func waitErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("done never ran")
		return nil
	}
}

// A write that hits a full disk does not take the log out of service: the appends of that
// commit fail (and the later ones, while the disk stays full), an append nobody waits for is
// kept in memory, the log retries, and once space is back appends succeed again at the next
// offsets. After a restart the log holds exactly the acknowledged records and the kept one; a
// follower copies it, void records included.
func TestFault_FullDiskRefusesThenRecovers(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	var mu sync.Mutex
	var events []error
	cfg := Config{Dir: filepath.Join(dir, "leader"), SegmentSize: 4096, Logger: testLogger(t, nil),
		FailWrite: func(name string) error {
			if full.Load() {
				return errNoSpace()
			}
			return nil
		},
		OnFault: func(name string, err error) {
			mu.Lock()
			events = append(events, err)
			mu.Unlock()
		},
	}
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	want := map[uint64][]byte{}
	for i := range 40 { // crosses segments
		want[appendWait(t, l, payloadFor(i))] = payloadFor(i)
	}
	if l.LastOffset() != 40 {
		t.Fatalf("LastOffset %d, want 40", l.LastOffset())
	}

	full.Store(true)
	errs := make(chan error, 16)
	var failed []uint64
	for i := 40; i < 45; i++ {
		failed = append(failed, l.Append(payloadFor(i), func(_ uint64, err error) { errs <- err }))
	}
	kept := l.Append(payloadFor(99), nil) // nobody to tell: kept and written later
	want[kept] = payloadFor(99)
	for range failed {
		if err := waitErr(t, errs); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("append during the fault: %v, want ENOSPC", err)
		}
	}
	if !slices.Equal(failed, []uint64{41, 42, 43, 44, 45}) || kept != 46 {
		t.Fatalf("offsets %v and %d, want 41..45 and 46", failed, kept)
	}
	if err := l.Fault(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Fault() = %v, want ENOSPC", err)
	}
	if l.Err() != nil || m.WriteFaults() != 1 {
		t.Fatalf("Err() = %v, WriteFaults() = %d: want in service, one fault", l.Err(), m.WriteFaults())
	}
	if _, err := m.Log("q"); err != nil {
		t.Fatalf("Log(q) during the fault: %v", err)
	}
	for _, off := range failed {
		if _, err := l.Read(off); !errors.Is(err, ErrRetired) {
			t.Fatalf("Read(%d) of a failed append: %v, want ErrRetired", off, err)
		}
	}
	if got, err := l.Read(kept); err != nil || !bytes.Equal(got, payloadFor(99)) {
		t.Fatalf("Read(kept) = %q, %v", got, err)
	}
	// While the disk stays full, later appends and syncs fail at the next attempt.
	late := l.Append(payloadFor(45), func(_ uint64, err error) { errs <- err })
	if err := waitErr(t, errs); !errors.Is(err, syscall.ENOSPC) || late != 47 {
		t.Fatalf("append at %d while still full: %v", late, err)
	}
	if err := l.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync while full: %v", err)
	}
	mu.Lock()
	if len(events) != 1 || !errors.Is(events[0], syscall.ENOSPC) {
		t.Fatalf("OnFault events %v, want one ENOSPC", events)
	}
	mu.Unlock()

	full.Store(false)
	for i := 46; i < 60; i++ {
		off := appendWait(t, l, payloadFor(i))
		if i == 46 && off != 48 {
			t.Fatalf("first append after the fault at %d, want 48", off)
		}
		want[off] = payloadFor(i)
	}
	if l.Fault() != nil || m.WriteFaults() != 0 {
		t.Fatalf("after the fault: Fault() = %v, WriteFaults() = %d", l.Fault(), m.WriteFaults())
	}
	mu.Lock()
	if len(events) != 2 || events[1] != nil {
		t.Fatalf("OnFault events %v, want ENOSPC then nil", events)
	}
	mu.Unlock()
	checkMirror(t, l)
	checkEntries(t, "before the restart", replayAll(t, l), want)

	m.Close()
	m = openManager(t, cfg)
	l = openLog(t, m, "q")
	checkEntries(t, "after the restart", replayAll(t, l), want)
	if l.LastOffset() != 61 {
		t.Fatalf("LastOffset after the restart %d, want 61", l.LastOffset())
	}

	follower := openLog(t, openManager(t, testConfig(t, filepath.Join(dir, "follower"))), "q")
	catchUp(t, l, follower)
	checkEntries(t, "the follower", replayAll(t, follower), want)
}

// checkEntries asserts that entries are exactly want, in offset order.
func checkEntries(t *testing.T, what string, got []Entry, want map[uint64][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d live records, want %d", what, len(got), len(want))
	}
	for i, e := range got {
		if i > 0 && e.Offset <= got[i-1].Offset {
			t.Fatalf("%s: offset %d after %d", what, e.Offset, got[i-1].Offset)
		}
		if w, ok := want[e.Offset]; !ok || !bytes.Equal(w, e.Payload) {
			t.Fatalf("%s: offset %d holds %q, want %q", what, e.Offset, e.Payload, w)
		}
	}
}

// A failed fsync with EIO and a cut back that fails at first (the truncate itself hits the full
// disk) leave the log in service as well; it cuts back at its next attempt.
func TestFault_SyncErrorAndFailedCut(t *testing.T) {
	var failSync, failCut atomic.Int32
	cfg := Config{Dir: t.TempDir(), SegmentSize: 2048, Logger: testLogger(t, nil)}
	cfg.testRetry = time.Millisecond
	cfg.testHook = func(l *Log, point string) error {
		switch {
		case point == "sync" && failSync.Add(-1) >= 0:
			return &fs.PathError{Op: "sync", Path: "segment", Err: syscall.EIO}
		case point == "cut" && failCut.Add(-1) >= 0:
			return &fs.PathError{Op: "truncate", Path: "segment", Err: syscall.ENOSPC}
		}
		return nil
	}
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	want := map[uint64][]byte{}
	for i := range 10 {
		want[appendWait(t, l, payloadFor(i))] = payloadFor(i)
	}
	failSync.Store(1)
	failCut.Store(2)
	errs := make(chan error, 1)
	l.Append(payloadFor(10), func(_ uint64, err error) { errs <- err })
	if err := waitErr(t, errs); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with a failed sync: %v, want EIO", err)
	}
	// The cut back after the failed sync fails, and so does the first retry's; the next
	// retry's works, and its write.
	for deadline := time.Now().Add(10 * time.Second); l.Fault() != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still in a fault: %v", l.Fault())
		}
	}
	if failCut.Load() >= 0 || l.Err() != nil {
		t.Fatalf("cut failures left %d, Err() = %v", failCut.Load()+1, l.Err())
	}
	for i := 11; i < 40; i++ {
		want[appendWait(t, l, payloadFor(i))] = payloadFor(i)
	}
	checkMirror(t, l)
	m.Close()
	checkEntries(t, "after the restart", replayAll(t, openLog(t, openManager(t, cfg), "q")), want)
}

// An error that does not pass (here EROFS) still takes the log out of service.
func TestFault_OtherErrorsTakeTheLogOutOfService(t *testing.T) {
	var fail atomic.Bool
	cfg := testConfig(t, t.TempDir())
	cfg.FailWrite = func(string) error {
		if fail.Load() {
			return &fs.PathError{Op: "write", Path: "segment", Err: syscall.EROFS}
		}
		return nil
	}
	l := openLog(t, openManager(t, cfg), "q")
	appendWait(t, l, payloadFor(0))
	fail.Store(true)
	errs := make(chan error, 1)
	l.Append(payloadFor(1), func(_ uint64, err error) { errs <- err })
	if err := waitErr(t, errs); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("append: %v, want EROFS", err)
	}
	if err := l.Err(); !errors.Is(err, syscall.EROFS) || l.Fault() != nil {
		t.Fatalf("Err() = %v, Fault() = %v: want out of service", err, l.Fault())
	}
}

// crashImage is a copy of a log's folder taken at some point (what a crash there could leave,
// if everything written had reached the device), with what the appenders knew then.
type crashImage struct {
	point     string
	dir       string
	acked     map[uint64]bool // done ran with nil
	failed    map[uint64]bool // done ran with an error, after the files were cut back
	uncertain map[uint64]bool // done ran with an error while the cut back had failed
	retired   map[uint64]bool // Retire called
	cutTo     int64           // the last file holds at least this many acknowledged bytes
}

// Writes fail at random points (before anything is written, after a partial write, at fsync,
// and the cut back itself), with concurrent appends (with and without done), retirements and
// delivery hints. At every step of the commit and of the cut back, the log's folder is copied,
// as a crash there could leave it; the copies of a partial write are also cut at random byte
// positions (a crash that kept only part of it). Every copy opens without damage and holds
// every acknowledged record (unless retired), no record whose append was told it failed, and
// each record at the offset it was given. At the end, once writes work again, the log holds
// exactly the acknowledged and kept records.
func TestFault_CrashAtAnyPointKeepsExactlyTheAcknowledged(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WAL_FAULT_SEED"); s != "" { // replay a failed run
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (WAL_FAULT_SEED replays it)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	hrng := rand.New(rand.NewPCG(seed, 2)) // the hook's (commit goroutine)
	base := t.TempDir()
	var (
		mu       sync.Mutex
		payloads = map[uint64][]byte{}
		acked    = map[uint64]bool{}
		failed   = map[uint64]bool{}
		unsure   = map[uint64]bool{}
		retired  = map[uint64]bool{}
		noDone   = map[uint64]bool{}
		images   []crashImage
		full     atomic.Bool
		log      *Log
	)
	const maxImages = 400
	snapshot := func(l *Log, point string, cutTo int64) {
		if len(images) >= maxImages {
			return
		}
		dst := filepath.Join(base, "images", fmt.Sprint(len(images)), "q")
		if err := os.MkdirAll(dst, 0o750); err != nil {
			t.Error(err)
			return
		}
		des, _ := os.ReadDir(l.dir)
		for _, de := range des {
			b, err := os.ReadFile(filepath.Join(l.dir, de.Name()))
			if err == nil {
				err = os.WriteFile(filepath.Join(dst, de.Name()), b, 0o640)
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
		images = append(images, crashImage{point: point, dir: filepath.Dir(dst), acked: cloneSet(acked),
			failed: cloneSet(failed), uncertain: cloneSet(unsure), retired: cloneSet(retired), cutTo: cutTo})
	}
	cfg := Config{Dir: filepath.Join(base, "wal"), SegmentSize: 2048, Logger: testLogger(t, nil)}
	cfg.testRetry = time.Millisecond
	cfg.testHook = func(l *Log, point string) error {
		mu.Lock()
		defer mu.Unlock()
		var err error
		if full.Load() {
			switch r := hrng.IntN(10); {
			case point == "write" && r < 3:
				err = errNoSpace()
			case point == "written" && r < 6:
				// A partial write: cut the newest file somewhere inside what this write added.
				segs, _, lerr := listSegments(l.dir, false)
				if lerr == nil && len(segs) > 0 {
					last := segs[len(segs)-1]
					low := int64(0)
					if last.start == l.segs[len(l.segs)-1].start {
						low = l.segs[len(l.segs)-1].size
					}
					if last.size > low {
						cut := low + hrng.Int64N(last.size-low)
						_ = os.Truncate(filepath.Join(l.dir, segmentName(last.start)), cut)
					}
				}
				err = errNoSpace()
			case point == "sync" && r < 5:
				err = &fs.PathError{Op: "sync", Path: "segment", Err: syscall.EIO}
			case point == "cut" && r < 2:
				err = errNoSpace()
			}
		}
		var cutTo int64
		if point == "written" || point == "write" {
			cutTo = l.pre.tail
			if segs, _, _ := listSegments(l.dir, false); len(segs) > 0 && segs[len(segs)-1].start != l.segs[len(l.segs)-1].start {
				cutTo = 0 // the newest file is a new segment of this write
			}
		}
		snapshot(l, point, cutTo)
		return err
	}
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	log = l

	var wg sync.WaitGroup
	var id int
	for round := range 45 {
		full.Store(round%3 != 0 && rng.IntN(2) == 0)
		n := 1 + rng.IntN(30)
		for range n {
			id++
			p := fmt.Appendf(nil, "rec-%d-%s", id, bytes.Repeat([]byte{'x'}, rng.IntN(200)))
			if rng.IntN(4) == 0 {
				off := l.Append(p, nil)
				mu.Lock()
				payloads[off], noDone[off] = p, true
				mu.Unlock()
			} else {
				wg.Add(1)
				off := l.Append(p, func(off uint64, err error) {
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						acked[off] = true
					case log.cutDue: // the cut back had failed: the record may come back
						unsure[off] = true
					default:
						failed[off] = true
						if hrng.IntN(8) == 0 {
							snapshot(log, "failed done", 0)
						}
					}
					wg.Done()
				})
				mu.Lock()
				payloads[off] = p
				mu.Unlock()
			}
		}
		mu.Lock()
		var ret, dlv []uint64
		for off := range acked {
			if !retired[off] && rng.IntN(6) == 0 {
				ret = append(ret, off)
				retired[off] = true
			} else if rng.IntN(6) == 0 {
				dlv = append(dlv, off)
			}
		}
		mu.Unlock()
		l.MarkDelivered(dlv...)
		l.Retire(ret...)
		if rng.IntN(3) == 0 {
			full.Store(false)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: appends unanswered", round)
		}
	}
	full.Store(false)
	for deadline := time.Now().Add(10 * time.Second); l.Sync() != nil; { // the last retry writes what is left
		if time.Now().After(deadline) {
			t.Fatalf("writes do not work again: Fault() = %v, Err() = %v", l.Fault(), l.Err())
		}
	}
	if l.Fault() != nil || l.Err() != nil {
		t.Fatalf("after the faults: Fault() = %v, Err() = %v", l.Fault(), l.Err())
	}
	checkMirror(t, l)
	m.Close()

	mu.Lock()
	defer mu.Unlock()
	if len(failed) == 0 || len(noDone) == 0 {
		t.Fatalf("the run failed %d appends and kept %d: too few faults to test", len(failed), len(noDone))
	}
	want := map[uint64][]byte{}
	for off, p := range payloads {
		if (acked[off] || noDone[off]) && !retired[off] {
			want[off] = p
		}
	}
	l = openLog(t, openManager(t, cfg), "q")
	checkEntries(t, "after the restart", replayAll(t, l), want)

	points := map[string]int{}
	variants := 0
	for i, im := range images {
		points[im.point]++
		checkImage(t, fmt.Sprintf("image %d (%s)", i, im.point), im, payloads, -1)
		if im.cutTo >= 0 && (im.point == "written" || im.point == "write") {
			segs, _, _ := listSegments(filepath.Join(im.dir, "q"), false)
			if len(segs) == 0 {
				continue
			}
			last := segs[len(segs)-1]
			for range 3 {
				if last.size > im.cutTo {
					variants++
					checkImage(t, fmt.Sprintf("image %d (%s) torn", i, im.point), im, payloads, im.cutTo+rng.Int64N(last.size-im.cutTo))
				}
			}
		}
	}
	t.Logf("%d images %v, %d torn variants; %d acknowledged, %d failed, %d uncertain, %d kept, %d retired",
		len(images), points, variants, len(acked), len(failed), len(unsure), len(noDone), len(retired))
}

// checkImage opens a copy of a crash image (with its newest file cut to cut bytes, unless
// negative) and checks it.
func checkImage(t *testing.T, what string, im crashImage, payloads map[uint64][]byte, cut int64) {
	t.Helper()
	dir := t.TempDir()
	des, _ := os.ReadDir(filepath.Join(im.dir, "q"))
	var newest string
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(im.dir, "q", de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		mustWriteFile(t, filepath.Join(dir, "q", de.Name()), b)
		newest = max(newest, de.Name())
	}
	if cut >= 0 {
		if err := os.Truncate(filepath.Join(dir, "q", newest), cut); err != nil {
			t.Fatal(err)
		}
	}
	m, err := Open(Config{Dir: dir, NoSync: true, Logger: testLogger(t, nil).Level(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.Log("q")
	if err != nil {
		t.Fatalf("%s: open: %v", what, err)
	}
	live := map[uint64]bool{}
	err = l.Replay(func(e Entry) error {
		if p, ok := payloads[e.Offset]; !ok || !bytes.Equal(p, e.Payload) {
			return fmt.Errorf("offset %d holds %q, want %q", e.Offset, e.Payload, p)
		}
		if im.failed[e.Offset] {
			return fmt.Errorf("offset %d is back, but its append was told it failed", e.Offset)
		}
		live[e.Offset] = true
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for off := range im.acked {
		if !live[off] && !im.retired[off] {
			t.Fatalf("%s: acknowledged offset %d lost", what, off)
		}
	}
}

func cloneSet(s map[uint64]bool) map[uint64]bool {
	c := make(map[uint64]bool, len(s))
	for k, v := range s {
		c[k] = v
	}
	return c
}

// The first write that works after a fault ends it, also when it carries a large record (whose
// buffer the log lets go of at once).
func TestFault_EndsWithALargeRecord(t *testing.T) {
	var full atomic.Bool
	cfg := testConfig(t, t.TempDir())
	cfg.testRetry = time.Millisecond
	cfg.FailWrite = func(string) error {
		if full.Load() {
			return errNoSpace()
		}
		return nil
	}
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	full.Store(true)
	errs := make(chan error, 1)
	l.Append(payloadFor(0), func(_ uint64, err error) { errs <- err })
	if err := waitErr(t, errs); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append: %v, want ENOSPC", err)
	}
	full.Store(false)
	big := bytes.Repeat([]byte("0123456789abcdef"), 2*maxKeptBuf/16)
	off := appendWait(t, l, big)
	if l.Fault() != nil || m.WriteFaults() != 0 {
		t.Fatalf("after a large record was written: Fault() = %v, WriteFaults() = %d", l.Fault(), m.WriteFaults())
	}
	if got, err := l.Read(off); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("Read: %v", err)
	}
}

// Reclaiming segments needs space (tidwall/wal writes the new first segment aside): when that
// fails for want of it, the log stays in service and reclaims at a later commit.
func TestFault_ReclaimPostponed(t *testing.T) {
	var fail atomic.Int32
	cfg := testConfig(t, t.TempDir())
	cfg.SegmentSize = 1024
	cfg.testHook = func(l *Log, point string) error {
		if point == "reclaim" && fail.Add(-1) >= 0 {
			return errNoSpace()
		}
		return nil
	}
	l := openLog(t, openManager(t, cfg), "q")
	fail.Store(3)
	for i := range 200 {
		l.Retire(appendWait(t, l, payloadFor(i)))
	}
	syncLog(t, l)
	if fail.Load() >= 0 {
		t.Fatal("no reclaim was tried")
	}
	if l.Err() != nil || l.Fault() != nil {
		t.Fatalf("Err() = %v, Fault() = %v", l.Err(), l.Fault())
	}
	if segs := segmentFiles(t, l.dir); len(segs) > 2 {
		t.Fatalf("%d segments left: nothing reclaimed after the failures", len(segs))
	}
	checkMirror(t, l)
}

// After ENOSPC a log waits until the device has room for what it holds before it tries again:
// no attempt while the device is full, a log with little to write goes first (its retirements
// are durable while a log with much to write still waits), and each writes soon after room
// comes back.
func TestFault_FullDeviceWaitsForRoom(t *testing.T) {
	var full atomic.Bool
	var free atomic.Int64
	var attempts sync.Map // log name → *atomic.Int32
	cfg := testConfig(t, t.TempDir())
	cfg.testRetry = time.Millisecond
	cfg.testFree = func(string) (int64, bool) { return free.Load(), true }
	cfg.testHook = func(l *Log, point string) error {
		if point != "write" {
			return nil
		}
		n, _ := attempts.LoadOrStore(l.name, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		if full.Load() {
			return errNoSpace()
		}
		return nil
	}
	count := func(name string) int32 {
		n, _ := attempts.LoadOrStore(name, new(atomic.Int32))
		return n.(*atomic.Int32).Load()
	}
	m := openManager(t, cfg)
	small, big := openLog(t, m, "small"), openLog(t, m, "big")
	acked := appendWait(t, small, payloadFor(1))
	free.Store(1 << 40) // the writes fail while the file system says it has room (as it may)
	full.Store(true)
	errs := make(chan error, 2)
	small.Append(payloadFor(2), func(_ uint64, err error) { errs <- err })
	big.Append(bytes.Repeat([]byte{'b'}, 1<<20), nil) // nobody waits: kept until it can be written
	big.Append(payloadFor(3), func(_ uint64, err error) { errs <- err })
	for range 2 {
		if err := waitErr(t, errs); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("append: %v, want ENOSPC", err)
		}
	}
	// The device is full, and says so: no more attempts, however long it lasts.
	free.Store(0)
	time.Sleep(20 * time.Millisecond)
	s0, b0 := count("small"), count("big")
	time.Sleep(50 * time.Millisecond)
	if s, b := count("small"), count("big"); s != s0 || b != b0 {
		t.Fatalf("attempts on a full device: small %d→%d, big %d→%d", s0, s, b0, b)
	}
	// Room for the small log's retirement, not for the big log's megabyte.
	full.Store(false)
	free.Store(512 << 10)
	small.Retire(acked)
	for deadline := time.Now().Add(10 * time.Second); small.Fault() != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the small log did not write once there was room for it")
		}
	}
	syncLog(t, small)
	time.Sleep(20 * time.Millisecond)
	if big.Fault() == nil || count("big") != b0 {
		t.Fatalf("the big log tried without room: Fault() = %v, attempts %d→%d", big.Fault(), b0, count("big"))
	}
	free.Store(1 << 40)
	syncLog(t, big) // waits for its attempt, which now has room
	if big.Fault() != nil || big.Len() != 1 {
		t.Fatalf("big: Fault() = %v, %d live records, want the kept one", big.Fault(), big.Len())
	}
}

// A log closed while its writes fail answers every append (nothing hangs) and says what it could
// not write; the next open finds the acknowledged records.
func TestFault_CloseDuringAFault(t *testing.T) {
	var full atomic.Bool
	logs := &logBuf{}
	cfg := Config{Dir: t.TempDir(), NoSync: true, Logger: testLogger(t, logs)}
	cfg.FailWrite = func(string) error {
		if full.Load() {
			return errNoSpace()
		}
		return nil
	}
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	want := map[uint64][]byte{}
	want[appendWait(t, l, payloadFor(0))] = payloadFor(0)
	full.Store(true)
	errs := make(chan error, 2)
	l.Append(payloadFor(1), func(_ uint64, err error) { errs <- err })
	if err := waitErr(t, errs); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append: %v", err)
	}
	l.Append(payloadFor(2), nil)
	l.Append(payloadFor(3), func(_ uint64, err error) { errs <- err })
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	if err := waitErr(t, errs); err == nil {
		t.Fatal("an append into a full disk succeeded at close")
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs during a write fault")
	}
	if m.WriteFaults() != 0 || !strings.Contains(logs.String(), "records nobody waited for were not written") {
		t.Fatalf("after close: WriteFaults() = %d; log: %s", m.WriteFaults(), logs.String())
	}
	full.Store(false)
	checkEntries(t, "reopened", replayAll(t, openLog(t, openManager(t, cfg), "q")), want)
}
