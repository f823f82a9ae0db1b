package clustertest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// qdelivery is what a consumer saw of one message.
type qdelivery struct {
	times       int
	redelivered bool // a later delivery said redelivered
	firstRedel  bool
}

// quorumConsumer consumes queue q through node i with manual acks, re-consuming after a
// basic.cancel (the node itself became the queue's leader), and records every delivery.
type quorumConsumer struct {
	mu       sync.Mutex
	seen     map[string]*qdelivery
	dupsBare []string // delivered again without redelivered
	cancels  int
}

func consumeQuorum(t *testing.T, c *Cluster, i int, q string, stop chan struct{}) *quorumConsumer {
	t.Helper()
	qc := &quorumConsumer{seen: map[string]*qdelivery{}}
	_, ch := channel(t, c, i)
	if err := ch.Qos(50, 0, false); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			ds, err := ch.Consume(q, "", false, false, false, false, nil)
			if err != nil {
				t.Errorf("consume on node %d: %v", i, err)
				return
			}
			for d := range ds {
				id := string(d.Body)
				qc.mu.Lock()
				x := qc.seen[id]
				if x == nil {
					x = &qdelivery{firstRedel: d.Redelivered}
					qc.seen[id] = x
				} else if !d.Redelivered {
					qc.dupsBare = append(qc.dupsBare, id)
				}
				x.times++
				qc.mu.Unlock()
				d.Ack(false)
			}
			select {
			case <-stop:
				return
			default:
			}
			qc.mu.Lock()
			qc.cancels++
			qc.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return qc
}

// publishQuorum publishes unique ids with confirms through node i until want of them are
// confirmed (or the deadline), in batches (progress is told after each); it returns the
// confirmed ids and the nack count.
func publishQuorum(t *testing.T, c *Cluster, i int, q string, want int, progress chan<- int, deadline time.Time) (acked []string, nacks int) {
	_, ch := channel(t, c, i)
	if err := ch.Confirm(false); err != nil {
		t.Error(err)
		return
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	var tag uint64
	ids := map[uint64]string{}
	for len(acked) < want && time.Now().Before(deadline) {
		const batch = 50
		for range batch {
			tag++
			id := fmt.Sprintf("n%d-%d", i, tag)
			ids[tag] = id
			if err := ch.Publish("", q, false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(id)}); err != nil {
				t.Errorf("publish on node %d: %v", i, err)
				return
			}
		}
		for range batch {
			select {
			case cf, ok := <-confirms:
				if !ok {
					t.Errorf("node %d: confirms closed", i)
					return
				}
				if cf.Ack {
					acked = append(acked, ids[cf.DeliveryTag])
				} else {
					nacks++
				}
			case <-time.After(30 * time.Second):
				t.Errorf("node %d: no confirm within 30 s (%d confirmed)", i, len(acked))
				return
			}
		}
		progress <- len(acked)
	}
	return acked, nacks
}

