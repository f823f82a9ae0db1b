package wal

import (
	"slices"
	"testing"
)

func TestRecord_OffsetsRoundTrip(t *testing.T) {
	for _, offs := range [][]uint64{{1}, {1, 2, 3}, {5, 300, 301, 1 << 40}, {1<<64 - 1}} {
		rec := offsetsRecord(KindRetire, offs...)
		k, body, why := decodeRecord(rec)
		if why != "" || k != KindRetire {
			t.Fatalf("%v: decode = %v, %q", offs, k, why)
		}
		got, err := Record{Kind: k, Body: body}.Offsets()
		if err != nil || !slices.Equal(got, offs) {
			t.Fatalf("Offsets = %v, %v; want %v", got, err, offs)
		}
	}
}

func TestRecord_DecodeRejects(t *testing.T) {
	good := dataRecord([]byte("payload"))
	flip := func(i int) []byte {
		b := slices.Clone(good)
		b[i] ^= 1
		return b
	}
	badOffsets := func(body []byte) []byte {
		buf, start := beginRecord(nil, KindRetire)
		buf = append(buf, body...)
		finishRecord(buf, start)
		return buf
	}
	cases := map[string][]byte{
		"empty":              nil,
		"short":              good[:4],
		"kind zero":          make([]byte, 10),
		"kind flipped":       flip(0),
		"crc flipped":        flip(2),
		"payload flipped":    flip(len(good) - 1),
		"empty offset list":  badOffsets(nil),
		"zero first offset":  badOffsets([]byte{0}),
		"repeated offset":    badOffsets([]byte{3, 0}),
		"truncated uvarint":  badOffsets([]byte{0x80}),
		"offset overflow":    badOffsets([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01}),
		"unknown kind valid": func() []byte { b, s := beginRecord(nil, 9); finishRecord(b, s); return b }(),
	}
	for name, rec := range cases {
		if _, _, why := decodeRecord(rec); why == "" {
			t.Errorf("%s: decodeRecord accepted %x", name, rec)
		}
	}
	if _, body, why := decodeRecord(good); why != "" || string(body) != "payload" {
		t.Fatalf("good record: %q, %q", body, why)
	}
}

func TestLiveSet(t *testing.T) {
	s := newLiveSet(1)
	for off := uint64(1); off <= 200; off++ {
		s.add(off)
	}
	for off := uint64(1); off <= 150; off++ {
		if !s.retire(off) {
			t.Fatalf("retire(%d) reported not live", off)
		}
	}
	if s.retire(10) {
		t.Fatal("retire twice reported live")
	}
	s.compact(201)
	if s.base != 128 || s.count != 50 || len(s.live)-s.head != 2 {
		t.Fatalf("after compaction base %d count %d words %d, want 128, 50, 2", s.base, s.count, len(s.live)-s.head)
	}
	if o, ok := s.lowest(); !ok || o != 151 {
		t.Fatalf("lowest = %d, %v", o, ok)
	}
	if !s.markDelivered(160) || s.markDelivered(160) || s.markDelivered(10) || !s.delivered(160) {
		t.Fatal("markDelivered bookkeeping wrong")
	}
	if o, ok := s.nextFrom(152); !ok || o != 152 {
		t.Fatalf("nextFrom(152) = %d, %v", o, ok)
	}
	for off := uint64(151); off <= 200; off++ {
		s.retire(off)
	}
	if s.delivered(160) {
		t.Fatal("retired offset still delivered")
	}
	s.compact(260)
	if _, ok := s.lowest(); ok || len(s.live) != 0 || s.base != 256 {
		t.Fatalf("empty set: base %d words %d", s.base, len(s.live))
	}
	s.add(260)
	s.add(300)
	if o, ok := s.lowest(); !ok || o != 260 || len(s.live) != 1 {
		t.Fatalf("after add(260, 300): lowest %d %v, %d words", o, ok, len(s.live))
	}
	if o, ok := s.nextFrom(261); !ok || o != 300 {
		t.Fatalf("nextFrom(261) = %d, %v", o, ok)
	}
}

// TestLiveSet_SlidingWindow checks the bitmaps against a map while the window slides far, with a
// backlog, so that dropped words are moved down many times.
func TestLiveSet_SlidingWindow(t *testing.T) {
	s := newLiveSet(1)
	ref := map[uint64]bool{}
	next := uint64(1)
	oldest := uint64(1)
	for step := range 200000 {
		s.add(next)
		ref[next] = true
		next++
		if step%3 == 0 {
			next++ // a bookkeeping record
		}
		for len(ref) > 500 {
			if ref[oldest] {
				if !s.retire(oldest) {
					t.Fatalf("retire(%d) failed", oldest)
				}
				delete(ref, oldest)
			}
			oldest++
		}
		s.compact(next)
		if step%997 == 0 {
			for off := oldest; off < next; off++ {
				if s.has(off) != ref[off] {
					t.Fatalf("step %d: has(%d) = %v", step, off, s.has(off))
				}
			}
			if lo, ok := s.lowest(); !ok || !ref[lo] || (lo > oldest && ref[oldest]) {
				t.Fatalf("lowest = %d, oldest live %d", lo, oldest)
			}
		}
	}
	if words := cap(s.live); words > 64 {
		t.Fatalf("bitmap holds %d words for a window of ~750 offsets", words)
	}
}
