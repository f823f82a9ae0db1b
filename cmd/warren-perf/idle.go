package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// IdleSummary is the report of a memory scenario (--idle-queues or
// --idle-connections).
type IdleSummary struct {
	Scenario       string      `json:"scenario"` // "idle-queues" or "idle-connections"
	Requested      int         `json:"requested"`
	Created        int         `json:"created"`
	Seconds        float64     `json:"seconds"` // time to create them
	PerSecond      float64     `json:"per_s"`
	CleanupSeconds float64     `json:"cleanup_seconds"`
	ToolCPUSeconds float64     `json:"tool_cpu_seconds"`
	Broker         *IdleBroker `json:"broker,omitempty"`
	Errors         []string    `json:"errors,omitempty"`
}

// IdleBroker holds the broker-side figures of a memory scenario.
type IdleBroker struct {
	PID          int     `json:"pid"`
	RSSBeforeKiB int64   `json:"rss_before_kib"`
	RSSAfterKiB  int64   `json:"rss_after_kib"`
	GrowthKiB    int64   `json:"rss_growth_kib"`
	BytesPerItem float64 `json:"rss_growth_bytes_per_item"`
	CPUSeconds   float64 `json:"cpu_seconds"` // broker CPU spent creating them
}

// RSSGrowth computes the RSS growth and the growth per created item.
func RSSGrowth(beforeKiB, afterKiB int64, items int) (growthKiB int64, bytesPerItem float64) {
	growthKiB = afterKiB - beforeKiB
	if items > 0 {
		bytesPerItem = math.Round(float64(growthKiB) * 1024 / float64(items))
	}
	return growthKiB, bytesPerItem
}

// FormatIdle renders an IdleSummary for humans.
func FormatIdle(s IdleSummary) string {
	var b strings.Builder
	what := strings.TrimPrefix(s.Scenario, "idle-")
	fmt.Fprintf(&b, "summary: %s\n", s.Scenario)
	fmt.Fprintf(&b, "  created     %d of %d %s in %.3fs (%.0f/s)\n", s.Created, s.Requested, what, s.Seconds, s.PerSecond)
	if br := s.Broker; br != nil {
		fmt.Fprintf(&b, "  broker RSS  %d KiB -> %d KiB: +%d KiB (%.0f bytes per %s), pid %d\n",
			br.RSSBeforeKiB, br.RSSAfterKiB, br.GrowthKiB, br.BytesPerItem, strings.TrimSuffix(what, "s"), br.PID)
		fmt.Fprintf(&b, "  broker CPU  %.2fs while creating\n", br.CPUSeconds)
	}
	fmt.Fprintf(&b, "  tool CPU    %.2fs\n", s.ToolCPUSeconds)
	fmt.Fprintf(&b, "  cleanup     %.3fs\n", s.CleanupSeconds)
	for _, e := range s.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	return b.String()
}

// creationTime is how long creating took: up to the end, or, when creation
// stopped on an error (which may have been a long timeout), up to the last
// success.
func creationTime(t0, end time.Time, lastOKNs int64, failed bool) time.Duration {
	if failed {
		if lastOKNs == 0 {
			return 0
		}
		return time.Unix(0, lastOKNs).Sub(t0)
	}
	return end.Sub(t0)
}

// idleProgress prints "created so far" once per second until stop is closed.
func idleProgress(progress io.Writer, what string, t0 time.Time, created *atomic.Int64, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := int64(0)
	lastT := t0
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			n := created.Load()
			fmt.Fprintf(progress, "%6.1fs  %s %d  (%.0f/s)\n", now.Sub(t0).Seconds(), what, n,
				float64(n-last)/now.Sub(lastT).Seconds())
			last, lastT = n, now
		}
	}
}

// sleepCtx sleeps for d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) {
	var w Waiter
	w.Wait(ctx, d)
}

