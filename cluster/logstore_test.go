package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/rs/zerolog"
)

// testStore is a log store under test and how to reopen it.
type testStore interface {
	raft.LogStore
	Close() error
}

type storeKind struct {
	name string
	open func(t testing.TB, dir string) testStore
}

// storeKinds runs the same expectations against raft-boltdb (the reference raft ships with)
// and logStore.
var storeKinds = []storeKind{
	{"bolt", func(t testing.TB, dir string) testStore {
		s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"wal", func(t testing.TB, dir string) testStore {
		s, err := openLogStore(filepath.Join(dir, "log"), 4096, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// testLog is entry i of term: its data names both, so a read checks the position.
func testLog(i, term uint64) *raft.Log {
	return &raft.Log{
		Index: i, Term: term, Type: raft.LogCommand,
		Data:       []byte(fmt.Sprintf("entry %d of term %d %s", i, term, strings.Repeat("x", int(i%50)))),
		Extensions: []byte(fmt.Sprintf("ext%d", i)),
		AppendedAt: time.Unix(1700000000, int64(i)),
	}
}

func testLogs(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, testLog(i, term))
	}
	return out
}

func sameLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && bytes.Equal(a.Data, b.Data) &&
		bytes.Equal(a.Extensions, b.Extensions) && a.AppendedAt.Equal(b.AppendedAt)
}

// expectLog checks that s holds exactly the entries want (in index order, terms as given).
func expectLog(t *testing.T, s raft.LogStore, want []*raft.Log) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var wf, wl uint64
	if len(want) > 0 {
		wf, wl = want[0].Index, want[len(want)-1].Index
	}
	if first != wf || last != wl {
		t.Fatalf("first/last index %d/%d, want %d/%d", first, last, wf, wl)
	}
	for _, w := range want {
		var got raft.Log
		if err := s.GetLog(w.Index, &got); err != nil {
			t.Fatalf("get %d: %v", w.Index, err)
		}
		if !sameLog(&got, w) {
			t.Fatalf("entry %d: got %+v, want %+v", w.Index, got, *w)
		}
	}
	var l raft.Log
	for _, i := range []uint64{0, wf - 1, wl + 1, wl + 100} {
		if i == 0 && wf == 1 {
			continue
		}
		if len(want) > 0 && i >= wf && i <= wl {
			continue
		}
		if err := s.GetLog(i, &l); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("get %d outside %d-%d: %v, want raft.ErrLogNotFound", i, wf, wl, err)
		}
	}
}

// TestLogStore_Conformance holds both stores to what raft expects of a LogStore (the cases of
// raft-boltdb's own tests), each step checked before and after a reopen.
func TestLogStore_Conformance(t *testing.T) {
	type step struct {
		what string
		do   func(s raft.LogStore) error
		want []*raft.Log
	}
	store := func(l ...*raft.Log) func(s raft.LogStore) error {
		return func(s raft.LogStore) error { return s.StoreLogs(l) }
	}
	del := func(min, max uint64) func(s raft.LogStore) error {
		return func(s raft.LogStore) error { return s.DeleteRange(min, max) }
	}
	cat := func(ls ...[]*raft.Log) []*raft.Log {
		var out []*raft.Log
		for _, l := range ls {
			out = append(out, l...)
		}
		return out
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"empty", []step{{"nothing", func(raft.LogStore) error { return nil }, nil}}},
		{"store one and get", []step{
			{"store 1", func(s raft.LogStore) error { return s.StoreLog(testLog(1, 1)) }, testLogs(1, 1, 1)},
		}},
		{"store a batch", []step{
			{"store 1-300", store(testLogs(1, 300, 1)...), testLogs(1, 300, 1)},
			{"store 301-310 one by one", func(s raft.LogStore) error {
				for _, l := range testLogs(301, 310, 2) {
					if err := s.StoreLog(l); err != nil {
						return err
					}
				}
				return nil
			}, cat(testLogs(1, 300, 1), testLogs(301, 310, 2))},
		}},
		{"delete the head (compaction)", []step{
			{"store 1-300", store(testLogs(1, 300, 1)...), testLogs(1, 300, 1)},
			{"delete 1-120", del(1, 120), testLogs(121, 300, 1)},
			{"delete 121-299", del(121, 299), testLogs(300, 300, 1)},
			{"store 301-320", store(testLogs(301, 320, 1)...), testLogs(300, 320, 1)},
		}},
		{"delete the tail (conflict)", []step{
			{"store 1-300", store(testLogs(1, 300, 1)...), testLogs(1, 300, 1)},
			{"delete 250-300", del(250, 300), testLogs(1, 249, 1)},
			{"store 250-260 of term 2", store(testLogs(250, 260, 2)...), cat(testLogs(1, 249, 1), testLogs(250, 260, 2))},
			{"delete 2-260", del(2, 260), testLogs(1, 1, 1)},
			{"store 2 of term 3", store(testLog(2, 3)), cat(testLogs(1, 1, 1), testLogs(2, 2, 3))},
		}},
		{"head then tail", []step{
			{"store 1-300", store(testLogs(1, 300, 1)...), testLogs(1, 300, 1)},
			{"delete 1-100", del(1, 100), testLogs(101, 300, 1)},
			{"delete 200-300", del(200, 300), testLogs(101, 199, 1)},
			{"store 200-210 of term 2", store(testLogs(200, 210, 2)...), cat(testLogs(101, 199, 1), testLogs(200, 210, 2))},
		}},
		{"delete everything, then continue after a snapshot", []step{
			{"store 1-300", store(testLogs(1, 300, 1)...), testLogs(1, 300, 1)},
			{"delete 1-300", del(1, 300), nil},
			{"store 1000-1010", store(testLogs(1000, 1010, 2)...), testLogs(1000, 1010, 2)},
		}},
		{"ranges outside the log change nothing", []step{
			{"store 10-20", store(testLogs(10, 20, 1)...), testLogs(10, 20, 1)},
			{"delete 1-5", del(1, 5), testLogs(10, 20, 1)},
			{"delete 30-40", del(30, 40), testLogs(10, 20, 1)},
		}},
	}
	for _, k := range storeKinds {
		for _, c := range cases {
			t.Run(k.name+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				s := k.open(t, dir)
				defer func() { s.Close() }()
				for _, st := range c.steps {
					if err := st.do(s); err != nil {
						t.Fatalf("%s: %v", st.what, err)
					}
					expectLog(t, s, st.want)
					if err := s.Close(); err != nil {
						t.Fatalf("close after %s: %v", st.what, err)
					}
					s = k.open(t, dir)
					expectLog(t, s, st.want)
				}
			})
		}
	}
}

