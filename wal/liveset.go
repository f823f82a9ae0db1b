package wal

import "math/bits"

// liveSet records which offsets of a log hold live (unretired) data records and which of those
// were marked delivered: two bitmaps over a window that starts at base. The window's front is
// dropped as soon as its first word is fully retired, so memory follows the backlog (two bits per
// offset between the oldest live record and the newest), not the log's history. Dropped words
// are skipped with head and reclaimed by an occasional copy, so steady traffic does not allocate.
type liveSet struct {
	base  uint64   // offset of bit 0 of live[head]; a multiple of 64
	head  int      // first word of the window
	live  []uint64 // bit set: a live data record
	dlv   []uint64 // bit set: that record was delivered (only meaningful where live is set)
	count int      // live records
}

func newLiveSet(first uint64) liveSet { return liveSet{base: first &^ 63} }

func (s *liveSet) pos(off uint64) (int, uint64, bool) {
	if off < s.base {
		return 0, 0, false
	}
	i := off - s.base
	w := i >> 6
	if w >= uint64(len(s.live)-s.head) {
		return 0, 0, false
	}
	return s.head + int(w), 1 << (i & 63), true
}

// add marks off live. Offsets only grow, so off is never below the window.
func (s *liveSet) add(off uint64) {
	if off < s.base {
		panic("wal: liveSet.add below window")
	}
	i := off - s.base
	w := s.head + int(i>>6)
	for len(s.live) <= w {
		s.live = append(s.live, 0)
		s.dlv = append(s.dlv, 0)
	}
	if s.live[w]&(1<<(i&63)) == 0 {
		s.live[w] |= 1 << (i & 63)
		s.count++
	}
}

func (s *liveSet) has(off uint64) bool {
	w, b, ok := s.pos(off)
	return ok && s.live[w]&b != 0
}

func (s *liveSet) delivered(off uint64) bool {
	w, b, ok := s.pos(off)
	return ok && s.live[w]&b != 0 && s.dlv[w]&b != 0
}

// retire clears off and reports whether it was live.
func (s *liveSet) retire(off uint64) bool {
	w, b, ok := s.pos(off)
	if !ok || s.live[w]&b == 0 {
		return false
	}
	s.live[w] &^= b
	s.dlv[w] &^= b
	s.count--
	return true
}

// markDelivered sets the delivered bit of a live offset and reports whether it changed.
func (s *liveSet) markDelivered(off uint64) bool {
	w, b, ok := s.pos(off)
	if !ok || s.live[w]&b == 0 || s.dlv[w]&b != 0 {
		return false
	}
	s.dlv[w] |= b
	return true
}

// compact drops fully retired words from the front of the window. next is the next offset to be
// assigned: words that still cover unassigned offsets are kept.
func (s *liveSet) compact(next uint64) {
	for s.head < len(s.live) && s.live[s.head] == 0 && s.base+64 <= next {
		s.head++
		s.base += 64
	}
	switch n := len(s.live) - s.head; {
	case n == 0:
		s.live, s.dlv, s.head = s.live[:0], s.dlv[:0], 0
		s.base = next &^ 63
	case s.head >= 16 && s.head >= n: // at least half the array is dropped words: move the window down
		copy(s.live, s.live[s.head:])
		copy(s.dlv, s.dlv[s.head:])
		s.live, s.dlv, s.head = s.live[:n], s.dlv[:n], 0
	}
}

// lowest returns the smallest live offset.
func (s *liveSet) lowest() (uint64, bool) { return s.nextFrom(s.base) }

// nextFrom returns the smallest live offset >= off.
func (s *liveSet) nextFrom(off uint64) (uint64, bool) {
	if off < s.base {
		off = s.base
	}
	i := off - s.base
	if i>>6 >= uint64(len(s.live)-s.head) {
		return 0, false
	}
	w := s.head + int(i>>6)
	word := s.live[w] &^ (1<<(i&63) - 1)
	for {
		if word != 0 {
			return s.base + uint64(w-s.head)<<6 + uint64(bits.TrailingZeros64(word)), true
		}
		w++
		if w >= len(s.live) {
			return 0, false
		}
		word = s.live[w]
	}
}
