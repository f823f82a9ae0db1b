package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

// stalledRun drives sendLoop at rate msg/s for one second's worth of messages, with one stall
// of length stall at message stallAt, and returns each message's latency measured as the
// consumer does: the time the message left the send path minus the timestamp it carries.
// Without window the send call itself stalls (a broker that stops reading the socket, a GC
// pause); with window the confirm of message stallAt comes late, and confirms arrive in order,
// so the confirm window (4 slots) fills and the loop waits for it.
func stalledRun(t *testing.T, rate float64, stallAt int, stall time.Duration, window bool) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var inflight chan struct{}
	confirms := make(chan int, 2000)
	confirmerDone := make(chan struct{})
	if window {
		inflight = make(chan struct{}, 4)
		go func() { // the confirm listener
			defer close(confirmerDone)
			for n := range confirms {
				if n == stallAt {
					time.Sleep(stall)
				}
				<-inflight
			}
		}()
	} else {
		close(confirmerDone)
	}
	total := int(rate)
	var lat []time.Duration
	n := 0
	errDone := errors.New("done")
	err := sendLoop(ctx, rate, inflight, func(stampNs int64) error {
		n++
		if n == stallAt && !window {
			time.Sleep(stall)
		}
		lat = append(lat, time.Duration(time.Now().UnixNano()-stampNs))
		if window {
			confirms <- n
		}
		if n == total {
			return errDone
		}
		return nil
	})
	close(confirms)
	<-confirmerDone
	if !errors.Is(err, errDone) {
		t.Fatalf("sendLoop: %v", err)
	}
	return lat
}

// TestSendLoop_StallShowsInLatency: a stall of the send path must show up in the latencies of
// the messages that were due during it (coordinated omission: measured from after the wait,
// they would all look fast and only the throughput would drop).
func TestSendLoop_StallShowsInLatency(t *testing.T) {
	for _, window := range []bool{false, true} {
		const stall = 300 * time.Millisecond
		lat := stalledRun(t, 1000, 100, stall, window)
		var slow int
		var worst time.Duration
		for _, l := range lat {
			if l >= 100*time.Millisecond {
				slow++
			}
			worst = max(worst, l)
		}
		// At 1000 msg/s about 300 messages were due during the stall: their latencies run
		// from 300 ms down to 0, so about 200 of them are over 100 ms.
		if worst < stall*3/4 || slow < 100 {
			t.Errorf("window=%v: worst latency %s, %d of %d messages >= 100ms; want >= %s and >= 100",
				window, worst, slow, len(lat), stall*3/4)
		}
	}
}

// TestSendLoop_UnpacedCountsWindowWait: without a rate, the send time is taken before the
// wait for the confirm window, so time spent waiting for confirms counts.
func TestSendLoop_UnpacedCountsWindowWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inflight := make(chan struct{}, 1)
	const hold = 200 * time.Millisecond
	// The first message's confirm comes late: the second send waits for the window.
	go func() {
		time.Sleep(hold)
		<-inflight
	}()
	var lat []time.Duration
	errDone := errors.New("done")
	err := sendLoop(ctx, 0, inflight, func(stampNs int64) error {
		lat = append(lat, time.Duration(time.Now().UnixNano()-stampNs))
		if len(lat) == 2 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("sendLoop: %v", err)
	}
	if lat[1] < hold/2 {
		t.Fatalf("second message waited for the confirm window but its latency is %s", lat[1])
	}
}