// TestLogStore_WALOnly: what logStore does where raft-boltdb differs or raft promises nothing.
func TestLogStore_WALOnly(t *testing.T) {
	open := func(t *testing.T, dir string) *logStore {
		s, err := openLogStore(dir, 4096, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("a gap drops the log", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		must(t, s.StoreLogs(testLogs(1, 100, 1)))
		must(t, s.StoreLogs(testLogs(500, 510, 2)))
		expectLog(t, s, testLogs(500, 510, 2))
	})
	t.Run("an overlapping store replaces the suffix", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		must(t, s.StoreLogs(testLogs(1, 100, 1)))
		must(t, s.StoreLogs(testLogs(90, 95, 2)))
		expectLog(t, s, append(testLogs(1, 89, 1), testLogs(90, 95, 2)...))
	})
	t.Run("a range inside the log is refused", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		must(t, s.StoreLogs(testLogs(1, 100, 1)))
		if err := s.DeleteRange(10, 20); err == nil {
			t.Fatal("deleting 10-20 of 1-100 succeeded")
		}
		expectLog(t, s, testLogs(1, 100, 1))
	})
	t.Run("non-consecutive batch is refused", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		if err := s.StoreLogs([]*raft.Log{testLog(1, 1), testLog(3, 1)}); err == nil {
			t.Fatal("stored 1 and 3 in one batch")
		}
		expectLog(t, s, nil)
	})
	t.Run("closed", func(t *testing.T) {
		s := open(t, t.TempDir())
		s.Close()
		if err := s.StoreLog(testLog(1, 1)); !errors.Is(err, raft.ErrRaftShutdown) {
			t.Fatalf("store after close: %v", err)
		}
	})
	t.Run("monotonic", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		c, _ := raft.NewLogCache(16, s)
		if !c.IsMonotonic() {
			t.Fatal("raft does not see the store as monotonic")
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func segmentPaths(t *testing.T, dir string) []string {
	t.Helper()
	segs, _, err := raftSegments(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range segs {
		out = append(out, filepath.Join(dir, s.name()))
	}
	return out
}

// TestLogStore_DamageOnReopen: a machine crash tears the unsynced end of the last segment;
// that is cut off and the log goes on. Damage that no crash explains fails the open.
func TestLogStore_DamageOnReopen(t *testing.T) {
	const n = 230 // about 6 segments of 4 KiB
	cases := []struct {
		name    string
		corrupt func(t *testing.T, segs []string)
		keep    uint64 // entries expected after reopen; 0: the open must fail
	}{
		{"no damage", func(*testing.T, []string) {}, n},
		{"last record cut short", func(t *testing.T, segs []string) {
			truncateBy(t, segs[len(segs)-1], 7)
		}, n - 1},
		{"last record's length byte only", func(t *testing.T, segs []string) {
			last := segs[len(segs)-1]
			truncateTo(t, last, lastRecordStart(t, last)+1)
		}, n - 1},
		{"zeros appended (size grew, data never written)", func(t *testing.T, segs []string) {
			appendBytes(t, segs[len(segs)-1], make([]byte, 3000))
		}, n},
		{"garbage appended", func(t *testing.T, segs []string) {
			appendBytes(t, segs[len(segs)-1], []byte{0x30, 1, 2, 3, 4, 5, 6, 7})
		}, n},
		{"last record's checksum flipped", func(t *testing.T, segs []string) {
			flip(t, segs[len(segs)-1], lastRecordStart(t, segs[len(segs)-1])+3)
		}, n - 1},
		{"a middle record of the last segment flipped", func(t *testing.T, segs []string) {
			flip(t, segs[len(segs)-1], 20)
		}, 0},
		{"a record flipped in an older segment", func(t *testing.T, segs []string) {
			flip(t, segs[1], 40)
		}, 0},
		{"an older segment cut short", func(t *testing.T, segs []string) {
			truncateBy(t, segs[1], 3)
		}, 0},
		{"a middle segment missing", func(t *testing.T, segs []string) {
			must(t, os.Remove(segs[2]))
		}, 0},
		{"zero sector inside the last segment, valid records behind it", func(t *testing.T, segs []string) {
			last := segs[len(segs)-1]
			b, err := os.ReadFile(last)
			must(t, err)
			if len(b) < 2048 {
				t.Fatalf("last segment holds %d bytes: too short for this case", len(b))
			}
			copy(b[512:1024], make([]byte, 512))
			must(t, os.WriteFile(last, b, 0o640))
		}, 0 /* computed below */},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openLogStore(dir, 4096, testLogger(t))
			must(t, err)
			for i := uint64(1); i <= n; i += 10 {
				must(t, s.StoreLogs(testLogs(i, i+9, 1)))
			}
			must(t, s.Close())
			segs := segmentPaths(t, dir)
			if len(segs) < 4 {
				t.Fatalf("only %d segments", len(segs))
			}
			keep := c.keep
			if strings.HasPrefix(c.name, "zero sector") {
				// Torn: everything from the first record that the zeroed sector touches goes.
				keep = entriesBefore(t, dir, segs[len(segs)-1], 512)
			}
			c.corrupt(t, segs)
			s, err = openLogStore(dir, 4096, testLogger(t))
			if keep == 0 {
				if err == nil {
					s.Close()
					t.Fatal("a damaged log opened")
				}
				if !errors.Is(err, errLogCorrupt) {
					t.Fatalf("open: %v, want errLogCorrupt", err)
				}
				return
			}
			must(t, err)
			expectLog(t, s, testLogs(1, keep, 1))
			// The repaired log takes appends, and they survive a reopen.
			must(t, s.StoreLogs(testLogs(keep+1, keep+5, 2)))
			must(t, s.Close())
			s, err = openLogStore(dir, 4096, testLogger(t))
			must(t, err)
			defer s.Close()
			expectLog(t, s, append(testLogs(1, keep, 1), testLogs(keep+1, keep+5, 2)...))
		})
	}
}

// entriesBefore counts the entries of the log that end before byte pos of segment path.
func entriesBefore(t *testing.T, dir, path string, pos int) uint64 {
	t.Helper()
	start, err := strconv.ParseUint(filepath.Base(path), 10, 64)
	must(t, err)
	b, err := os.ReadFile(path)
	must(t, err)
	n, _, _ := scanRaftSegment(b[:pos], start)
	return start - 1 + uint64(n)
}

func lastRecordStart(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	start, err := strconv.ParseUint(filepath.Base(path), 10, 64)
	must(t, err)
	n, _, why := scanRaftSegment(b, start)
	if why != "" || n < 3 {
		t.Fatalf("segment %s: %d records, %q", path, n, why)
	}
	p := 0
	for range n - 1 {
		size, w := uvarintAt(b[p:])
		p += w + int(size)
	}
	return p
}

func uvarintAt(b []byte) (uint64, int) {
	var x uint64
	var s uint
	for i, c := range b {
		if c < 0x80 {
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	fi, err := os.Stat(path)
	must(t, err)
	must(t, os.Truncate(path, fi.Size()-n))
}

func truncateTo(t *testing.T, path string, size int) {
	t.Helper()
	must(t, os.Truncate(path, int64(size)))
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write(b)
	must(t, err)
	must(t, f.Close())
}

func flip(t *testing.T, path string, at int) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	b[at] ^= 0x40
	must(t, os.WriteFile(path, b, 0o640))
}

// TestLogStore_InterruptedTruncation recreates the files a crash inside tidwall's truncation
// leaves (the kept part of the boundary segment in a .START/.END file, written and fsynced
// before anything is removed) at each point, and checks that the log opens as the truncated
// one, never with deleted entries back or kept ones missing.
func TestLogStore_InterruptedTruncation(t *testing.T) {
	build := func(t *testing.T) (string, []string) {
		dir := t.TempDir()
		s, err := openLogStore(dir, 4096, testLogger(t))
		must(t, err)
		for i := uint64(1); i <= 200; i += 10 {
			must(t, s.StoreLogs(testLogs(i, i+9, 1)))
		}
		must(t, s.Close())
		return dir, segmentPaths(t, dir)
	}
	// keptPart returns the bytes of segment path from its first record up to (front=false) or
	// from (front=true) the entry at index.
	keptPart := func(t *testing.T, path string, index uint64, front bool) []byte {
		b, err := os.ReadFile(path)
		must(t, err)
		start, _ := strconv.ParseUint(filepath.Base(path), 10, 64)
		pos, i := 0, start
		for ; i < index; i++ {
			size, w := uvarintAt(b[pos:])
			pos += w + int(size)
		}
		if front {
			return b[pos:]
		}
		size, w := uvarintAt(b[pos:])
		return b[:pos+w+int(size)]
	}
	segStart := func(p string) uint64 { v, _ := strconv.ParseUint(filepath.Base(p), 10, 64); return v }

	t.Run("back", func(t *testing.T) {
		// TruncateBack to index k: END file = segment s (holding k) cut after k; then s and all
		// later segments are removed; then END is renamed to s.
		for stage := 0; stage < 4; stage++ {
			t.Run(fmt.Sprint("stage=", stage), func(t *testing.T) {
				dir, segs := build(t)
				si := len(segs) - 3
				k := segStart(segs[si]) + 2
				end := segs[si] + ".END"
				must(t, os.WriteFile(end, keptPart(t, segs[si], k, false), 0o640))
				if stage >= 1 {
					must(t, os.Remove(segs[si]))
				}
				if stage >= 2 {
					must(t, os.Remove(segs[si+1]))
				}
				if stage >= 3 {
					must(t, os.Remove(segs[si+2]))
				}
				s, err := openLogStore(dir, 4096, testLogger(t))
				must(t, err)
				defer s.Close()
				expectLog(t, s, testLogs(1, k, 1))
				must(t, s.StoreLogs(testLogs(k+1, k+3, 2)))
				expectLog(t, s, append(testLogs(1, k, 1), testLogs(k+1, k+3, 2)...))
			})
		}
	})
	t.Run("front", func(t *testing.T) {
		// TruncateFront to index k: START file named k = segment s (holding k) from k on; then
		// segments up to s are removed; then START is renamed.
		for stage := 0; stage < 3; stage++ {
			t.Run(fmt.Sprint("stage=", stage), func(t *testing.T) {
				dir, segs := build(t)
				si := 2
				k := segStart(segs[si]) + 3
				start := filepath.Join(dir, segFile{start: k}.name()+".START")
				must(t, os.WriteFile(start, keptPart(t, segs[si], k, true), 0o640))
				for i := 0; i < stage && i <= si; i++ {
					must(t, os.Remove(segs[i]))
				}
				s, err := openLogStore(dir, 4096, testLogger(t))
				must(t, err)
				defer s.Close()
				expectLog(t, s, testLogs(k, 200, 1))
			})
		}
	})
	t.Run("temp file of an unfinished first step", func(t *testing.T) {
		dir, segs := build(t)
		must(t, os.WriteFile(segs[2]+".END.TEMP", []byte("partial"), 0o640))
		s, err := openLogStore(dir, 4096, testLogger(t))
		must(t, err)
		defer s.Close()
		expectLog(t, s, testLogs(1, 200, 1))
		if _, err := os.Stat(segs[2] + ".END.TEMP"); err == nil {
			t.Fatal("temp file left behind")
		}
	})
}

// ---- kill -9 in the middle of writes and truncations

// crashOp is one step of the crash workload; the parent rebuilds the expected log from them.
type crashOp struct {
	store      []*raft.Log // or
	delMin     uint64      // DeleteRange(delMin, delMax) when store is nil
	delMax     uint64
	first, end uint64 // the log before the op: [first, end)
}

// crashWorkload generates the deterministic sequence of operations for seed, applying them to
// a model (the expected entries by index).
func crashWorkload(seed uint64, n int) []crashOp {
	r := rand.New(rand.NewPCG(seed, 1))
	var ops []crashOp
	first, end, term := uint64(1), uint64(1), uint64(1) // entries [first, end)
	for len(ops) < n {
		op := crashOp{first: first, end: end}
		switch x := r.IntN(100); {
		case x < 15 && end-first > 4: // conflict: cut the tail, a new term follows
			op.delMin, op.delMax = first+1+uint64(r.IntN(int(end-first-1))), end-1
			end = op.delMin
			term++
		case x < 27 && end-first > 4: // compaction: cut the head
			op.delMin, op.delMax = first, first+uint64(r.IntN(int(end-first-1)))
			first = op.delMax + 1
		case x < 30 && end > first: // snapshot installed: everything goes, the log restarts later
			op.delMin, op.delMax = first, end-1
			first = end + 5 + uint64(r.IntN(50))
			end = first
			term++
		default:
			k := 1 + r.IntN(12)
			op.store = testLogs(end, end+uint64(k)-1, term)
			end += uint64(k)
		}
		ops = append(ops, op)
	}
	return ops
}

// modelAfter returns the entries the log holds after ops[:n].
func modelAfter(ops []crashOp, n int) map[uint64]*raft.Log {
	m := map[uint64]*raft.Log{}
	for _, op := range ops[:n] {
		if op.store != nil {
			for _, l := range op.store {
				m[l.Index] = l
			}
			continue
		}
		for i := op.delMin; i <= op.delMax; i++ {
			delete(m, i)
		}
	}
	return m
}

const crashChildEnv = "WARREN_RAFTLOG_CRASH_CHILD"

// TestLogStoreCrashChild is the process that TestLogStore_KillMidWrite kills: it runs the
// workload on the folder it is given and prints "ok N" once operation N returned.
func TestLogStoreCrashChild(t *testing.T) {
	arg := os.Getenv(crashChildEnv)
	if arg == "" {
		return // only meaningful as TestLogStore_KillMidWrite's child
	}
	dir, seedText, _ := strings.Cut(arg, ",")
	seed, _ := strconv.ParseUint(seedText, 10, 64)
	s, err := openLogStore(dir, 2048, zerolog.Nop())
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	for i, op := range crashWorkload(seed, 100000) {
		if op.store != nil {
			err = s.StoreLogs(op.store)
		} else {
			err = s.DeleteRange(op.delMin, op.delMax)
		}
		if err != nil {
			fmt.Println("op:", err)
			os.Exit(2)
		}
		fmt.Printf("ok %d\n", i+1)
	}
	os.Exit(3)
}

// TestLogStore_KillMidWrite kills a process that writes and truncates (small segments, so
// both cross segment files often) at random moments, then reopens its log: it must be the log
// after the last acknowledged operation, plus at most the operation in flight (a prefix of a
// batch, or the whole truncation), and it must go on taking writes.
func TestLogStore_KillMidWrite(t *testing.T) {
	rounds := 12
	if testing.Short() {
		rounds = 4
	}
	for round := range rounds {
		seed := uint64(time.Now().UnixNano()) + uint64(round)
		dir := filepath.Join(t.TempDir(), "log")
		cmd := exec.Command(os.Args[0], "-test.run=^TestLogStoreCrashChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir+","+strconv.FormatUint(seed, 10))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		acked, started := make(chan int, 1), make(chan struct{})
		go func() {
			n := 0
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				v, ok := strings.CutPrefix(sc.Text(), "ok ")
				if !ok {
					t.Errorf("child: %s", sc.Text())
					continue
				}
				if n == 0 {
					close(started)
				}
				n, _ = strconv.Atoi(v)
			}
			acked <- n
		}()
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Errorf("the child did not start writing: %s", stderr.String())
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		_ = cmd.Process.Kill()
		n := <-acked // read to the end before Wait closes the pipe
		_ = cmd.Wait()
		if t.Failed() {
			return
		}
		ops := crashWorkload(seed, n+1)
		s, err := openLogStore(dir, 2048, testLogger(t))
		if err != nil {
			t.Fatalf("round %d (seed %d, %d ops acknowledged): reopen: %v", round, seed, n, err)
		}
		got := readAllEntries(t, s)
		before, after := modelAfter(ops, n), modelAfter(ops, n+1)
		state := "as acknowledged"
		ok := sameEntries(got, before)
		if !ok {
			ok, state = sameEntries(got, after), "with the next operation"
		}
		if !ok && ops[n].store != nil {
			state = "with part of the next batch"
			for k := 1; k < len(ops[n].store) && !ok; k++ {
				partial := modelAfter(ops, n)
				for _, l := range ops[n].store[:k] {
					partial[l.Index] = l
				}
				ok = sameEntries(got, partial)
			}
		}
		if !ok && ops[n].store == nil && ops[n].delMin <= ops[n].first && ops[n].delMax >= ops[n].end-1 {
			// Dropping the whole log removes the segment files oldest first: a crash in the
			// middle leaves a suffix of the old log (covered by the snapshot that made Raft
			// drop it), as the store's documentation says.
			state = "with a suffix left by the interrupted drop"
			for from := ops[n].first + 1; from < ops[n].end && !ok; from++ {
				suffix := modelAfter(ops, n)
				for i := ops[n].first; i < from; i++ {
					delete(suffix, i)
				}
				ok = sameEntries(got, suffix)
			}
		}
		if !ok {
			t.Fatalf("round %d (seed %d): after %d acknowledged operations (next: %s) the log holds %s; want %s or %s",
				round, seed, n, describeOp(ops[n]), describe(got), describe(before), describe(after))
		}
		// Still writable where raft would go on.
		last, _ := s.LastIndex()
		must(t, s.StoreLogs(testLogs(last+1, last+3, 99)))
		must(t, s.Close())
		t.Logf("round %d: %d operations acknowledged (next: %s); reopened %s: %s", round, n, describeOp(ops[n]), state, describe(got))
	}
}

func describeOp(op crashOp) string {
	if op.store != nil {
		return fmt.Sprintf("store %d-%d of term %d", op.store[0].Index, op.store[len(op.store)-1].Index, op.store[0].Term)
	}
	return fmt.Sprintf("delete %d-%d of %d-%d", op.delMin, op.delMax, op.first, op.end-1)
}

func readAllEntries(t *testing.T, s raft.LogStore) map[uint64]*raft.Log {
	t.Helper()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	m := map[uint64]*raft.Log{}
	if last == 0 {
		return m
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("get %d of %d-%d: %v", i, first, last, err)
		}
		m[i] = &l
	}
	return m
}

func sameEntries(a, b map[uint64]*raft.Log) bool {
	if len(a) != len(b) {
		return false
	}
	for i, l := range a {
		if o, ok := b[i]; !ok || !sameLog(l, o) {
			return false
		}
	}
	return true
}

func describe(m map[uint64]*raft.Log) string {
	if len(m) == 0 {
		return "nothing"
	}
	lo, hi := ^uint64(0), uint64(0)
	for i := range m {
		lo, hi = min(lo, i), max(hi, i)
	}
	return fmt.Sprintf("%d entries %d-%d (last term %d)", len(m), lo, hi, m[hi].Term)
}

// ---- stable store

func TestStableStore_SetGetReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stable")
	s, err := openStableStore(path)
	must(t, err)
	if _, err := s.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("missing key: %v, want raft's \"not found\"", err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 0 || err == nil || err.Error() != "not found" {
		t.Fatalf("missing uint64: %d %v", v, err)
	}
	must(t, s.SetUint64([]byte("CurrentTerm"), 7))
	must(t, s.Set([]byte("LastVoteCand"), []byte("node-b")))
	must(t, s.SetUint64([]byte("CurrentTerm"), 8))
	for range 2 {
		if v, err := s.GetUint64([]byte("CurrentTerm")); v != 8 || err != nil {
			t.Fatalf("term %d %v", v, err)
		}
		if v, err := s.Get([]byte("LastVoteCand")); string(v) != "node-b" || err != nil {
			t.Fatalf("vote %q %v", v, err)
		}
		s, err = openStableStore(path)
		must(t, err)
	}
	// An interrupted write leaves the old file in place.
	must(t, os.WriteFile(path+".tmp", []byte("half"), 0o640))
	s, err = openStableStore(path)
	must(t, err)
	if v, _ := s.GetUint64([]byte("CurrentTerm")); v != 8 {
		t.Fatalf("term after an interrupted write: %d", v)
	}
	// A damaged file is refused, not read as empty (that could make a node vote twice).
	b, _ := os.ReadFile(path)
	b[2] ^= 1
	must(t, os.WriteFile(path, b, 0o640))
	if _, err := openStableStore(path); !errors.Is(err, errLogCorrupt) {
		t.Fatalf("damaged stable store: %v", err)
	}
}

// TestOpenRaftStores_KeepsAnExistingBoltStore: a data folder from before logStore keeps its
// raft.db (its term, vote and log), a new one gets logStore.
func TestOpenRaftStores_KeepsAnExistingBoltStore(t *testing.T) {
	old := t.TempDir()
	b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(old, boltStoreFile)})
	must(t, err)
	must(t, b.StoreLog(testLog(1, 1)))
	must(t, b.Close())
	for _, c := range []struct{ dir, want string }{{old, storeBolt}, {t.TempDir(), storeWAL}} {
		ls, _, closer, kind, err := openRaftStores(c.dir, storeAuto, testLogger(t))
		must(t, err)
		if kind != c.want {
			t.Fatalf("store %q, want %q", kind, c.want)
		}
		if c.want == storeBolt {
			expectLog(t, ls, testLogs(1, 1, 1))
		}
		must(t, closer.Close())
	}
}

