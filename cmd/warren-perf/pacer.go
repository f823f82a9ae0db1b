package main

import (
	"context"
	"time"
)

// Pacer is a token-bucket rate limiter expressed as a schedule (GCRA): the
// k-th message is due at start + k/rate. A caller that falls behind schedule
// (e.g. because a timer overslept) may send immediately until it has caught
// up, but never more than maxLag worth of messages in a burst, so a long stall
// (flow control, GC) does not turn into an unbounded catch-up burst.
//
// Pacer is not safe for concurrent use; each producer owns one.
type Pacer struct {
	interval float64 // nanoseconds between two messages
	maxLag   float64 // nanoseconds of credit that may accumulate
	origin   time.Time
	next     float64 // due time of the next message, ns since origin
}

// defaultMaxLag bounds the catch-up burst of a Pacer.
const defaultMaxLag = 50 * time.Millisecond

// NewPacer returns a pacer for rate messages per second starting at now, or
// nil when rate <= 0 (unlimited). A nil *Pacer never asks to wait.
func NewPacer(rate float64, maxLag time.Duration, now time.Time) *Pacer {
	if rate <= 0 {
		return nil
	}
	iv := float64(time.Second) / rate
	lag := float64(maxLag)
	if lag < iv {
		lag = iv
	}
	return &Pacer{interval: iv, maxLag: lag, origin: now}
}

// Reserve takes one token at time now and returns how long the caller must
// wait before sending (0 = send now).
func (p *Pacer) Reserve(now time.Time) time.Duration {
	if p == nil {
		return 0
	}
	t := float64(now.Sub(p.origin))
	due := p.next
	if due < t-p.maxLag {
		due = t - p.maxLag
	}
	p.next = due + p.interval
	if due <= t {
		return 0
	}
	return time.Duration(due - t)
}

// Waiter sleeps for pacer waits on a reusable timer and can be interrupted
// by ctx. It returns false when ctx ended first.
type Waiter struct {
	timer *time.Timer
}

// Wait blocks for d (if d > 0) or until ctx is done.
func (w *Waiter) Wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	select {
	case <-w.timer.C:
		return true
	case <-ctx.Done():
		w.timer.Stop()
		return false
	}
}
