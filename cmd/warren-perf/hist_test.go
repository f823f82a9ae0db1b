package main

import (
	"math"
	"math/rand"
	"sort"
	"sync"
	"testing"
)

func TestBucketIndexBoundsRoundTrip(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 2, 255, 256, 257, 511, 512, 1000, 123456, 1 << 30, histMaxValue - 1} {
		i := bucketIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketIndex(%d) = %d out of range", v, i)
		}
		if i < prev {
			t.Fatalf("bucketIndex not monotonic at %d", v)
		}
		prev = i
		lo, w := bucketBounds(i)
		if v < lo || v >= lo+w {
			t.Fatalf("value %d not in bucket %d [%d,%d)", v, i, lo, lo+w)
		}
	}
	if got := bucketIndex(histMaxValue * 4); got != histBuckets-1 {
		t.Fatalf("overflow value went to bucket %d, want last", got)
	}
	if got := bucketIndex(-5); got != 0 {
		t.Fatalf("negative value went to bucket %d", got)
	}
}

func TestBucketsContiguous(t *testing.T) {
	// Every bucket starts where the previous one ends: no gaps, no overlaps.
	var end int64
	for i := 0; i < histBuckets; i++ {
		lo, w := bucketBounds(i)
		if lo != end {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, end)
		}
		if bucketIndex(lo) != i || bucketIndex(lo+w-1) != i {
			t.Fatalf("bucket %d bounds do not map back", i)
		}
		end = lo + w
	}
	if end != histMaxValue {
		t.Fatalf("buckets end at %d, want %d", end, histMaxValue)
	}
}

func TestHistogramRelativeError(t *testing.T) {
	for v := int64(1); v < histMaxValue; v = v*3/2 + 1 {
		var h Histogram
		h.Record(v)
		h.Record(v) // min==max clamps; use a second, different value
		h.Record(histMaxValue - 1)
		h.Record(0)
		// the median of {0, v, v, max} is v
		got := h.Quantile(0.5)
		if rel := math.Abs(float64(got-v)) / float64(v); rel > 1.0/(1<<(histSubBits-1)) {
			t.Fatalf("median of %d reported as %d (rel err %.4f)", v, got, rel)
		}
	}
}

func TestHistogramQuantilesVsSorted(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var h Histogram
	vals := make([]int64, 100000)
	for i := range vals {
		// log-normal-ish latencies between ~10µs and ~100ms
		vals[i] = int64(math.Exp(rng.NormFloat64()*1.5 + 12))
		h.Record(vals[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	if h.Count() != uint64(len(vals)) {
		t.Fatalf("count %d", h.Count())
	}
	if h.Min() != vals[0] || h.Max() != vals[len(vals)-1] {
		t.Fatalf("min/max %d/%d, want %d/%d", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
	}
	for _, q := range []float64{0.5, 0.95, 0.99, 0.999} {
		want := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.Quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.01 {
			t.Errorf("q%.3f = %d, exact %d (rel err %.4f)", q, got, want, rel)
		}
	}
	if h.Quantile(0) != h.Min() || h.Quantile(1) != h.Max() {
		t.Error("q0/q1 should be min/max")
	}
}

func TestHistogramEmptyAndMerge(t *testing.T) {
	var a, b Histogram
	if a.Quantile(0.5) != 0 || a.Mean() != 0 || a.Count() != 0 {
		t.Fatal("empty histogram should report zeros")
	}
	for i := int64(1); i <= 100; i++ {
		a.Record(i * 1000)
		b.Record(i * 1000000)
	}
	a.Merge(&b)
	var empty Histogram
	a.Merge(&empty)
	if a.Count() != 200 || a.Min() != 1000 || a.Max() != 100000000 {
		t.Fatalf("merged count/min/max = %d/%d/%d", a.Count(), a.Min(), a.Max())
	}
	// 50th percentile is the largest of the small values
	if got := a.Quantile(0.5); math.Abs(float64(got-100000))/100000 > 0.01 {
		t.Fatalf("median %d", got)
	}
	if got, want := a.Mean(), (5050.0*1000+5050.0*1000000)/200; math.Abs(got-want) > 1 {
		t.Fatalf("mean %f want %f", got, want)
	}
	a.Reset()
	if a.Count() != 0 || a.Max() != 0 {
		t.Fatal("reset")
	}
}

func TestLatencySetConcurrentDrain(t *testing.T) {
	var set LatencySet
	var total Histogram
	const workers, per = 4, 20000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		rec := set.NewRecorder()
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				rec.Record(int64(1000 + i + w))
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var h Histogram
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		set.DrainInto(&h)
		total.Merge(&h)
	}
	set.DrainInto(&h)
	total.Merge(&h)
	if total.Count() != workers*per {
		t.Fatalf("lost values: %d of %d", total.Count(), workers*per)
	}
	if total.Min() != 1000 || total.Max() != 1000+per-1+workers-1 {
		t.Fatalf("min/max %d/%d", total.Min(), total.Max())
	}
	wantMean := 1000 + float64(per-1)/2 + float64(workers-1)/2
	if math.Abs(total.Mean()-wantMean) > 1e-6 {
		t.Fatalf("mean %f want %f", total.Mean(), wantMean)
	}
	set.DrainInto(&h)
	if h.Count() != 0 || h.Min() != 0 || h.Max() != 0 {
		t.Fatal("drained histogram not empty")
	}
}

func TestHistogramNegativeClampsToZero(t *testing.T) {
	var h Histogram
	h.Record(0)
	h.Record(-3)
	if h.Count() != 2 || h.Min() != 0 || h.Max() != 0 {
		t.Fatalf("count/min/max %d/%d/%d", h.Count(), h.Min(), h.Max())
	}
}