// Issue 14 with Cluster II: a quorum queue led on node 1, publishers with confirms on nodes 2
// and 3, a consumer on node 3. Node 1 is killed (-9) in the middle: another replica leads, the
// publishers go on through their nodes (nacks while no node leads), and every confirmed message
// is consumed through node 3, a second delivery only as a redelivery.
func TestRemote_QuorumQueueLedElsewhereSurvivesLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	_, ch1 := channel(t, c, 1)
	if _, err := ch1.QueueDeclare("qx", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		for _, i := range []int{1, 2, 3} {
			if l := queueLeader(t, c, i, "qx"); l != 1 {
				return fmt.Errorf("node %d sees leader %d", i, l)
			}
		}
		return nil
	})
	stop := make(chan struct{})
	defer close(stop)
	cons := consumeQuorum(t, c, 3, "qx", stop)

	const perPublisher = 2000
	deadline := time.Now().Add(90 * time.Second)
	type result struct {
		node  int
		acked []string
		nacks int
	}
	results := make(chan result, 2)
	progress := make(chan int, 1000)
	for _, i := range []int{2, 3} {
		go func() {
			a, n := publishQuorum(t, c, i, "qx", perPublisher, progress, deadline)
			results <- result{i, a, n}
		}()
	}
	// Kill the leader once some hundreds are confirmed.
	batches := 0
	for batches < 6 { // about 150 confirmed through each node
		select {
		case <-progress:
			batches++
		case <-time.After(30 * time.Second):
			t.Fatal("publishing through nodes 2 and 3 to the leader on node 1 stalled")
		}
	}
	killed := time.Now()
	if err := c.Node(1).Kill(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range progress {
		}
	}()
	var all []string
	for range 2 {
		r := <-results
		t.Logf("node %d: %d confirmed, %d nacked", r.node, len(r.acked), r.nacks)
		if len(r.acked) < perPublisher {
			t.Errorf("node %d: only %d of %d confirmed by the deadline", r.node, len(r.acked), perPublisher)
		}
		all = append(all, r.acked...)
	}
	close(progress)
	nl := queueLeader(t, c, 2, "qx")
	t.Logf("leader killed; publishers done %v later; new leader node %d", time.Since(killed).Round(time.Millisecond), nl)
	eventually(t, 60*time.Second, func() error {
		cons.mu.Lock()
		defer cons.mu.Unlock()
		missing := 0
		first := ""
		for _, id := range all {
			if cons.seen[id] == nil {
				if missing == 0 {
					first = id
				}
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d confirmed messages not consumed (e.g. %s)", missing, len(all), first)
		}
		return nil
	})
	cons.mu.Lock()
	defer cons.mu.Unlock()
	dups := 0
	for _, x := range cons.seen {
		if x.times > 1 {
			dups++
		}
	}
	t.Logf("consumer on node 3: %d distinct messages, %d delivered more than once, %d basic.cancel", len(cons.seen), dups, cons.cancels)
	if nl != 3 && cons.cancels > 0 {
		// Node 3 still does not lead: its consumer moved to the new leader unnoticed. (When
		// node 3 itself becomes the leader, its consumer is cancelled and consumes again.)
		t.Errorf("the consumer on node 3 was cancelled %d times while node %d took over", cons.cancels, nl)
	}
	if len(cons.dupsBare) > 0 {
		t.Errorf("%d messages delivered again without redelivered, e.g. %s", len(cons.dupsBare), cons.dupsBare[0])
	}
}

