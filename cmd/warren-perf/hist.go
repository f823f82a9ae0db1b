package main

import (
	"math"
	"math/bits"
	"sync/atomic"
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

// AtomicHistogram is a concurrency-safe histogram that many goroutines can
// record into while one goroutine periodically drains it (Drain), so that
// per-interval and whole-run distributions can both be derived without locks
// on the hot path.
type AtomicHistogram struct {
	counts [histBuckets]atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
	min    atomic.Int64 // stored as value+1 so that 0 means "unset"
}

// Record adds one value (nanoseconds). Safe for concurrent use.
func (a *AtomicHistogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	a.counts[bucketIndex(v)].Add(1)
	a.sum.Add(v)
	for {
		m := a.max.Load()
		if v <= m || a.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := a.min.Load()
		if (m != 0 && v+1 >= m) || a.min.CompareAndSwap(m, v+1) {
			break
		}
	}
}

// Drain moves everything recorded so far into a fresh Histogram and resets
// the atomic one. Values recorded concurrently with Drain end up either in
// this drain or the next one; none is lost.
func (a *AtomicHistogram) Drain() *Histogram {
	h := &Histogram{}
	a.DrainInto(h)
	return h
}

// DrainInto is Drain into a caller-provided (reset) histogram.
func (a *AtomicHistogram) DrainInto(h *Histogram) {
	h.Reset()
	for i := range a.counts {
		if c := a.counts[i].Swap(0); c != 0 {
			h.counts[i] = c
			h.n += c
		}
	}
	h.sum = float64(a.sum.Swap(0))
	h.max = a.max.Swap(0)
	mn := a.min.Swap(0)
	if h.n == 0 {
		h.min, h.max, h.sum = 0, 0, 0
		return
	}
	if mn == 0 {
		// A value raced in between the bucket swap and the min swap; fall
		// back to the lowest non-empty bucket bound.
		for i, c := range h.counts {
			if c != 0 {
				mn, _ = bucketBounds(i)
				mn++
				break
			}
		}
	}
	h.min = mn - 1
	if h.max < h.min {
		h.max = h.min
	}
}

// durMs renders nanoseconds as milliseconds for human output.
func durMs(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }

// durUs renders nanoseconds as microseconds for JSON output.
func durUs(ns int64) float64 { return math.Round(float64(ns)/float64(time.Microsecond)*10) / 10 }