var _ io.Closer = (*logStore)(nil)

// ---- raft on logStore: conflicts, compaction, a snapshot for a late node, restarts

// listFSM records the commands it applies, in order.
type listFSM struct {
	mu  sync.Mutex
	cmd []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	f.cmd = append(f.cmd, string(l.Data))
	f.mu.Unlock()
	return nil
}

func (f *listFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmd)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	return snapshot(strings.Join(f.list(), "\n")), nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmd = nil
	if len(b) > 0 {
		f.cmd = strings.Split(string(b), "\n")
	}
	return nil
}

// watchedStore counts what raft asks of the store, to show which paths a test took.
type watchedStore struct {
	*logStore
	mu                    sync.Mutex
	head, tail, all, gaps int
}

func (w *watchedStore) DeleteRange(min, max uint64) error {
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	w.mu.Lock()
	switch {
	case last == 0:
	case min <= first && max >= last:
		w.all++
	case min <= first:
		w.head++
	case max >= last:
		w.tail++
	}
	w.mu.Unlock()
	return w.logStore.DeleteRange(min, max)
}

func (w *watchedStore) StoreLogs(logs []*raft.Log) error {
	last, _ := w.LastIndex()
	if len(logs) > 0 && logs[0].Index != last+1 {
		w.mu.Lock()
		w.gaps++
		w.mu.Unlock()
	}
	return w.logStore.StoreLogs(logs)
}