// The rest of a publisher's and a consumer's contract on a node that neither leads the quorum
// queue nor holds the dead-letter target: x-overflow reject-publish nacks the publisher on
// node 3 (leader on node 1), a mandatory message nobody routes returns, the queue keeps the
// channel's order, and a rejected message is dead-lettered by the leader to a classic queue
// whose home is node 2.
func TestRemote_QuorumQueueOverflowReturnsOrderAndDeadLetterAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	declareOn(t, c, 2, "dlx-target", true, nil)
	declareOn(t, c, 1, "qo", true, amqp.Table{"x-queue-type": "quorum", "x-max-length": int32(3), "x-overflow": "reject-publish",
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlx-target"})
	// Node 3 answers once it has applied the declare (it may trail node 1 by a moment).
	eventually(t, 10*time.Second, func() error {
		if l := queueLeader(t, c, 3, "qo"); l != 1 {
			return fmt.Errorf("node 3 names leader %d", l)
		}
		return nil
	})
	_, ch := channel(t, c, 3)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10))
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	for i := range 5 {
		if err := ch.Publish("", "qo", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprint("o", i))}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		select {
		case cf := <-confirms:
			if cf.Ack != (i < 3) {
				t.Fatalf("publish %d: ack=%v (x-max-length 3, reject-publish)", i, cf.Ack)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%d of 5 confirms", i)
		}
	}
	if err := ch.Publish("", "nowhere", true, false, amqp.Publishing{Body: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-returns:
		if r.ReplyCode != 312 || r.ReplyText != "NO_ROUTE" {
			t.Fatalf("return %d %s", r.ReplyCode, r.ReplyText)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("mandatory message nobody routes not returned")
	}
	<-confirms
	var first amqp.Delivery
	for i := range 3 {
		d, ok, err := ch.Get("qo", false)
		if err != nil || !ok || string(d.Body) != fmt.Sprint("o", i) {
			t.Fatalf("get %d: %q %v %v", i, d.Body, ok, err)
		}
		if i == 0 {
			first = d
		} else if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Reject(false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		q, err := passive(t, c, 3, "dlx-target")
		if err != nil || q.Messages != 1 {
			return fmt.Errorf("dlx-target: %d messages (%v)", q.Messages, err)
		}
		return nil
	})
	d, ok, err := ch.Get("dlx-target", true)
	if err != nil || !ok || string(d.Body) != "o0" {
		t.Fatalf("dead letter: %q %v %v", d.Body, ok, err)
	}
	if xd, _ := d.Headers["x-death"].([]any); len(xd) == 0 || fmt.Sprint(xd[0].(amqp.Table)["reason"]) != "rejected" || fmt.Sprint(xd[0].(amqp.Table)["queue"]) != "qo" {
		t.Fatalf("x-death %v", d.Headers["x-death"])
	}
	if q, err := passive(t, c, 2, "qo"); err != nil || q.Messages != 0 {
		t.Fatalf("qo after: %d messages (%v)", q.Messages, err)
	}
}

// A quorum queue's consumers stay through leader moves, as RabbitMQ's do: a consumer on the
// old leader's node moves to the Ref that reaches the new leader, one on the new leader's node
// moves from its Ref to the queue there, neither sees a basic.cancel; a consumer that asked
// for x-cancel-on-ha-failover is cancelled.
func TestRemote_QuorumConsumersFollowLeaderMoves(t *testing.T) {
	c := startCluster(t, 3)
	declareOn(t, c, 1, "qq", true, amqp.Table{"x-queue-type": "quorum"})
	a := waitQueueLeader(t, c, "qq")
	b := a%3 + 1
	pub := b%3 + 1
	type cons struct {
		name    string
		ds      <-chan amqp.Delivery
		cancels <-chan string
		got     int
	}
	consume := func(node int, tag string, args amqp.Table) *cons {
		_, ch := channel(t, c, node)
		if err := ch.Qos(10, 0, false); err != nil {
			t.Fatal(err)
		}
		cancels := ch.NotifyCancel(make(chan string, 4))
		ds, err := ch.Consume("qq", tag, false, false, false, false, args)
		if err != nil {
			t.Fatalf("consume %s on node %d: %v", tag, node, err)
		}
		return &cons{name: tag, ds: ds, cancels: cancels}
	}
	onA := consume(a, "on-a", nil)
	onB := consume(b, "on-b", nil)
	cancelMe := consume(b, "cancel-me", amqp.Table{"x-cancel-on-ha-failover": true})

	// Each round moves the leader, then publishes: both consumers get messages, no cancel.
	round := func(to int, prefix string, checkCancelMe bool) {
		t.Helper()
		code, body := api(t, c, to, "POST", "/api/queues/%2F/qq/leader", map[string]any{"node": c.Node(to).Args.Name})
		if code/100 != 2 {
			t.Fatalf("move the leader to node %d: %d %s", to, code, body)
		}
		eventually(t, 15*time.Second, func() error {
			if l := queueLeader(t, c, pub, "qq"); l != to {
				return fmt.Errorf("leader is node %d, want %d", l, to)
			}
			return nil
		})
		if checkCancelMe {
			select {
			case tag := <-cancelMe.cancels:
				if tag != "cancel-me" {
					t.Fatalf("cancel of %q", tag)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the x-cancel-on-ha-failover consumer was not cancelled")
			}
		}
		// Both consumers are back at the new leader (they subscribe there once it answers).
		eventually(t, 15*time.Second, func() error {
			q, err := passive(t, c, pub, "qq")
			if err != nil || q.Consumers != 2 {
				return fmt.Errorf("consumers at the leader: %d (%v), want 2", q.Consumers, err)
			}
			return nil
		})
		const n = 40
		_, pch := channel(t, c, pub) // a channel per round: each listens for its own confirms
		publishRetrying(t, pch, "qq", n, prefix)
		onA.got, onB.got = 0, 0
		deadline := time.After(20 * time.Second)
		for onA.got+onB.got < n {
			select {
			case d := <-onA.ds:
				onA.got++
				d.Ack(false)
			case d := <-onB.ds:
				onB.got++
				d.Ack(false)
			case tag := <-onA.cancels:
				t.Fatalf("consumer %s on node %d (the old leader) cancelled", tag, a)
			case tag := <-onB.cancels:
				t.Fatalf("consumer %s on node %d (the new leader) cancelled", tag, b)
			case <-deadline:
				t.Fatalf("after the move to node %d: %d+%d of %d delivered", to, onA.got, onB.got, n)
			}
		}
		if onA.got == 0 || onB.got == 0 {
			t.Fatalf("after the move to node %d: on-a got %d, on-b %d: both consume", to, onA.got, onB.got)
		}
	}
	round(b, "first-", true)
	round(a, "back-", false)
}

// publishRetrying publishes n persistent messages to key with confirms, one at a time, and
// publishes again what was nacked (a replicated queue's leader that moved a moment ago).
func publishRetrying(t *testing.T, ch *amqp.Channel, key string, n int, prefix string) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	for i := 0; i < n; i++ {
		for try := 0; ; try++ {
			if err := ch.Publish("", key, false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprintf("%s%d", prefix, i))}); err != nil {
				t.Fatal(err)
			}
			select {
			case cf := <-confirms:
				if cf.Ack {
					try = -1
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("no confirm for message %d", i)
			}
			if try < 0 {
				break
			}
			if try > 50 {
				t.Fatalf("message %d nacked %d times", i, try+1)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// A consumer that moves with its queue's leader while it holds unacked deliveries (its whole
// prefetch) gets more once it acks them: the acks go to the Ref it took them through, the
// credit they free is the consumer's at the new one (warren-chaos seed 120007: a moved consumer
// got nothing more, its prefetch of deliveries held at the new leader until it left).
func TestRemote_MovedConsumerGetsMoreAfterAckingWhatItHeld(t *testing.T) {
	c := startCluster(t, 3)
	declareOn(t, c, 1, "qh", true, amqp.Table{"x-queue-type": "quorum"})
	a := waitQueueLeader(t, c, "qh")
	b := a%3 + 1
	_, ch := channel(t, c, a) // on the leader's node: the move makes it remote
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume("qh", "holder", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, pch := channel(t, c, b)
	publishRetrying(t, pch, "qh", 1, "first-")
	var held amqp.Delivery
	select {
	case held = <-ds:
	case <-time.After(10 * time.Second):
		t.Fatal("no first delivery")
	}
	code, body := api(t, c, b, "POST", "/api/queues/%2F/qh/leader", map[string]any{"node": c.Node(b).Args.Name})
	if code/100 != 2 {
		t.Fatalf("move the leader: %d %s", code, body)
	}
	eventually(t, 15*time.Second, func() error {
		q, err := passive(t, c, b, "qh")
		if err != nil || queueLeader(t, c, b, "qh") != b || q.Consumers != 1 {
			return fmt.Errorf("leader %d, consumers %d (%v)", queueLeader(t, c, b, "qh"), q.Consumers, err)
		}
		return nil
	})
	_, pch2 := channel(t, c, b)
	publishRetrying(t, pch2, "qh", 3, "after-")
	time.Sleep(300 * time.Millisecond) // the new leader sends its deliveries, refused: prefetch used
	if err := held.Ack(false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		select {
		case d := <-ds:
			d.Ack(false)
		case <-time.After(10 * time.Second):
			t.Fatalf("delivery %d after acking the held one did not come", i+1)
		}
	}
}

// waitQueueLeader waits until node 1 names the leader of replicated queue q, and returns it.
func waitQueueLeader(t *testing.T, c *Cluster, q string) int {
	t.Helper()
	var l int
	eventually(t, 10*time.Second, func() error {
		if l = queueLeader(t, c, 1, q); l == 0 {
			return fmt.Errorf("no leader of %s yet", q)
		}
		return nil
	})
	return l
}
