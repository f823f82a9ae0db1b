package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rpcTimeout bounds each synchronous setup/teardown RPC.
const rpcTimeout = 15 * time.Second

// errorLog collects distinct run errors (bounded).
type errorLog struct {
	mu   sync.Mutex
	seen map[string]int
	list []string
	out  io.Writer
}

func newErrorLog(out io.Writer) *errorLog { return &errorLog{seen: map[string]int{}, out: out} }

func (e *errorLog) add(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen[msg]++
	if e.seen[msg] > 1 || len(e.list) >= 50 {
		return
	}
	e.list = append(e.list, msg)
	fmt.Fprintf(e.out, "warren-perf: %s\n", msg)
}

func (e *errorLog) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.list))
	for _, m := range e.list {
		if n := e.seen[m]; n > 1 {
			m = fmt.Sprintf("%s (x%d)", m, n)
		}
		out = append(out, m)
	}
	return out
}

// loadRun holds the state of one load run.
type loadRun struct {
	cfg      *Config
	progress io.Writer
	errs     *errorLog
	c        Counters
	epochNs  int64 // messages stamped before this are from an earlier run
	running  atomic.Bool

	mu    sync.Mutex
	conns []*Conn
}

func (r *loadRun) track(c *Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
}

// watch reports broker-initiated closes and flow-control blocks of c.
func (r *loadRun) watch(c *Conn, name string) {
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	blocked := c.NotifyBlocked(make(chan amqp.Blocking, 4))
	go func() {
		for {
			select {
			case err, ok := <-closed:
				if ok && err != nil && r.running.Load() {
					r.errs.add("%s: connection closed: %v", name, err)
				}
				return
			case b, ok := <-blocked:
				if !ok {
					return
				}
				if b.Active {
					fmt.Fprintf(r.progress, "warren-perf: %s blocked by broker (%s)\n", name, b.Reason)
				} else {
					fmt.Fprintf(r.progress, "warren-perf: %s unblocked\n", name)
				}
			}
		}
	}()
}

// setup declares the queues (and the fanout exchange) on a setup connection.
func (r *loadRun) setup() (*Conn, *amqp.Channel, error) {
	cfg := r.cfg
	conn, err := dial(cfg.setupURL(), "warren-perf setup")
	if err != nil {
		return nil, nil, err
	}
	r.track(conn)
	var ch *amqp.Channel
	err = withTimeout(rpcTimeout, "setup", func() error {
		var err error
		if ch, err = conn.Channel(); err != nil {
			return fmt.Errorf("open channel: %w", err)
		}
		for i := 0; i < cfg.Queues; i++ {
			q := cfg.queueName(i)
			if _, err := ch.QueueDeclare(q, cfg.Durable || cfg.QueueType == "quorum" || cfg.QueueType == "stream", false, false, false, queueArgs(cfg)); err != nil {
				return fmt.Errorf("declare queue %s: %w (an existing queue with other properties? delete it or match --durable)", q, err)
			}
		}
		if cfg.ExchangeType == "fanout" {
			if err := ch.ExchangeDeclare(fanoutExchange, "fanout", cfg.Durable, false, false, false, nil); err != nil {
				return fmt.Errorf("declare exchange %s: %w", fanoutExchange, err)
			}
			for i := 0; i < cfg.Queues; i++ {
				if err := ch.QueueBind(cfg.queueName(i), "", fanoutExchange, false, nil); err != nil {
					return fmt.Errorf("bind %s: %w", cfg.queueName(i), err)
				}
			}
		}
		return nil
	})
	if err != nil {
		conn.kill()
		return nil, nil, err
	}
	return conn, ch, nil
}

