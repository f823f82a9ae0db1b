package main

import (
	"context"
	"testing"
	"time"
)

func TestPacerUnlimited(t *testing.T) {
	p := NewPacer(0, time.Now())
	if p != nil {
		t.Fatal("rate 0 should give a nil pacer")
	}
	now := time.Now()
	if due, d := p.Reserve(now); d != 0 || !due.Equal(now) {
		t.Fatalf("nil pacer: due %s, wait %s; want now, 0", due, d)
	}
}

func TestPacerSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPacer(1000, t0) // 1 ms apart
	// A caller that always sleeps exactly as asked sends at 0,1,2,... ms, each at its due time.
	now := t0
	for k := 0; k < 100; k++ {
		due, d := p.Reserve(now)
		now = now.Add(d)
		if want := t0.Add(time.Duration(k) * time.Millisecond); !now.Equal(want) || !due.Equal(want) {
			t.Fatalf("message %d sent at %s due %s, want %s", k, now.Sub(t0), due.Sub(t0), want.Sub(t0))
		}
	}
}

func TestPacerAverageRateWithOversleep(t *testing.T) {
	// Timers oversleep; the schedule must still hold the average rate
	// because late messages are sent immediately until caught up.
	t0 := time.Unix(1000, 0)
	const rate = 10000.0
	p := NewPacer(rate, t0)
	now := t0
	sent := 0
	for now.Sub(t0) < time.Second {
		_, d := p.Reserve(now)
		if d > 0 {
			now = now.Add(d + 300*time.Microsecond) // oversleep 0.3 ms each time
		}
		sent++
	}
	if sent < rate*0.99 || sent > rate*1.01 {
		t.Fatalf("sent %d in 1s at rate %.0f", sent, rate)
	}
}

func TestPacerKeepsScheduleAfterStall(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPacer(1000, t0)
	p.Reserve(t0)
	// Stall for a whole second: the 999 messages that were due during it go out at once,
	// each with its own due time (so their latency counts the stall), then the schedule
	// goes on at 1 ms.
	now := t0.Add(time.Second)
	for k := 1; k <= 1000; k++ {
		due, d := p.Reserve(now)
		if d != 0 || !due.Equal(t0.Add(time.Duration(k)*time.Millisecond)) {
			t.Fatalf("message %d after the stall: due %s, wait %s; want due %dms, no wait", k, due.Sub(t0), d, k)
		}
	}
	if due, d := p.Reserve(now); d != time.Millisecond || !due.Equal(t0.Add(1001*time.Millisecond)) {
		t.Fatalf("caught up: due %s, wait %s; want 1001ms, 1ms", due.Sub(t0), d)
	}
}

func TestPacerLowRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPacer(2, t0)
	if _, d := p.Reserve(t0); d != 0 {
		t.Fatalf("first message should go at once, waited %s", d)
	}
	if _, d := p.Reserve(t0); d != 500*time.Millisecond {
		t.Fatalf("second message wait %s, want 500ms", d)
	}
}

func TestWaiter(t *testing.T) {
	var w Waiter
	ctx, cancel := context.WithCancel(context.Background())
	if !w.Wait(ctx, 0) {
		t.Fatal("zero wait with live ctx should return true")
	}
	start := time.Now()
	if !w.Wait(ctx, 5*time.Millisecond) || time.Since(start) < 5*time.Millisecond {
		t.Fatal("wait too short")
	}
	cancel()
	start = time.Now()
	if w.Wait(ctx, time.Hour) {
		t.Fatal("cancelled wait should return false")
	}
	if time.Since(start) > time.Second {
		t.Fatal("cancelled wait blocked")
	}
	if w.Wait(ctx, 0) {
		t.Fatal("zero wait with dead ctx should return false")
	}
}
