package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tailEntries returns the last segment file of a log folder, its content and the start of each
// entry in it.
func tailEntries(t *testing.T, dir string) (path string, data []byte, starts []int) {
	t.Helper()
	segs := segmentFiles(t, dir)
	path = filepath.Join(dir, segmentName(segs[len(segs)-1].start))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, pos, why := scanSegment(data, nil)
	if why != "" || pos != len(data) {
		t.Fatalf("tail is damaged before the test corrupts it: %s", why)
	}
	for p := 0; p < len(data); {
		starts = append(starts, p)
		size, w := uvarintDecode(data[p:])
		p += w + int(size)
	}
	if len(starts) != n || n < 3 {
		t.Fatalf("tail holds %d records, the test needs at least 3", n)
	}
	return path, data, starts
}

func uvarintDecode(b []byte) (uint64, int) {
	var x uint64
	for i, c := range b {
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, i + 1
		}
	}
	return 0, 0
}

func writeFile(t *testing.T, path string, data []byte) { mustWriteFile(t, path, data) }

// corruptionSetup writes a victim log of 100 data records spread over several segments, whose
// first five are retired, plus a bystander log of three records.
const (
	victimRecords = 100
	victimRetired = 5
)

func corruptionSetup(t *testing.T, cfg Config) {
	m := openManager(t, cfg)
	v := openLog(t, m, "victim")
	for i := range 10 {
		v.Append(payloadFor(i), nil)
	}
	v.Retire(1, 2, 3, 4, 5) // one call: one retirement record, at offset 11
	syncLog(t, v)
	for i := 10; i < victimRecords; i++ {
		v.Append(payloadFor(i), nil)
	}
	syncLog(t, v)
	b := openLog(t, m, "bystander")
	for i := range 3 {
		b.Append(payloadFor(i), nil)
	}
	syncLog(t, b)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// testCorruption is etcd's pattern: build logs, close, damage the victim's files with corrupt,
// reopen. A torn tail must be repaired (lost records cut from the end, a warning logged, appends
// continue and survive another reopen); any other damage must put only the victim out of service.
func testCorruption(t *testing.T, corrupt func(t *testing.T, dir string), repaired bool, lost int) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.SegmentSize = 1 << 10
	corruptionSetup(t, cfg)
	corrupt(t, filepath.Join(dir, "victim"))

	lb := &logBuf{}
	cfg.Logger = testLogger(t, lb)
	m := openManager(t, cfg)
	l, err := m.Log("victim")
	if !repaired {
		if !isCorrupt(err, "victim") {
			t.Fatalf("Log(victim) err = %v, want a *CorruptError for victim", err)
		}
		t.Logf("reported: %v", err)
		if !strings.Contains(lb.String(), `"level":"error"`) {
			t.Fatalf("corruption not logged at error level:\n%s", lb.String())
		}
		if _, err := m.Log("victim"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("second Log(victim) err = %v", err)
		}
		b := openLog(t, m, "bystander")
		if got := len(replayAll(t, b)); got != 3 {
			t.Fatalf("bystander replays %d records, want 3", got)
		}
		appendWait(t, b, []byte("bystander keeps working"))
		return
	}
	if err != nil {
		t.Fatalf("Log(victim) after tail damage: %v", err)
	}
	if strings.Contains(lb.String(), `"level":"error"`) {
		t.Fatalf("tail repair logged an error:\n%s", lb.String())
	}
	if lost > 0 && !strings.Contains(lb.String(), "repaired torn tail") {
		t.Fatalf("no repair warning logged:\n%s", lb.String())
	}
	// Offsets: 1..10 data (1..5 retired), 11 the retirement record, 12..101 data.
	payloadAt := func(off uint64) []byte {
		if off > 11 {
			return payloadFor(int(off) - 2)
		}
		return payloadFor(int(off) - 1)
	}
	var want []uint64
	for off := uint64(victimRetired + 1); off <= 10; off++ {
		want = append(want, off)
	}
	for off := uint64(12); off <= victimRecords+1-uint64(lost); off++ {
		want = append(want, off)
	}
	var got []uint64
	for _, e := range replayAll(t, l) {
		got = append(got, e.Offset)
		if !bytes.Equal(e.Payload, payloadAt(e.Offset)) {
			t.Fatalf("offset %d payload %q, want %q", e.Offset, e.Payload, payloadAt(e.Offset))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after repair Replay offsets %v, want %v", got, want)
	}
	next := appendWait(t, l, []byte("after repair"))
	if wantNext := uint64(victimRecords + 2 - lost); next != wantNext {
		t.Fatalf("append after repair got offset %d, want %d", next, wantNext)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	lb2 := &logBuf{}
	cfg.Logger = testLogger(t, lb2)
	m = openManager(t, cfg)
	l = openLog(t, m, "victim")
	es := replayAll(t, l)
	if last := es[len(es)-1]; last.Offset != next || string(last.Payload) != "after repair" {
		t.Fatalf("after reopen the last entry is %d %q", last.Offset, last.Payload)
	}
	if strings.Contains(lb2.String(), "repaired") {
		t.Fatalf("second reopen repaired again:\n%s", lb2.String())
	}
}

func TestLog_Corruption(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	segPath := func(t *testing.T, dir string, i int) string {
		segs := segmentFiles(t, dir)
		if len(segs) < 3 {
			t.Fatalf("only %d segments, the test needs 3", len(segs))
		}
		return filepath.Join(dir, segmentName(segs[i].start))
	}
	cases := []struct {
		name     string
		corrupt  func(t *testing.T, dir string)
		repaired bool
		lost     int
	}{
		{"truncate tail mid-record", func(t *testing.T, dir string) {
			path, data, starts := tailEntries(t, dir)
			last := starts[len(starts)-1]
			writeFile(t, path, data[:last+(len(data)-last)/2])
		}, true, 1},
		{"truncate tail inside the length prefix", func(t *testing.T, dir string) {
			path, data, starts := tailEntries(t, dir)
			writeFile(t, path, append(data[:starts[len(starts)-1]], 0x80))
		}, true, 1},
		{"tear last record with zeros", func(t *testing.T, dir string) {
			path, data, starts := tailEntries(t, dir)
			last := starts[len(starts)-1]
			clear(data[last+(len(data)-last)/2:])
			writeFile(t, path, data)
		}, true, 1},
		{"tear last record with garbage", func(t *testing.T, dir string) {
			path, data, starts := tailEntries(t, dir)
			last := starts[len(starts)-1] + 1
			copy(data[last:], garbage(len(data)-last))
			writeFile(t, path, data)
		}, true, 1},
		{"last length prefix overruns the file", func(t *testing.T, dir string) {
			path, data, starts := tailEntries(t, dir)
			data[starts[len(starts)-1]] = 0x7f
			writeFile(t, path, data)
		}, true, 1},
		{"append garbage", func(t *testing.T, dir string) {
			path, data, _ := tailEntries(t, dir)
			writeFile(t, path, append(data, garbage(100)...))
		}, true, 0},
		{"append zeros", func(t *testing.T, dir string) {
			path, data, _ := tailEntries(t, dir)
			writeFile(t, path, append(data, make([]byte, 4096)...))
		}, true, 0},
		{"flip a byte mid first segment", func(t *testing.T, dir string) {
			path := segPath(t, dir, 0)
			data, _ := os.ReadFile(path)
			data[len(data)/2] ^= 0x10
			writeFile(t, path, data)
		}, false, 0},
		{"flip a byte in the tail's first record", func(t *testing.T, dir string) {
			path, data, starts := tailEntries(t, dir)
			data[(starts[0]+starts[1])/2+1] ^= 0x01
			writeFile(t, path, data)
		}, false, 0},
		{"corrupt a length prefix mid tail", func(t *testing.T, dir string) {
			path, data, starts := tailEntries(t, dir)
			data[starts[1]] += 3
			writeFile(t, path, data)
		}, false, 0},
		{"truncate a middle segment", func(t *testing.T, dir string) {
			path := segPath(t, dir, 1)
			data, _ := os.ReadFile(path)
			writeFile(t, path, data[:len(data)/2])
		}, false, 0},
		{"remove a middle segment", func(t *testing.T, dir string) {
			if err := os.Remove(segPath(t, dir, 1)); err != nil {
				t.Fatal(err)
			}
		}, false, 0},
		{"garbage after a middle segment", func(t *testing.T, dir string) {
			path := segPath(t, dir, 1)
			data, _ := os.ReadFile(path)
			writeFile(t, path, append(data, garbage(10)...))
		}, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { testCorruption(t, tc.corrupt, tc.repaired, tc.lost) })
	}
}

// A crash inside tidwall's TruncateFront leaves a .START copy of the new first segment beside the
// old ones; opening finishes the truncation.
func TestLog_OpenFinishesInterruptedTruncation(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.SegmentSize = 1 << 10
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	for i := range 100 {
		l.Append(payloadFor(i), nil)
	}
	syncLog(t, l)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(dir, "q")
	segs := segmentFiles(t, logDir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, need 3", len(segs))
	}
	data, err := os.ReadFile(filepath.Join(logDir, segmentName(segs[1].start)))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(logDir, segmentName(segs[1].start)+".START"), data)
	writeFile(t, filepath.Join(logDir, segmentName(segs[1].start)+".START.TEMP"), data[:3])

	m = openManager(t, cfg)
	l = openLog(t, m, "q")
	if got := l.FirstOffset(); got != segs[1].start {
		t.Fatalf("FirstOffset = %d, want %d", got, segs[1].start)
	}
	es := replayAll(t, l)
	if es[0].Offset != segs[1].start || es[len(es)-1].Offset != 100 {
		t.Fatalf("Replay covers %d..%d", es[0].Offset, es[len(es)-1].Offset)
	}
	checkMirror(t, l)
}

// Pages of a write that was never synced can reach the device out of order: a crash then leaves
// a zero-filled hole in the tail with valid records after it. None of them was acknowledged (the
// sync that would have covered them never completed), so the tail is cut at the hole. The same
// damage filled with non-zero bytes is not what a crash does: that is corruption.
func TestLog_TailHole(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fill     byte
		repaired bool
	}{{"zero-filled hole is a torn write", 0, true}, {"garbage sector is corruption", 0xaa, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(t, dir)
			cfg.SegmentSize = 64 << 10
			m := openManager(t, cfg)
			l := openLog(t, m, "q")
			for i := range 300 {
				l.Append(payloadFor(i), nil)
			}
			syncLog(t, l)
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			path, data, starts := tailEntries(t, filepath.Join(dir, "q"))
			const holeStart, holeEnd = 2048, 2048 + 1024
			if len(data) < holeEnd+1000 {
				t.Fatalf("tail of %d bytes is too short", len(data))
			}
			for i := holeStart; i < holeEnd; i++ {
				data[i] = tc.fill
			}
			writeFile(t, path, data)
			survivors := 0
			for i := range starts {
				end := len(data)
				if i+1 < len(starts) {
					end = starts[i+1]
				}
				if end <= holeStart {
					survivors++
				}
			}

			lb := &logBuf{}
			cfg.Logger = testLogger(t, lb)
			m = openManager(t, cfg)
			l, err := m.Log("q")
			if !tc.repaired {
				if !isCorrupt(err, "q") {
					t.Fatalf("Log err = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Log: %v", err)
			}
			if !strings.Contains(lb.String(), "repaired torn tail") {
				t.Fatalf("no repair warning:\n%s", lb.String())
			}
			if got := len(replayAll(t, l)); got != survivors {
				t.Fatalf("%d records survive, want %d", got, survivors)
			}
			if off := appendWait(t, l, []byte("after")); off != uint64(survivors+1) {
				t.Fatalf("append after repair got offset %d, want %d", off, survivors+1)
			}
		})
	}
}