func (w *watchedStore) StoreLog(l *raft.Log) error { return w.StoreLogs([]*raft.Log{l}) }

func (w *watchedStore) counts() (head, tail, all, gaps int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.head, w.tail, w.all, w.gaps
}

type raftPeer struct {
	id    raft.ServerID
	dir   string
	trans *raft.InmemTransport
	store *watchedStore
	fsm   *listFSM
	r     *raft.Raft
}

func startRaftPeer(t *testing.T, p *raftPeer, peers []*raftPeer, trailing uint64) {
	t.Helper()
	ls, err := openLogStore(filepath.Join(p.dir, "log"), 2048, testLogger(t))
	must(t, err)
	ss, err := openStableStore(filepath.Join(p.dir, "stable"))
	must(t, err)
	snaps, err := raft.NewFileSnapshotStore(p.dir, 2, io.Discard)
	must(t, err)
	_, p.trans = raft.NewInmemTransport(raft.ServerAddress(p.id))
	for _, o := range peers {
		if o != p && o.r != nil {
			p.trans.Connect(o.trans.LocalAddr(), o.trans)
			o.trans.Connect(p.trans.LocalAddr(), p.trans)
		}
	}
	c := raft.DefaultConfig()
	c.LocalID = p.id
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotInterval, c.SnapshotThreshold, c.TrailingLogs = time.Hour, 1<<30, trailing
	c.Logger = hcLogger(testLogger(t), "raft")
	p.store = &watchedStore{logStore: ls}
	p.fsm = &listFSM{}
	r, err := raft.NewRaft(c, p.fsm, p.store, ss, snaps, p.trans)
	must(t, err)
	p.r = r
}