// teardown deletes what setup declared (bounded in time).
func (r *loadRun) teardown(conn *Conn, ch *amqp.Channel) {
	cfg := r.cfg
	if conn == nil || conn.IsClosed() || ch == nil || ch.IsClosed() {
		// The setup connection died: use a fresh one.
		c, err := dial(cfg.setupURL(), "warren-perf cleanup")
		if err != nil {
			r.errs.add("cleanup: %v", err)
			return
		}
		r.track(c)
		conn = c
		if err := withTimeout(rpcTimeout, "cleanup channel", func() (err error) { ch, err = c.Channel(); return err }); err != nil {
			r.errs.add("cleanup: %v", err)
			c.kill()
			return
		}
	}
	err := withTimeout(rpcTimeout+time.Duration(cfg.Queues)*10*time.Millisecond, "cleanup", func() error {
		if cfg.ExchangeType == "fanout" {
			if err := ch.ExchangeDelete(fanoutExchange, false, false); err != nil {
				return fmt.Errorf("delete exchange %s: %w", fanoutExchange, err)
			}
		}
		for i := 0; i < cfg.Queues; i++ {
			if _, err := ch.QueueDelete(cfg.queueName(i), false, false, false); err != nil {
				return fmt.Errorf("delete queue %s: %w", cfg.queueName(i), err)
			}
		}
		return nil
	})
	if err != nil {
		r.errs.add("cleanup: %v", err)
		conn.kill()
	}
}

// startConsumer opens a consumer connection and starts consuming.
func (r *loadRun) startConsumer(ctx context.Context, i int, wg *sync.WaitGroup) error {
	cfg := r.cfg
	name := fmt.Sprintf("warren-perf consumer %d", i)
	conn, err := dial(cfg.consumerURL(), name)
	if err != nil {
		return err
	}
	r.track(conn)
	r.watch(conn, name)
	q := cfg.queueFor(i)
	var deliveries <-chan amqp.Delivery
	err = withTimeout(rpcTimeout, name, func() error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if !cfg.AutoAck && cfg.Prefetch > 0 {
			if err := ch.Qos(cfg.Prefetch, 0, false); err != nil {
				return fmt.Errorf("qos: %w", err)
			}
		}
		deliveries, err = ch.Consume(q, fmt.Sprintf("perf-%d", i), cfg.AutoAck, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("consume %s: %w", q, err)
		}
		return nil
	})
	if err != nil {
		conn.kill()
		return fmt.Errorf("%s: %w", name, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.consume(ctx, name, deliveries)
	}()
	return nil
}

// consume is the consumer loop: timestamp → latency, count, (multi-)ack.
func (r *loadRun) consume(ctx context.Context, name string, deliveries <-chan amqp.Delivery) {
	cfg := r.cfg
	multiple := cfg.MultipleAck > 1
	pending := 0
	lat := r.c.Latency.NewRecorder()
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-deliveries:
			if !ok {
				if ctx.Err() == nil {
					r.errs.add("%s: delivery channel closed", name)
				}
				return
			}
			now := time.Now().UnixNano()
			if ts, ok := sendTime(d.Body, d.Headers); ok && ts >= r.epochNs && ts <= now+int64(time.Second) {
				lat.Record(now - ts)
			} else {
				r.c.Stale.Add(1)
			}
			r.c.Received.Add(1)
			if cfg.AutoAck {
				continue
			}
			pending++
			if pending >= cfg.MultipleAck {
				if err := d.Ack(multiple); err != nil {
					if ctx.Err() == nil {
						r.errs.add("%s: ack: %v", name, err)
					}
					return
				}
				pending = 0
			}
		}
	}
}

// producer is one publishing connection/channel.
type producer struct {
	name     string
	conn     *Conn
	ch       *amqp.Channel
	exchange string
	key      string
	inflight chan struct{} // confirm window; nil when confirms are off
}

