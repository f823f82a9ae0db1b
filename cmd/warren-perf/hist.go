package main

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// The latency histogram is a fixed-size log-linear histogram (HDR style):
// values below 2^histSubBits nanoseconds get one bucket each, above that every
// power of two is split into 2^(histSubBits-1) equal-width buckets, so the
// relative error of any reported value is below 1/2^(histSubBits-1) (< 0.8 %).
// Values at or above histMaxValue are clamped into the last bucket (and the
// true maximum is still tracked exactly). Memory is constant: histBuckets
// uint64 counters (32 KiB) no matter how many values are recorded.
const (
	histSubBits  = 8
	histMaxBits  = 37 // 2^37 ns ~ 137 s
	histMaxValue = int64(1) << histMaxBits
	histBuckets  = (histMaxBits - histSubBits + 2) << (histSubBits - 1)
)

// bucketIndex maps a non-negative value (nanoseconds) to its bucket.
func bucketIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v >= histMaxValue {
		return histBuckets - 1
	}
	u := uint64(v)
	if u < 1<<histSubBits {
		return int(u)
	}
	shift := bits.Len64(u) - histSubBits
	return shift<<(histSubBits-1) + int(u>>uint(shift))
}

// bucketBounds returns the inclusive lower bound and the width of bucket i.
func bucketBounds(i int) (lo, width int64) {
	if i < 1<<histSubBits {
		return int64(i), 1
	}
	shift := i>>(histSubBits-1) - 1
	m := i - shift<<(histSubBits-1)
	return int64(m) << uint(shift), int64(1) << uint(shift)
}

// Histogram is a plain (not concurrency-safe) latency histogram.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64 // sum of recorded values, for the mean
	min    int64
	max    int64
}

// Record adds one value (nanoseconds).
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Min is the smallest recorded value (0 when empty).
func (h *Histogram) Min() int64 { return h.min }

// Max is the largest recorded value (0 when empty).
func (h *Histogram) Max() int64 { return h.max }

// Mean is the arithmetic mean of recorded values (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Merge adds all values of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Reset empties the histogram.
func (h *Histogram) Reset() { *h = Histogram{} }

// Quantile returns the value at quantile q (0..1): the smallest bucket whose
// cumulative count reaches ceil(q*n), reported as the bucket midpoint and
// clamped to the exact [min, max] range. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, w := bucketBounds(i)
			v := lo + (w-1)/2
			if v < h.min {
				v = h.min
			}
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}

// LatencyRecorder is one goroutine's share of a LatencySet. Record takes an
// uncontended mutex (only the once-per-second drain competes for it), which
// keeps every field of the histogram consistent with the others.
type LatencyRecorder struct {
	mu sync.Mutex
	h  Histogram
}

// Record adds one value (nanoseconds).
func (r *LatencyRecorder) Record(v int64) {
	r.mu.Lock()
	r.h.Record(v)
	r.mu.Unlock()
}

// LatencySet lets many goroutines record latencies (each into its own
// LatencyRecorder) while one goroutine periodically drains them all, so that
// per-interval and whole-run distributions can both be derived.
type LatencySet struct {
	mu   sync.Mutex
	recs []*LatencyRecorder
}

// NewRecorder registers and returns a recorder for one goroutine.
func (s *LatencySet) NewRecorder() *LatencyRecorder {
	r := &LatencyRecorder{}
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.mu.Unlock()
	return r
}

// DrainInto resets h, moves everything recorded so far into it and empties
// the recorders. No value is lost or counted twice.
func (s *LatencySet) DrainInto(h *Histogram) {
	h.Reset()
	s.mu.Lock()
	recs := s.recs
	s.mu.Unlock()
	for _, r := range recs {
		r.mu.Lock()
		h.Merge(&r.h)
		r.h.Reset()
		r.mu.Unlock()
	}
}

// durUs renders nanoseconds as microseconds for JSON output.
func durUs(ns int64) float64 { return math.Round(float64(ns)/float64(time.Microsecond)*10) / 10 }