func (p *raftPeer) stop(t *testing.T) {
	t.Helper()
	must(t, p.r.Shutdown().Error())
	must(t, p.store.Close())
	p.r = nil
}

func raftLeader(t *testing.T, ps []*raftPeer) *raftPeer {
	t.Helper()
	var l *raftPeer
	waitFor(t, 10*time.Second, "a raft leader", func() bool {
		for _, p := range ps {
			if p.r != nil && p.r.State() == raft.Leader {
				l = p
				return true
			}
		}
		return false
	})
	return l
}

func applyAll(t *testing.T, l *raftPeer, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		c := fmt.Sprintf("%s%d", prefix, i)
		must(t, l.r.Apply([]byte(c), 5*time.Second).Error())
		out = append(out, c)
	}
	return out
}

func waitApplied(t *testing.T, ps []*raftPeer, want []string) {
	t.Helper()
	for _, p := range ps {
		waitFor(t, 10*time.Second, fmt.Sprintf("%s applied %d commands", p.id, len(want)), func() bool {
			return slices.Equal(p.fsm.list(), want)
		})
	}
}

// TestLogStore_UnderRaft runs a raft cluster on logStore through the paths that truncate: a
// deposed leader drops its unreplicated tail, snapshots compact the head, a late node gets a
// snapshot and starts its log after it, and every node restarts from its files.
func TestLogStore_UnderRaft(t *testing.T) {
	var ps []*raftPeer
	for i := 1; i <= 3; i++ {
		ps = append(ps, &raftPeer{id: raft.ServerID(fmt.Sprintf("r%d", i)), dir: t.TempDir()})
	}
	defer func() {
		for _, p := range ps {
			if p.r != nil {
				p.stop(t)
			}
		}
	}()
	for _, p := range ps {
		startRaftPeer(t, p, ps, 1000)
	}
	var conf raft.Configuration
	for _, p := range ps {
		conf.Servers = append(conf.Servers, raft.Server{ID: p.id, Address: p.trans.LocalAddr()})
	}
	must(t, ps[0].r.BootstrapCluster(conf).Error())
	l := raftLeader(t, ps)
	want := applyAll(t, l, "a", 30)

	// Cut the leader off; it appends entries that never commit.
	l.trans.DisconnectAll()
	for _, p := range ps {
		if p != l {
			p.trans.Disconnect(l.trans.LocalAddr())
		}
	}
	before, _ := l.store.LastIndex()
	for i := range 5 {
		l.r.Apply([]byte(fmt.Sprintf("lost%d", i)), 100*time.Millisecond)
	}
	waitFor(t, 5*time.Second, "the cut-off leader to append", func() bool {
		last, _ := l.store.LastIndex()
		return last >= before+5
	})
	var rest []*raftPeer
	for _, p := range ps {
		if p != l {
			rest = append(rest, p)
		}
	}
	l2 := raftLeader(t, rest)
	want = append(want, applyAll(t, l2, "b", 30)...)
	for _, p := range ps {
		if p != l {
			l.trans.Connect(p.trans.LocalAddr(), p.trans)
			p.trans.Connect(l.trans.LocalAddr(), l.trans)
		}
	}
	waitApplied(t, ps, want)
	if _, tail, _, _ := l.store.counts(); tail == 0 {
		t.Fatal("the deposed leader never cut its tail")
	}

	// Snapshots compact the head of every log.
	for _, p := range ps {
		must(t, p.r.ReloadConfig(raft.ReloadableConfig{TrailingLogs: 5, SnapshotInterval: time.Hour, SnapshotThreshold: 1 << 30, HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond}))
		must(t, p.r.Snapshot().Error())
		if head, _, _, _ := p.store.counts(); head == 0 {
			t.Fatalf("%s: a snapshot did not compact the log", p.id)
		}
	}
	l2 = raftLeader(t, ps)
	want = append(want, applyAll(t, l2, "c", 10)...)

	// A late node gets a snapshot, then entries after it.
	late := &raftPeer{id: "r4", dir: t.TempDir()}
	ps = append(ps, late)
	startRaftPeer(t, late, ps, 5)
	must(t, l2.r.AddVoter(late.id, late.trans.LocalAddr(), 0, 5*time.Second).Error())
	want = append(want, applyAll(t, l2, "d", 10)...)
	waitApplied(t, ps, want)
	if _, _, _, gaps := late.store.counts(); gaps == 0 {
		t.Fatal("the late node's log did not start after a snapshot")
	}

	// Every node restarts from its files.
	for _, p := range ps {
		p.stop(t)
	}
	for _, p := range ps {
		startRaftPeer(t, p, ps, 5)
	}
	l3 := raftLeader(t, ps)
	want = append(want, applyAll(t, l3, "e", 5)...)
	waitApplied(t, ps, want)
	for _, p := range ps {
		first, _ := p.store.FirstIndex()
		last, _ := p.store.LastIndex()
		for i := first; i <= last && last > 0; i++ {
			var e raft.Log
			if err := p.store.GetLog(i, &e); err != nil {
				t.Fatalf("%s: entry %d of %d-%d: %v", p.id, i, first, last, err)
			}
			if bytes.HasPrefix(e.Data, []byte("lost")) {
				t.Fatalf("%s: an uncommitted entry of the deposed leader is back at %d", p.id, i)
			}
		}
	}
}

