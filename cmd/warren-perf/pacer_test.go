package main

import (
	"context"
	"testing"
	"time"
)

func TestPacerUnlimited(t *testing.T) {
	p := NewPacer(0, defaultMaxLag, time.Now())
	if p != nil {
		t.Fatal("rate 0 should give a nil pacer")
	}
	if d := p.Reserve(time.Now()); d != 0 {
		t.Fatalf("nil pacer asked to wait %s", d)
	}
}

func TestPacerSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPacer(1000, defaultMaxLag, t0) // 1 ms apart
	// A caller that always sleeps exactly as asked sends at 0,1,2,... ms.
	now := t0
	for k := 0; k < 100; k++ {
		d := p.Reserve(now)
		now = now.Add(d)
		if want := t0.Add(time.Duration(k) * time.Millisecond); !now.Equal(want) {
			t.Fatalf("message %d sent at %s, want %s", k, now.Sub(t0), want.Sub(t0))
		}
	}
}

func TestPacerAverageRateWithOversleep(t *testing.T) {
	// Timers oversleep; the schedule must still hold the average rate
	// because late messages are sent immediately until caught up.
	t0 := time.Unix(1000, 0)
	const rate = 10000.0
	p := NewPacer(rate, defaultMaxLag, t0)
	now := t0
	sent := 0
	for now.Sub(t0) < time.Second {
		d := p.Reserve(now)
		if d > 0 {
			now = now.Add(d + 300*time.Microsecond) // oversleep 0.3 ms each time
		}
		sent++
	}
	if sent < rate*0.99 || sent > rate*1.01 {
		t.Fatalf("sent %d in 1s at rate %.0f", sent, rate)
	}
}

func TestPacerBoundedBurstAfterStall(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPacer(1000, 10*time.Millisecond, t0)
	p.Reserve(t0)
	// Stall for a whole second: at most maxLag worth (10 msgs) + 1 may go
	// out back to back, not the 1000 "owed".
	now := t0.Add(time.Second)
	burst := 0
	for p.Reserve(now) == 0 {
		burst++
		if burst > 1000 {
			break
		}
	}
	if burst < 10 || burst > 12 {
		t.Fatalf("burst after stall = %d, want ~11", burst)
	}
}

func TestPacerLowRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPacer(2, defaultMaxLag, t0)
	if d := p.Reserve(t0); d != 0 {
		t.Fatalf("first message should go at once, waited %s", d)
	}
	if d := p.Reserve(t0); d != 500*time.Millisecond {
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
