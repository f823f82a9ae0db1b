package main

import (
	"context"
	"time"
)

// Pacer is an open-loop schedule: the k-th message is due at start + k/rate, whatever happened
// to the messages before it. A caller that falls behind (a timer overslept, the broker applied
// flow control, the confirm window was full, a GC pause) sends immediately until it has caught
// up. A message's due time is its intended send time: latency is measured from it (see
// sendLoop), so a stall shows up in the latency of every message that was due during it, not
// only in the throughput (measuring from the actual send would hide it: coordinated omission).
//
// Pacer is not safe for concurrent use; each producer owns one.
type Pacer struct {
	interval float64 // nanoseconds between two messages
	origin   time.Time
	next     float64 // due time of the next message, ns since origin
}

// NewPacer returns a pacer for rate messages per second starting at now, or nil when rate <= 0
// (unlimited). A nil *Pacer never asks to wait.
func NewPacer(rate float64, now time.Time) *Pacer {
	if rate <= 0 {
		return nil
	}
	return &Pacer{interval: float64(time.Second) / rate, origin: now}
}

// Reserve takes the next slot of the schedule at time now and returns its due time (the
// message's intended send time) and how long the caller must wait for it (0: it is due, send
// now). A nil Pacer returns now and 0.
func (p *Pacer) Reserve(now time.Time) (due time.Time, wait time.Duration) {
	if p == nil {
		return now, 0
	}
	d := p.next
	p.next += p.interval
	due = p.origin.Add(time.Duration(d))
	if wait = due.Sub(now); wait < 0 {
		wait = 0
	}
	return due, wait
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