// startProducer opens a producer connection; it starts publishing when
// start is closed.
func (r *loadRun) startProducer(ctx context.Context, i int, start <-chan struct{}, wg *sync.WaitGroup) error {
	cfg := r.cfg
	p := &producer{name: fmt.Sprintf("warren-perf producer %d", i)}
	conn, err := dial(cfg.URL, p.name)
	if err != nil {
		return err
	}
	p.conn = conn
	r.track(conn)
	r.watch(conn, p.name)
	if cfg.ExchangeType == "fanout" {
		p.exchange, p.key = fanoutExchange, ""
	} else {
		p.exchange, p.key = "", cfg.queueFor(i)
	}
	var confirms chan amqp.Confirmation
	err = withTimeout(rpcTimeout, p.name, func() error {
		var err error
		if p.ch, err = conn.Channel(); err != nil {
			return err
		}
		if cfg.Confirm > 0 {
			if err := p.ch.Confirm(false); err != nil {
				return fmt.Errorf("confirm.select: %w", err)
			}
			confirms = p.ch.NotifyPublish(make(chan amqp.Confirmation, cfg.Confirm+1))
			p.inflight = make(chan struct{}, cfg.Confirm)
		}
		return nil
	})
	if err != nil {
		conn.kill()
		return fmt.Errorf("%s: %w", p.name, err)
	}
	if confirms != nil {
		// Not in wg: it ends when the channel closes at shutdown.
		go func() {
			for c := range confirms {
				if c.Ack {
					r.c.Confirmed.Add(1)
				} else {
					r.c.Nacked.Add(1)
				}
				select {
				case <-p.inflight:
				default:
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-start:
		case <-ctx.Done():
			return
		}
		r.publish(ctx, p)
	}()
	return nil
}

// publish is the producer loop.
func (r *loadRun) publish(ctx context.Context, p *producer) {
	cfg := r.cfg
	msg := amqp.Publishing{Body: newBody(cfg.Size), DeliveryMode: amqp.Transient}
	if cfg.Persistent {
		msg.DeliveryMode = amqp.Persistent
	}
	err := sendLoop(ctx, float64(cfg.Rate), p.inflight, func(stampNs int64) error {
		// The body buffer is reused: Publish writes it to the socket before returning.
		stamp(&msg, stampNs)
		if err := p.ch.Publish(p.exchange, p.key, false, false, msg); err != nil {
			return err
		}
		r.c.Published.Add(1)
		return nil
	})
	if err != nil && ctx.Err() == nil {
		r.errs.add("%s: publish: %v", p.name, err)
	}
}

// sendLoop calls send until ctx ends or send fails, at rate messages per second (0: as fast as
// possible), each time with the timestamp (Unix ns) the message is to carry: its intended send
// time, so that latency counts the waits of the send path (no coordinated omission). With a
// rate that is the message's slot in the Pacer's schedule, or, when the producer was ahead of
// the schedule and slept until the slot, the moment it woke: the timer's own lateness (up to
// about a millisecond, Go's timer resolution on Linux) is the tool's, not the broker's.
// Without a rate it is when the loop became ready to send, before the wait for the confirm
// window. inflight, when not nil, is the confirm window: a slot is taken before each send (the
// confirm listener frees it).
func sendLoop(ctx context.Context, rate float64, inflight chan struct{}, send func(stampNs int64) error) error {
	pacer := NewPacer(rate, time.Now())
	var w Waiter
	done := ctx.Done()
	for {
		intended, wait := pacer.Reserve(time.Now())
		if wait > 0 {
			if !w.Wait(ctx, wait) {
				return nil
			}
			intended = time.Now()
		}
		if inflight != nil {
			select {
			case inflight <- struct{}{}:
			case <-done:
				return nil
			}
		} else {
			select {
			case <-done:
				return nil
			default:
			}
		}
		if err := send(intended.UnixNano()); err != nil {
			return err
		}
	}
}

// runLoad runs the throughput/latency scenario and returns its summary.
func runLoad(ctx context.Context, cfg *Config, progress io.Writer) (Summary, error) {
	r := &loadRun{cfg: cfg, progress: progress, errs: newErrorLog(progress)}
	r.epochNs = time.Now().UnixNano()
	r.running.Store(true)

	var setupConn *Conn
	var setupCh *amqp.Channel
	if cfg.Queues > 0 && (cfg.Producers > 0 || cfg.Consumers > 0) {
		var err error
		setupConn, setupCh, err = r.setup()
		if err != nil {
			return Summary{}, err
		}
	}

	workCtx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	start := make(chan struct{})
	shutdown := func() {
		r.running.Store(false)
		stopWork()
		// A producer can be stuck in a socket write while the broker
		// applies flow control (it stops reading); closing the connections
		// below sets a socket deadline that unblocks it.
		waitTimeout(&wg, time.Second)
		r.mu.Lock()
		conns := append([]*Conn(nil), r.conns...)
		r.mu.Unlock()
		var others []*Conn
		for _, c := range conns {
			if c != setupConn {
				others = append(others, c)
			}
		}
		closeAll(others)
		if !cfg.Keep && setupConn != nil {
			r.teardown(setupConn, setupCh)
		}
		r.mu.Lock()
		conns = append([]*Conn(nil), r.conns...)
		r.mu.Unlock()
		closeAll(conns)
	}

	var startErr error
	for i := 0; i < cfg.Consumers && startErr == nil; i++ {
		startErr = r.startConsumer(workCtx, i, &wg)
	}
	for i := 0; i < cfg.Producers && startErr == nil; i++ {
		startErr = r.startProducer(workCtx, i, start, &wg)
	}
	if startErr == nil {
		startErr = ctx.Err()
	}
	if startErr != nil {
		shutdown()
		return Summary{}, startErr
	}

	// Measurement window.
	pid := cfg.pidString()
	var brokerStart, brokerEnd cpuSample
	var rssStart, rssEnd int64
	if pid != "" {
		brokerStart = sampleCPU(pid)
		if !brokerStart.ok {
			r.errs.add("cannot read /proc/%s/stat; broker CPU not reported", pid)
		}
		rssStart, _ = procRSS(pid)
	}
	selfStart := sampleCPU("self")
	hostStart := sampleHost()
	r.c.Latency.DrainInto(&Histogram{}) // discard anything that arrived before the start
	t0 := time.Now()
	iv := NewInterval(t0, r.c.Snapshot())
	close(start)

	ticker := time.NewTicker(time.Second)
	end := time.NewTimer(cfg.Duration)
	confirms := cfg.Confirm > 0
loop:
	for {
		select {
		case now := <-ticker.C:
			el, rates, lat := iv.Tick(now, r.c.Snapshot(), &r.c.Latency)
			fmt.Fprintln(progress, FormatProgress(el, rates, confirms, lat))
		case <-end.C:
			break loop
		case <-ctx.Done():
			fmt.Fprintln(progress, "warren-perf: interrupted, stopping early")
			break loop
		}
	}
	ticker.Stop()
	t1 := time.Now()
	final := r.c.Snapshot()
	if t1.Sub(iv.lastTime) >= 100*time.Millisecond {
		el, rates, lat := iv.Tick(t1, final, &r.c.Latency)
		fmt.Fprintln(progress, FormatProgress(el, rates, confirms, lat))
	} else {
		iv.Tick(t1, final, &r.c.Latency)
	}
	selfEnd := sampleCPU("self")
	hostEnd := sampleHost()
	if pid != "" {
		brokerEnd = sampleCPU(pid)
		rssEnd, _ = procRSS(pid)
	}

	total := final.Sub(iv.base())
	window := t1.Sub(t0)
	sum := BuildSummary(cfg.summaryConfig(), total, window, &iv.Total)
	if s, c, ok := cpuUsage(selfStart, selfEnd); ok {
		sum.Tool = CPUSummary{Seconds: round3(s), Cores: round3(c)}
	}
	if s, c, ok := cpuUsage(brokerStart, brokerEnd); ok {
		sum.Broker = &BrokerSummary{
			PID:              cfg.PID,
			CPUSummary:       CPUSummary{Seconds: round3(s), Cores: round3(c)},
			SentPerCore:      PerCore(sum.SentRate, c),
			ReceivedPerCore:  PerCore(sum.RecvRate, c),
			MsgPerCoreSecond: PerCore(sum.SentRate+sum.RecvRate, c),
			RSSStartKiB:      rssStart,
			RSSEndKiB:        rssEnd,
		}
	}
	if _, busy, ok := cpuUsage(hostStart, hostEnd); ok {
		var brokerCores float64
		if sum.Broker != nil {
			brokerCores = sum.Broker.Cores
		}
		h := HostUsage(busy, sum.Tool.Cores, brokerCores)
		sum.Host = &h
	}
	if n := r.c.Stale.Load(); n > 0 {
		r.errs.add("%d deliveries carried no timestamp from this run (left over in the queues?); excluded from latency", n)
	}

	shutdown()
	sum.Errors = r.errs.all()
	return sum, nil
}

// queueArgs are the declare arguments of the load's queues.
func queueArgs(cfg *Config) amqp.Table {
	t := amqp.Table{}
	if cfg.QueueType != "" && cfg.QueueType != "classic" {
		t["x-queue-type"] = cfg.QueueType
	}
	for _, kv := range strings.Split(cfg.QueueArgs, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				t[k] = n
			} else {
				t[k] = v
			}
		}
	}
	if len(t) == 0 {
		return nil
	}
	return t
}