// runIdle runs --idle-queues or --idle-connections.
func runIdle(ctx context.Context, cfg *Config, progress io.Writer) (IdleSummary, error) {
	errs := newErrorLog(progress)
	pid := cfg.pidString()
	var s IdleSummary
	var rssBefore int64
	var brokerCPU0 cpuSample
	if pid != "" {
		var err error
		if rssBefore, err = procRSS(pid); err != nil {
			return s, fmt.Errorf("--pid: %w", err)
		}
		brokerCPU0 = sampleCPU(pid)
	}
	self0 := sampleCPU("self")

	var created int
	var elapsed time.Duration
	var cleanup func() time.Duration
	var err error
	if cfg.IdleQueues > 0 {
		s.Scenario, s.Requested = "idle-queues", cfg.IdleQueues
		created, elapsed, cleanup, err = createIdleQueues(ctx, cfg, progress, errs)
	} else {
		s.Scenario, s.Requested = "idle-connections", cfg.IdleConnections
		created, elapsed, cleanup, err = createIdleConnections(ctx, cfg, progress, errs)
	}
	if err != nil {
		return s, err
	}
	s.Created = created
	s.Seconds = round3(elapsed.Seconds())
	if created < s.Requested {
		fmt.Fprintf(progress, "warren-perf: only %d of %d created; time and rate are up to the last success\n", created, s.Requested)
	}
	if elapsed > 0 {
		s.PerSecond = round1(float64(created) / elapsed.Seconds())
	}
	if pid != "" {
		brokerCPU1 := sampleCPU(pid)
		fmt.Fprintf(progress, "warren-perf: created %d; letting the broker settle for %s before sampling RSS\n", created, cfg.IdleSettle)
		sleepCtx(ctx, cfg.IdleSettle)
		rssAfter, err := procRSS(pid)
		if err != nil {
			errs.add("read broker RSS: %v", err)
		} else {
			g, per := RSSGrowth(rssBefore, rssAfter, created)
			s.Broker = &IdleBroker{PID: cfg.PID, RSSBeforeKiB: rssBefore, RSSAfterKiB: rssAfter, GrowthKiB: g, BytesPerItem: per}
			if sec, _, ok := cpuUsage(brokerCPU0, brokerCPU1); ok {
				s.Broker.CPUSeconds = round3(sec)
			}
		}
	}
	s.CleanupSeconds = round3(cleanup().Seconds())
	if sec, _, ok := cpuUsage(self0, sampleCPU("self")); ok {
		s.ToolCPUSeconds = round3(sec)
	}
	s.Errors = errs.all()
	return s, nil
}

func idleQueueName(i int) string { return fmt.Sprintf("perf-idle-q-%d", i) }

