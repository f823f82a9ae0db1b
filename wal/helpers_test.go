package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// logBuf collects log output for assertions and also prints it through t.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t testing.TB, extra io.Writer) zerolog.Logger {
	var w io.Writer = zerolog.NewTestWriter(t)
	if extra != nil {
		w = io.MultiWriter(w, extra)
	}
	return zerolog.New(w).Level(zerolog.DebugLevel)
}

func testConfig(t testing.TB, dir string) Config {
	return Config{Dir: dir, NoSync: true, Logger: testLogger(t, nil)}
}

func openManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	m, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func openLog(t testing.TB, m *Manager, name string) *Log {
	t.Helper()
	l, err := m.Log(name)
	if err != nil {
		t.Fatalf("Log(%q): %v", name, err)
	}
	return l
}

// appendWait appends and waits until the record is durable.
func appendWait(t testing.TB, l *Log, payload []byte) uint64 {
	t.Helper()
	ch := make(chan error, 1)
	var got uint64
	off := l.Append(payload, func(o uint64, err error) { got = o; ch <- err })
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("Append done: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Append done never ran")
	}
	if got != off {
		t.Fatalf("done offset %d, Append returned %d", got, off)
	}
	return off
}

func payloadFor(i int) []byte {
	return []byte(fmt.Sprintf("message-%05d-%s", i, bytes.Repeat([]byte{'x'}, i%37)))
}

// replayAll returns the live entries with copied payloads.
func replayAll(t testing.TB, l *Log) []Entry {
	t.Helper()
	var out []Entry
	err := l.Replay(func(e Entry) error {
		e.Payload = bytes.Clone(e.Payload)
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return out
}

func syncLog(t testing.TB, l *Log) {
	t.Helper()
	if err := l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// segmentFiles lists a log folder's segment files with their sizes.
func segmentFiles(t testing.TB, dir string) []segInfo {
	t.Helper()
	segs, leftovers, err := listSegments(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if leftovers {
		t.Fatalf("%s: leftover .START/.END files", dir)
	}
	return segs
}

// checkMirror asserts that the log's idea of its segments matches the folder. Call it only while
// the commit goroutine is idle (after Sync with no concurrent work).
func checkMirror(t testing.TB, l *Log) {
	t.Helper()
	disk := segmentFiles(t, l.dir)
	var size int64
	for _, s := range disk {
		size += s.size
	}
	if fmt.Sprint(disk) != fmt.Sprint(l.segs) {
		t.Fatalf("segments on disk %v, mirrored %v", disk, l.segs)
	}
	if size != l.Size() {
		t.Fatalf("Size() = %d, files hold %d", l.Size(), size)
	}
}

// writeSegment writes a segment file of records encoded as the log would.
func encodeSegment(recs ...[]byte) []byte {
	var out []byte
	for _, r := range recs {
		out = appendEntry(out, r)
	}
	return out
}

func appendEntry(dst, rec []byte) []byte {
	dst = appendUvarintTest(dst, uint64(len(rec)))
	return append(dst, rec...)
}

func appendUvarintTest(dst []byte, x uint64) []byte {
	for x >= 0x80 {
		dst = append(dst, byte(x)|0x80)
		x >>= 7
	}
	return append(dst, byte(x))
}

func dataRecord(payload []byte) []byte {
	buf, start := beginRecord(nil, KindData)
	buf = append(buf, payload...)
	finishRecord(buf, start)
	return buf
}

func offsetsRecord(k Kind, offs ...uint64) []byte {
	buf, start := beginRecord(nil, k)
	buf = appendOffsets(buf, offs)
	finishRecord(buf, start)
	return buf
}

func mustWriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

func isCorrupt(err error, name string) bool {
	var ce *CorruptError
	return errors.Is(err, ErrCorrupt) && errors.As(err, &ce) && ce.Log == name
}
