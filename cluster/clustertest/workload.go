package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Message headers the workload writes and the checker's recorder reads.
const (
	HeaderID  = "x-chaos-id"
	HeaderPub = "x-chaos-pub"
	HeaderSeq = "x-chaos-seq"
)

// QueueSpec is one queue of a workload.
type QueueSpec struct {
	Name  string
	Class QueueClass
	Args  amqp.Table // queue.declare arguments (x-queue-type, ...)
	// Nodes are the nodes (1-based) this queue's clients use: client k starts on
	// Nodes[k % len] and moves to the next one when its connection fails.
	Nodes []int
}

// WorkloadConfig configures publishers, consumers and a metadata worker.
type WorkloadConfig struct {
	Queues     []QueueSpec
	Publishers int // per queue (default 2)
	Consumers  int // per queue (default 2)
	Window     int // unconfirmed messages in flight per publisher (default 64)
	// Rate limits each publisher to this many messages per second (0: as fast as confirms
	// come back).
	Rate     float64
	BodySize int // bytes of body beyond the id (default 100)
	Prefetch int // per consumer (default 32)
	// ConsumerDelay starts the consumers this long after the publishers (a backlog).
	ConsumerDelay time.Duration
	// Transient publishes with delivery-mode 1 (not persistent), which a crash may lose even
	// when confirmed: for tests that the checker sees losses.
	Transient bool
	// Meta runs a worker that declares and deletes exchanges, queues and bindings on MetaNodes
	// every MetaEvery (default 100 ms), recorded as EvMeta events.
	Meta      bool
	MetaNodes []int
	MetaEvery time.Duration
	// URL gives a node's AMQP URL (required).
	URL func(node int) string
	Rec *Recorder // required
	// Logf receives connection failures (default: discarded).
	Logf func(format string, args ...any)
}

// Workload is a running set of clients.
type Workload struct {
	cfg       WorkloadConfig
	pubCtx    context.Context
	pubStop   context.CancelFunc
	conCtx    context.Context
	conStop   context.CancelFunc
	pubWG     sync.WaitGroup
	conWG     sync.WaitGroup
	metaWG    sync.WaitGroup
	mu        sync.Mutex
	confirmed map[string]bool // id → delivered yet
	delivered map[string]bool
	pending   int // confirmed and not delivered
	// lastOK is, per queue, the publish time of the latest-published message confirmed so far.
	lastOK    map[string]time.Time
	lastDeliv time.Time
	published atomic.Int64
}

// StartWorkload starts the clients; they run until StopPublishers and Stop.
func StartWorkload(cfg WorkloadConfig) *Workload {
	if cfg.Publishers == 0 {
		cfg.Publishers = 2
	}
	if cfg.Consumers == 0 {
		cfg.Consumers = 2
	}
	if cfg.Window == 0 {
		cfg.Window = 64
	}
	if cfg.BodySize == 0 {
		cfg.BodySize = 100
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = 32
	}
	if cfg.MetaEvery == 0 {
		cfg.MetaEvery = 100 * time.Millisecond
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	// Drain's quiet period counts from the consumers' start at the earliest.
	w := &Workload{cfg: cfg, confirmed: map[string]bool{}, delivered: map[string]bool{}, lastOK: map[string]time.Time{}, lastDeliv: time.Now().Add(cfg.ConsumerDelay)}
	w.pubCtx, w.pubStop = context.WithCancel(context.Background())
	w.conCtx, w.conStop = context.WithCancel(context.Background())
	for _, q := range cfg.Queues {
		for k := 0; k < cfg.Consumers; k++ {
			w.conWG.Add(1)
			go w.consume(q, k)
		}
		for k := 0; k < cfg.Publishers; k++ {
			w.pubWG.Add(1)
			go w.publish(q, k)
		}
	}
	if cfg.Meta && len(cfg.MetaNodes) > 0 {
		w.metaWG.Add(1)
		go w.meta()
	}
	return w
}

// Published is the number of messages sent so far.
func (w *Workload) Published() int64 { return w.published.Load() }

// Pending is the number of confirmed messages not delivered yet.
func (w *Workload) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending
}