// createIdleQueues declares cfg.IdleQueues queues with cfg.IdleParallel
// channels on one connection. It stops at the first error.
func createIdleQueues(ctx context.Context, cfg *Config, progress io.Writer, errs *errorLog) (int, time.Duration, func() time.Duration, error) {
	conn, err := dial(cfg.URL, "warren-perf idle-queues")
	if err != nil {
		return 0, 0, nil, err
	}
	chans := make([]*amqp.Channel, cfg.IdleParallel)
	err = withTimeout(rpcTimeout, "open channels", func() error {
		for i := range chans {
			var err error
			if chans[i], err = conn.Channel(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		conn.kill()
		return 0, 0, nil, err
	}

	var next, created, lastOK atomic.Int64
	declared := make([]atomic.Bool, cfg.IdleQueues)
	var failed atomic.Bool
	stop := make(chan struct{})
	t0 := time.Now()
	go idleProgress(progress, "queues", t0, &created, stop)
	var wg sync.WaitGroup
	for w := range chans {
		wg.Add(1)
		go func(ch *amqp.Channel) {
			defer wg.Done()
			last := -1
			if cfg.IdleNoWait {
				// Nowait declares are answered by nothing: a passive declare after them is
				// answered once the broker has handled every one before it on the channel.
				defer func() {
					if last < 0 || failed.Load() {
						return
					}
					if _, err := ch.QueueDeclarePassive(idleQueueName(last), cfg.Durable, false, false, false, nil); err != nil {
						errs.add("passive declare %s after the nowait ones: %v", idleQueueName(last), err)
						failed.Store(true)
						return
					}
					lastOK.Store(time.Now().UnixNano())
				}()
			}
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.IdleQueues {
					return
				}
				var err error
				if cfg.IdleNoWait {
					_, err = ch.QueueDeclare(idleQueueName(i), cfg.Durable, false, false, true, nil)
					last = i
				} else {
					_, err = ch.QueueDeclare(idleQueueName(i), cfg.Durable, false, false, false, nil)
				}
				if err != nil {
					errs.add("declare %s: %v", idleQueueName(i), err)
					failed.Store(true)
					return
				}
				declared[i].Store(true)
				lastOK.Store(time.Now().UnixNano())
				created.Add(1)
			}
		}(chans[w])
	}
	limit := cfg.hardTimeout() - 30*time.Second
	if !waitTimeout(&wg, limit) {
		errs.add("creating queues did not finish within %s", limit)
		failed.Store(true)
	}
	elapsed := creationTime(t0, time.Now(), lastOK.Load(), failed.Load())
	close(stop)

	cleanup := func() time.Duration {
		t := time.Now()
		defer conn.closeBounded()
		if cfg.Keep {
			return 0
		}
		// A failed declare closed its channel; use fresh ones.
		var cwg sync.WaitGroup
		var idx atomic.Int64
		for w := 0; w < cfg.IdleParallel; w++ {
			cwg.Add(1)
			go func() {
				defer cwg.Done()
				ch, err := conn.Channel()
				if err != nil {
					errs.add("cleanup channel: %v", err)
					return
				}
				for {
					i := int(idx.Add(1) - 1)
					if i >= len(declared) {
						return
					}
					if !declared[i].Load() {
						continue
					}
					if _, err := ch.QueueDelete(idleQueueName(i), false, false, false); err != nil {
						errs.add("delete %s: %v", idleQueueName(i), err)
						return
					}
				}
			}()
		}
		if !waitTimeout(&cwg, 5*time.Minute) {
			errs.add("deleting idle queues did not finish in time")
			conn.kill()
		}
		return time.Since(t)
	}
	return int(created.Load()), elapsed, cleanup, nil
}

// createIdleConnections opens cfg.IdleConnections connections with one
// channel each, cfg.IdleParallel at a time. It stops at the first error
// (typically the broker's file-descriptor/socket limit).
func createIdleConnections(ctx context.Context, cfg *Config, progress io.Writer, errs *errorLog) (int, time.Duration, func() time.Duration, error) {
	conns := make([]*Conn, cfg.IdleConnections)
	var connsMu sync.Mutex
	var next, created, lastOK atomic.Int64
	var failed atomic.Bool
	stop := make(chan struct{})
	t0 := time.Now()
	go idleProgress(progress, "connections", t0, &created, stop)
	var wg sync.WaitGroup
	for w := 0; w < cfg.IdleParallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				c, err := dial(cfg.URL, fmt.Sprintf("warren-perf idle %d", i))
				if err == nil {
					err = withTimeout(rpcTimeout, "channel.open", func() error { _, err := c.Channel(); return err })
					if err != nil {
						c.kill()
					}
				}
				if err != nil {
					errs.add("connection %d: %v", i, err)
					failed.Store(true)
					return
				}
				connsMu.Lock()
				conns[i] = c
				connsMu.Unlock()
				lastOK.Store(time.Now().UnixNano())
				created.Add(1)
			}
		}()
	}
	limit := cfg.hardTimeout() - 30*time.Second
	if !waitTimeout(&wg, limit) {
		errs.add("opening connections did not finish within %s", limit)
	}
	elapsed := creationTime(t0, time.Now(), lastOK.Load(), failed.Load())
	close(stop)
	cleanup := func() time.Duration {
		t := time.Now()
		connsMu.Lock()
		open := append([]*Conn(nil), conns...)
		connsMu.Unlock()
		closeAll(open)
		return time.Since(t)
	}
	return int(created.Load()), elapsed, cleanup, nil
}
