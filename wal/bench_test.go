package wal

import (
	"fmt"
	"sync"
	"testing"
)

// BenchmarkWALAppend measures a publisher that appends batch records of 256 bytes to one log and
// waits until they are durable (real fsync), then retires them (a consumer keeping up).
func BenchmarkWALAppend(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			m, err := Open(Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			l, err := m.Log("bench")
			if err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 256)
			done := make(chan error, 1)
			cb := func(_ uint64, err error) { done <- err }
			offs := make([]uint64, batch)
			b.ReportAllocs()
			b.SetBytes(int64(batch * len(payload)))
			start := m.fsyncs.Load()
			for b.Loop() {
				for i := range batch - 1 {
					offs[i] = l.Append(payload, nil)
				}
				offs[batch-1] = l.Append(payload, cb) // callbacks run in offset order
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				l.Retire(offs...)
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "appends/s")
			b.ReportMetric(float64(m.fsyncs.Load()-start)/float64(b.N), "fsyncs/op")
		})
	}
}

// BenchmarkWALAppendConcurrent measures group commit across logs: each of 64 producers, spread
// over 8 logs, appends one 256-byte record per iteration and waits until it is durable.
func BenchmarkWALAppendConcurrent(b *testing.B) {
	const producers, logs = 64, 8
	b.Run(fmt.Sprintf("producers=%d/logs=%d", producers, logs), func(b *testing.B) {
		m, err := Open(Config{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		ls := make([]*Log, logs)
		for i := range ls {
			if ls[i], err = m.Log(fmt.Sprintf("q%d", i)); err != nil {
				b.Fatal(err)
			}
		}
		payload := make([]byte, 256)
		b.ReportAllocs()
		b.SetBytes(int64(producers * len(payload)))
		start := m.fsyncs.Load()
		var wg sync.WaitGroup
		for b.Loop() {
			wg.Add(producers)
			for p := range producers {
				l := ls[p%logs]
				l.Append(payload, func(off uint64, err error) {
					if err != nil {
						b.Error(err)
					}
					l.Retire(off)
					wg.Done()
				})
			}
			wg.Wait()
		}
		b.ReportMetric(float64(b.N*producers)/b.Elapsed().Seconds(), "appends/s")
		b.ReportMetric(float64(m.fsyncs.Load()-start)/float64(b.N*producers), "fsyncs/append")
	})
}