// WaitConfirmedAfter waits until every queue has confirmed a message published after t (the
// queues work again after the faults healed), or until timeout. It returns the queues that did
// not: stuck ones.
func (w *Workload) WaitConfirmedAfter(t time.Time, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		var stuck []string
		w.mu.Lock()
		for _, q := range w.cfg.Queues {
			if !w.lastOK[q.Name].After(t) {
				stuck = append(stuck, q.Name)
			}
		}
		w.mu.Unlock()
		if len(stuck) == 0 || time.Now().After(deadline) {
			return stuck
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StopPublishers stops publishing (and the metadata worker); each publisher waits up to 5 s
// for its outstanding confirms first.
func (w *Workload) StopPublishers() {
	w.pubStop()
	w.pubWG.Wait()
	w.metaWG.Wait()
}

// Drain waits until every confirmed message has been delivered, or until no delivery came for
// quiet, or until timeout. It returns the confirmed messages still not delivered.
func (w *Workload) Drain(quiet, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		p, last := w.pending, w.lastDeliv
		w.mu.Unlock()
		if p == 0 || time.Since(last) > quiet || time.Now().After(deadline) {
			return p
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops everything (consumers last).
func (w *Workload) Stop() {
	w.StopPublishers()
	w.conStop()
	w.conWG.Wait()
}

// dial connects to nodes[start], then the next ones, until one answers or ctx ends.
func (w *Workload) dial(ctx context.Context, nodes []int, start int) (*amqp.Connection, int, int) {
	backoff := 50 * time.Millisecond
	for k := start; ; k++ {
		if ctx.Err() != nil {
			return nil, 0, k
		}
		node := nodes[k%len(nodes)]
		conn, err := amqp.DialConfig(w.cfg.URL(node), amqp.Config{
			Heartbeat: 5 * time.Second,
			Dial: func(network, addr string) (net.Conn, error) {
				d := net.Dialer{Timeout: 2 * time.Second}
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				// The AMQP handshake must finish in bounded time, even from a paused node.
				c.SetDeadline(time.Now().Add(5 * time.Second))
				return c, nil
			},
		})
		if err == nil {
			return conn, node, k
		}
		select {
		case <-ctx.Done():
			return nil, 0, k
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (w *Workload) publish(q QueueSpec, k int) {
	defer w.pubWG.Done()
	ctx := w.pubCtx
	name := fmt.Sprintf("%s.p%d", q.Name, k)
	var seq uint64
	next := k
	session := 0
	var tick *time.Ticker
	if w.cfg.Rate > 0 {
		tick = time.NewTicker(time.Duration(float64(time.Second) / w.cfg.Rate))
		defer tick.Stop()
	}
	pad := make([]byte, w.cfg.BodySize)
	for i := range pad {
		pad[i] = 'x'
	}
	for ctx.Err() == nil {
		conn, node, k2 := w.dial(ctx, q.Nodes, next)
		if conn == nil {
			return
		}
		next = k2 + 1 // after a failure: the next node
		session++
		w.cfg.Rec.Add(Event{Kind: EvClient, Client: name, Session: session, Node: node, Queue: q.Name, Detail: "connected"})
		err := w.publishOn(ctx, conn, q, name, session, node, &seq, tick, pad)
		conn.Close()
		w.cfg.Rec.Add(Event{Kind: EvClient, Client: name, Session: session, Node: node, Queue: q.Name, Detail: "disconnected", Err: errText(err)})
		if err != nil {
			w.cfg.Logf("%s on node %d: %v", name, node, err)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// publishOn publishes on one connection until it fails or ctx ends.
func (w *Workload) publishOn(ctx context.Context, conn *amqp.Connection, q QueueSpec, name string, session, node int, seq *uint64, tick *time.Ticker, pad []byte) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(q.Name, true, false, false, false, q.Args); err != nil {
		return fmt.Errorf("declare: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	window := w.cfg.Window
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window+8))
	returns := ch.NotifyReturn(make(chan amqp.Return, window+8))
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	sem := make(chan struct{}, window)
	var pmu sync.Mutex
	type sent struct {
		id string
		at time.Time
	}
	pending := map[uint64]sent{} // delivery tag → message
	var tag uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range confirms {
			pmu.Lock()
			m := pending[c.DeliveryTag]
			id := m.id
			delete(pending, c.DeliveryTag)
			pmu.Unlock()
			if id == "" {
				continue
			}
			if c.Ack {
				w.cfg.Rec.Add(Event{Kind: EvConfirm, Queue: q.Name, ID: id, Client: name, Session: session, Node: node})
				w.mu.Lock()
				if m.at.After(w.lastOK[q.Name]) {
					w.lastOK[q.Name] = m.at
				}
				if _, seen := w.confirmed[id]; !seen {
					w.confirmed[id] = true
					if !w.delivered[id] {
						w.pending++
					}
				}
				w.mu.Unlock()
			} else {
				w.cfg.Rec.Add(Event{Kind: EvNack, Queue: q.Name, ID: id, Client: name, Session: session, Node: node})
			}
			<-sem
		}
	}()
	go func() {
		for r := range returns {
			id, _ := r.Headers[HeaderID].(string)
			w.cfg.Rec.Add(Event{Kind: EvReturn, Queue: q.Name, ID: id, Client: name, Session: session, Node: node, Detail: r.ReplyText})
		}
	}()
	mode := amqp.Persistent
	if w.cfg.Transient {
		mode = amqp.Transient
	}
	var failure error
loop:
	for {
		if tick != nil {
			select {
			case <-ctx.Done():
				break loop
			case e := <-closed:
				failure = closedErr(e)
				break loop
			case <-tick.C:
			}
		}
		select {
		case <-ctx.Done():
			break loop
		case e := <-closed:
			failure = closedErr(e)
			break loop
		case sem <- struct{}{}:
		}
		*seq++
		id := name + "-" + strconv.FormatUint(*seq, 10)
		body := append([]byte(id+" "), pad...)
		pmu.Lock()
		pending[tag+1] = sent{id, time.Now()}
		pmu.Unlock()
		w.cfg.Rec.Add(Event{Kind: EvPublish, Queue: q.Name, ID: id, Pub: name, Seq: *seq, Client: name, Session: session, Node: node})
		w.published.Add(1)
		err := ch.Publish("", q.Name, true, false, amqp.Publishing{
			Headers:      amqp.Table{HeaderID: id, HeaderPub: name, HeaderSeq: int64(*seq)},
			DeliveryMode: mode,
			MessageId:    id,
			Body:         body,
		})
		if err != nil {
			pmu.Lock()
			delete(pending, tag+1)
			pmu.Unlock()
			failure = err
			break
		}
		tag++
	}
	if failure == nil {
		// Stopping: give outstanding confirms a moment.
		deadline := time.After(5 * time.Second)
	wait:
		for {
			pmu.Lock()
			n := len(pending)
			pmu.Unlock()
			if n == 0 {
				break
			}
			select {
			case <-deadline:
				break wait
			case <-closed:
				break wait
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	conn.Close()
	<-done
	return failure
}

func closedErr(e *amqp.Error) error {
	if e == nil {
		return errors.New("connection closed")
	}
	return e
}

func (w *Workload) consume(q QueueSpec, k int) {
	defer w.conWG.Done()
	ctx := w.conCtx
	name := fmt.Sprintf("%s.c%d", q.Name, k)
	select {
	case <-ctx.Done():
		return
	case <-time.After(w.cfg.ConsumerDelay):
	}
	next := k + 1 // consumers start one node after the publisher with the same number
	session := 0
	for ctx.Err() == nil {
		conn, node, k2 := w.dial(ctx, q.Nodes, next)
		if conn == nil {
			return
		}
		next = k2 + 1
		session++
		w.cfg.Rec.Add(Event{Kind: EvClient, Client: name, Session: session, Node: node, Queue: q.Name, Detail: "connected"})
		err := w.consumeOn(ctx, conn, q, name, session, node)
		conn.Close()
		w.cfg.Rec.Add(Event{Kind: EvClient, Client: name, Session: session, Node: node, Queue: q.Name, Detail: "disconnected", Err: errText(err)})
		if err != nil && ctx.Err() == nil {
			w.cfg.Logf("%s on node %d: %v", name, node, err)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func (w *Workload) consumeOn(ctx context.Context, conn *amqp.Connection, q QueueSpec, name string, session, node int) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(q.Name, true, false, false, false, q.Args); err != nil {
		return fmt.Errorf("declare: %w", err)
	}
	if err := ch.Qos(w.cfg.Prefetch, 0, false); err != nil {
		return err
	}
	dels, err := ch.Consume(q.Name, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-closed:
			return closedErr(e)
		case d, ok := <-dels:
			if !ok {
				return errors.New("deliveries closed")
			}
			id, _ := d.Headers[HeaderID].(string)
			if id == "" {
				id = d.MessageId
			}
			w.cfg.Rec.Add(Event{Kind: EvDeliver, Queue: q.Name, ID: id, Client: name, Session: session, Node: node, Redelivered: d.Redelivered})
			w.mu.Lock()
			if !w.delivered[id] {
				w.delivered[id] = true
				if w.confirmed[id] {
					w.pending--
				}
			}
			w.lastDeliv = time.Now()
			w.mu.Unlock()
			if err := d.Ack(false); err != nil {
				return err
			}
			w.cfg.Rec.Add(Event{Kind: EvAck, Queue: q.Name, ID: id, Client: name, Session: session, Node: node})
		}
	}
}

// meta declares and deletes objects in a loop: each step declares exchange and queue number
// k, binds them, and deletes those of number k-1, so a few always exist.
func (w *Workload) meta() {
	defer w.metaWG.Done()
	ctx := w.pubCtx
	nodes := w.cfg.MetaNodes
	const name = "meta"
	session := 0
	var conn *amqp.Connection
	var ch *amqp.Channel
	node, next := 0, 0
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	op := func(kind, obj string, f func() error) {
		if ch == nil {
			if conn == nil || conn.IsClosed() {
				var k2 int
				conn, node, k2 = w.dial(ctx, nodes, next)
				if conn == nil {
					return
				}
				next = k2 + 1
				session++
			}
			c, err := conn.Channel()
			if err != nil {
				conn.Close()
				conn = nil
				w.cfg.Rec.Add(Event{Kind: EvMeta, Op: kind, Detail: obj, Client: name, Session: session, Node: node, Err: err.Error()})
				return
			}
			ch = c
		}
		err := f()
		e := Event{Kind: EvMeta, Op: kind, Detail: obj, Client: name, Session: session, Node: node, OK: err == nil}
		if err != nil {
			e.Err = err.Error()
			ch = nil // a failed operation closes the channel
		}
		w.cfg.Rec.Add(e)
	}
	for k := 1; ctx.Err() == nil; k++ {
		x, q := fmt.Sprintf("chaos.meta.x%d", k), fmt.Sprintf("chaos.meta.q%d", k)
		op("exchange.declare", x, func() error { return ch.ExchangeDeclare(x, "topic", true, false, false, false, nil) })
		op("queue.declare", q, func() error {
			_, err := ch.QueueDeclare(q, true, false, false, false, nil)
			return err
		})
		op("queue.bind", q+"->"+x, func() error { return ch.QueueBind(q, "k.#", x, false, nil) })
		if k > 1 {
			px, pq := fmt.Sprintf("chaos.meta.x%d", k-1), fmt.Sprintf("chaos.meta.q%d", k-1)
			op("queue.delete", pq, func() error {
				_, err := ch.QueueDelete(pq, false, false, false)
				return err
			})
			op("exchange.delete", px, func() error { return ch.ExchangeDelete(px, false, false) })
		}
		select {
		case <-ctx.Done():
		case <-time.After(w.cfg.MetaEvery):
		}
	}
}