// Benchmark knobs: go test -bench Propose ./cluster/ -args -raft-store=bolt -raft-nudge=false
var (
	benchStore         = flag.String("raft-store", storeAuto, "BenchmarkPropose: Raft store (wal or bolt)")
	benchCommitTimeout = flag.Duration("raft-commit-timeout", 0, "BenchmarkPropose: Raft CommitTimeout (0: the node's default)")
	benchNudge         = flag.Bool("raft-nudge", true, "BenchmarkPropose: barrier after a forwarded change")
)

func benchOptions(cfg *Config) {
	cfg.raftStore, cfg.commitTimeout, cfg.noNudge = *benchStore, *benchCommitTimeout, !*benchNudge
}

// BenchmarkRaftLogStore measures StoreLogs of one entry (raft's batch under serial
// proposals) and of 64, each durable on return.
func BenchmarkRaftLogStore(b *testing.B) {
	for _, k := range storeKinds {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("store=%s/batch=%d", k.name, batch), func(b *testing.B) {
				s := k.open(b, b.TempDir())
				defer s.Close()
				if ws, ok := s.(*logStore); ok {
					ws.segSize = defaultRaftSegment
				}
				data := bytes.Repeat([]byte("q"), 200)
				next := uint64(1)
				logs := make([]*raft.Log, batch)
				b.SetBytes(int64(batch * len(data)))
				b.ReportAllocs()
				for b.Loop() {
					for i := range logs {
						logs[i] = &raft.Log{Index: next, Term: 1, Data: data, AppendedAt: time.Now()}
						next++
					}
					if err := s.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// FuzzRaftLogOpen replaces the end of the last segment with arbitrary bytes (a torn or damaged
// tail): opening must not panic; it fails with errLogCorrupt or keeps every entry that lies
// wholly before the damage, and the log then takes appends.
func FuzzRaftLogOpen(f *testing.F) {
	base := f.TempDir()
	s, err := openLogStore(base, 4096, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	for i := uint64(1); i <= 100; i += 10 {
		if err := s.StoreLogs(testLogs(i, i+9, 1)); err != nil {
			f.Fatal(err)
		}
	}
	s.Close()
	segs, _, _ := raftSegments(base, false)
	last := segs[len(segs)-1]
	orig, err := os.ReadFile(filepath.Join(base, last.name()))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint16(len(orig)), []byte{})
	f.Add(uint16(len(orig)-3), []byte{})
	f.Add(uint16(len(orig)), make([]byte, 600))
	f.Add(uint16(10), orig[20:])
	f.Add(uint16(0), appendRaftRecord(nil, testLog(last.start, 1)))
	f.Fuzz(func(t *testing.T, cut uint16, tail []byte) {
		dir := t.TempDir()
		for _, sg := range segs[:len(segs)-1] {
			b, err := os.ReadFile(filepath.Join(base, sg.name()))
			must(t, err)
			must(t, os.WriteFile(filepath.Join(dir, sg.name()), b, 0o640))
		}
		c := int(cut) % (len(orig) + 1)
		must(t, os.WriteFile(filepath.Join(dir, last.name()), append(slices.Clone(orig[:c]), tail...), 0o640))
		s, err := openLogStore(dir, 4096, zerolog.Nop())
		if err != nil {
			if !errors.Is(err, errLogCorrupt) {
				t.Fatalf("open: %v", err)
			}
			return
		}
		defer s.Close()
		whole, _, _ := scanRaftSegment(orig[:c], last.start)
		keep := last.start - 1 + uint64(whole)
		got := readAllEntries(t, s)
		for i := uint64(1); i <= keep; i++ {
			if l, ok := got[i]; !ok || !sameLog(l, testLog(i, 1)) {
				t.Fatalf("entry %d lost or changed (kept %d, log %s)", i, keep, describe(got))
			}
		}
		lastIdx, _ := s.LastIndex()
		must(t, s.StoreLogs(testLogs(lastIdx+1, lastIdx+2, 2)))
	})
}
