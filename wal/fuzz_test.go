package wal

import (
	"errors"
	"path/filepath"
	"testing"
)

// fuzzHead is a valid first segment of five data records (offsets 1..5).
func fuzzHead() []byte {
	var recs [][]byte
	for i := range 5 {
		recs = append(recs, dataRecord(payloadFor(i)))
	}
	return encodeSegment(recs...)
}

// FuzzWALOpen writes arbitrary bytes as the tail segment (offsets from 6) of a log whose first
// segment is valid. Opening must never panic: it either repairs the tail and then works (appends,
// reopens with the new record) or reports ErrCorrupt.
func FuzzWALOpen(f *testing.F) {
	valid := encodeSegment(dataRecord([]byte("six")), offsetsRecord(KindRetire, 1, 3), dataRecord([]byte("eight")),
		offsetsRecord(KindDelivered, 2, 8))
	f.Add([]byte{})
	f.Add(valid)
	f.Add(valid[:len(valid)-3])                     // torn
	f.Add(append(valid[:len(valid):len(valid)], 0)) // a zero after the last record
	f.Add(append(valid[:len(valid):len(valid)], make([]byte, 64)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	flipped := append([]byte(nil), valid...)
	flipped[3] ^= 0x40 // mid-log damage: valid records follow
	f.Add(flipped)
	head := fuzzHead()
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		logDir := filepath.Join(dir, "f")
		mustWriteFile(t, filepath.Join(logDir, segmentName(1)), head)
		mustWriteFile(t, filepath.Join(logDir, segmentName(6)), tail)
		cfg := Config{Dir: dir, NoSync: true, SegmentSize: 256} // silent logger
		m, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		l, err := m.Log("f")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Log: %v, want nil or ErrCorrupt", err)
			}
			return
		}
		before := replayAll(t, l)
		off := appendWait(t, l, []byte("after"))
		if off <= 5 || off != l.LastOffset() {
			t.Fatalf("append after open got offset %d, LastOffset %d", off, l.LastOffset())
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		m2, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m2.Close()
		l2, err := m2.Log("f")
		if err != nil {
			t.Fatalf("reopen after repair: %v", err)
		}
		after := replayAll(t, l2)
		if len(after) != len(before)+1 {
			t.Fatalf("reopen replays %d records, want %d", len(after), len(before)+1)
		}
		if last := after[len(after)-1]; last.Offset != off || string(last.Payload) != "after" {
			t.Fatalf("reopen: last record %d %q, want %d \"after\"", last.Offset, last.Payload, off)
		}
	})
}
