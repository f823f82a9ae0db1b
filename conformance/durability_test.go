package conformance

// Durability across restarts (AMQP 0-9-1 §3.1.3.2 and §3.1.4: durable exchanges and queues
// survive a server restart, transient ones are deleted; §1.8.3.7/§3.1.7 delivery-mode 2
// "persistent" messages in durable queues survive it, delivery-mode 1 ones need not; RabbitMQ's
// https://www.rabbitmq.com/docs/queues#durability and /docs/persistence-conf). Each test starts
// its own broker on a data folder of its own and stops (SIGTERM) or kills (SIGKILL) it, so they
// run only against Warren.

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestRestart_CleanShutdownKeepsEverything is the crash test with SIGTERM instead of SIGKILL:
// after each graceful shutdown every confirmed message not acked by a consumer is back, and so
// are durable exchanges, queues and bindings and the persistent messages published through
// them; a non-durable queue and a non-durable exchange are gone, and so are the transient
// (delivery-mode 1) messages of a durable queue, as in RabbitMQ.
func TestRestart_CleanShutdownKeepsEverything(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	const nQueues, nPubs = 4, 4
	rounds := 3
	if testing.Short() {
		rounds = 2
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>32))
	t.Logf("seed %d", seed)

	dir := durDataDir(t)
	b := durBroker(t, dir)
	c := dialURL(t, b.URL)
	queues := make([]string, nQueues)
	for i := range queues {
		queues[i] = uniqueName(t, string(rune('a'+i)))
	}
	durDeclare(t, c, nil, queues...)

	// Definitions and messages beside the workload.
	x, xTransient := uniqueName(t, "x"), uniqueName(t, "x-transient")
	qBound, qMixed, qTransient := uniqueName(t, "bound"), uniqueName(t, "mixed"), uniqueName(t, "transient")
	ch := openChannel(t, c)
	if err := ch.ExchangeDeclare(x, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare %s: %v", x, err)
	}
	if err := ch.ExchangeDeclare(xTransient, amqp.ExchangeFanout, false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare %s: %v", xTransient, err)
	}
	durDeclare(t, c, nil, qBound, qMixed)
	if _, err := ch.QueueDeclare(qTransient, false, false, false, false, nil); err != nil {
		t.Fatalf("queue.declare %s: %v", qTransient, err)
	}
	if err := ch.QueueBind(qBound, "k", x, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	if err := ch.QueueBind(qTransient, "k", x, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	bound := durBodies("bound", 10)
	durPublish(t, c, x, "k", amqp.Persistent, bound...)
	var mixed, mixedPersistent []string
	for i := range 20 {
		mode, body := uint8(amqp.Transient), "transient-"+string(rune('a'+i))
		if i%2 == 0 {
			mode, body = amqp.Persistent, "persistent-"+string(rune('a'+i))
			mixedPersistent = append(mixedPersistent, body)
		}
		mixed = append(mixed, body)
		durPublish(t, c, "", qMixed, mode, body)
	}
	if got := len(durDrain(t, c, qMixed)); got != len(mixed) {
		t.Fatalf("%s holds %d messages before the restart, want %d", qMixed, got, len(mixed))
	}

	w := newDurWorkload("clean", queues, nPubs)
	for r := range rounds {
		if r > 0 {
			b = durBroker(t, dir)
		}
		var consumeQueues []int
		if r%2 == 1 {
			consumeQueues = []int{0, 1}
		}
		delay := 100*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond)))
		w.round(t, b.URL, consumeQueues, delay, b.Stop)
		if code := b.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("round %d: warren exited with status %d after SIGTERM, want 0", r+1, code)
		}
		t.Logf("round %d: stopped after %v, consumer=%v, %d published, %d confirmed so far", r+1, delay.Round(time.Millisecond), consumeQueues != nil, len(w.attempted), len(w.confirmed))
	}

	b = durBroker(t, dir)
	c = dialURL(t, b.URL)
	drained := make([][]amqp.Delivery, nQueues)
	for i, q := range queues {
		drained[i] = durDrain(t, c, q)
	}
	f := w.verify(t, drained)
	t.Logf("rounds=%d %v", rounds, f)
	if f.confirmed == 0 {
		t.Errorf("no publish was ever confirmed: the test checked nothing")
	}

	// Durable definitions are back and route; the persistent messages sent through them too.
	ch = openChannel(t, c)
	if err := ch.ExchangeDeclarePassive(x, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		t.Fatalf("durable exchange %s is gone after a clean restart: %v", x, err)
	}
	durPublish(t, c, x, "k", amqp.Persistent, "bound-after")
	durExpectBodies(t, c, qBound, append(bound, "bound-after"))
	// Only the persistent messages of the durable queue are back, in order.
	durExpectBodies(t, c, qMixed, mixedPersistent)
	// Non-durable definitions are gone.
	amqpErr(t, openChannel(t, c).ExchangeDeclarePassive(xTransient, amqp.ExchangeFanout, false, false, false, false, nil), 404)
	queueGone(t, c, qTransient)
}

// TestRestart_AckedMessagesStayGone publishes 100 persistent messages (confirmed), receives 80
// with a prefetch of 80, cancels the consumer and acks 60 of them scattered over the 80, kills
// the broker and restarts it: exactly the 40 others (20 delivered, 20 never) come back, in
// publish order. Acks have no confirmation in AMQP
// 0-9-1, and Warren records them with the log's next commit, so before the kill the test makes
// sure one happened: a passive queue.declare (the acks were processed) and then a confirmed
// persistent publish to the same queue (its confirm follows the fsync of a commit that holds
// the earlier retirements), which is expected back too.
func TestRestart_AckedMessagesStayGone(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	b := durBroker(t, dir)
	c := dialURL(t, b.URL)
	q := uniqueName(t)
	durDeclare(t, c, nil, q)
	bodies := durBodies("m", 100)
	durPublish(t, c, "", q, amqp.Persistent, bodies...)

	ch := openChannel(t, c)
	if err := ch.Qos(80, 0, false); err != nil {
		t.Fatal(err)
	}
	const ds2tag = "acked-stay-gone"
	ds, err := ch.Consume(q, ds2tag, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	var got80 []amqp.Delivery
	for i := range 80 {
		d := recvDelivery(t, ds)
		if string(d.Body) != bodies[i] {
			t.Fatalf("delivery %d is %q, want %q", i, d.Body, bodies[i])
		}
		got80 = append(got80, d)
	}
	// Cancel first so that the credit the acks free delivers nothing more (§1.8.3.5: pending
	// deliveries stay unacked on the channel and can still be acked).
	if err := ch.Cancel(ds2tag, false); err != nil {
		t.Fatalf("basic.cancel: %v", err)
	}
	var want []string
	for i, d := range got80 {
		if i%4 == 3 {
			want = append(want, bodies[i])
			continue
		}
		if err := d.Ack(false); err != nil {
			t.Fatalf("basic.ack: %v", err)
		}
	}
	want = append(want, bodies[80:]...)
	if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
		t.Fatalf("passive queue.declare: %v", err)
	}
	durPublish(t, c, "", q, amqp.Persistent, "fence")
	want = append(want, "fence")
	b.Kill()

	b = durBroker(t, dir)
	got := durExpectBodies(t, dialURL(t, b.URL), q, want)
	redelivered := 0
	for _, d := range got {
		if d.Redelivered {
			redelivered++
		}
	}
	t.Logf("published 100, delivered 80, acked 60; %d came back (%d redelivered), want 40 + fence (20 delivered before)", len(got), redelivered)
}

// TestRestart_DeliveredButUnackedComeBackRedelivered delivers 8 of 20 persistent messages to a
// consumer (prefetch 8) that never acks, kills the broker and restarts it: all 20 come back in
// order and the 8 that had been delivered carry redelivered=true (AMQP 0-9-1 §1.8.3.9 basic.deliver
// "redelivered"; RabbitMQ keeps the flag across restarts). A confirmed publish to the same
// queue before the kill ensures the delivery marks were committed (see
// TestRestart_AckedMessagesStayGone); it comes back undelivered.
func TestRestart_DeliveredButUnackedComeBackRedelivered(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	b := durBroker(t, dir)
	c := dialURL(t, b.URL)
	q := uniqueName(t)
	durDeclare(t, c, nil, q)
	bodies := durBodies("m", 20)
	durPublish(t, c, "", q, amqp.Persistent, bodies...)
	ch := openChannel(t, c)
	if err := ch.Qos(8, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume: %v", err)
	}
	for i := range 8 {
		if d := recvDelivery(t, ds); string(d.Body) != bodies[i] || d.Redelivered {
			t.Fatalf("delivery %d: %q redelivered=%v, want %q redelivered=false", i, d.Body, d.Redelivered, bodies[i])
		}
	}
	noDelivery(t, ds, 50*time.Millisecond) // prefetch 8: nothing more
	durPublish(t, c, "", q, amqp.Persistent, "fence")
	b.Kill()

	b = durBroker(t, dir)
	got := durExpectBodies(t, dialURL(t, b.URL), q, append(bodies, "fence"))
	neverDeliveredMarked := 0
	for i, d := range got {
		switch {
		case i < 8 && !d.Redelivered:
			t.Errorf("%q was delivered before the crash but came back with redelivered=false", d.Body)
		case i >= 8 && d.Redelivered:
			neverDeliveredMarked++
		}
	}
	t.Logf("8 of 20 delivered before kill -9; after restart %d messages, %d never-delivered ones marked redelivered", len(got), neverDeliveredMarked)
}

// TestRestart_PropertiesSurviveKill9 checks that a persistent message comes back from the log
// with every basic property and header field type (AMQP 0-9-1 §1.8 basic properties, RabbitMQ's
// field table types) and that a body spanning several frames (frame-max 131072) is intact.
func TestRestart_PropertiesSurviveKill9(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	b := durBroker(t, dir)
	c := dialURL(t, b.URL)
	q := uniqueName(t)
	durDeclare(t, c, nil, q)
	small := publishFullMessage([]byte("properties"))
	large := publishFullMessage(bytes.Repeat([]byte("0123456789abcdef"), 40000)) // 640000 bytes
	large.MessageId = "msg-large"
	durPublishMsgs(t, c, "", q, small, large)
	b.Kill()

	b = durBroker(t, dir)
	got := durDrain(t, dialURL(t, b.URL), q)
	if len(got) != 2 {
		t.Fatalf("%d messages came back, want 2", len(got))
	}
	publishAssertProperties(t, got[0], small)
	publishAssertProperties(t, got[1], large)
}

// TestRestart_DefinitionsSurvive declares durable exchanges of every type (one with an
// alternate-exchange), a durable queue with arguments, queue bindings (one with headers-match
// arguments) and an exchange-to-exchange binding with arguments, checks how they route, kills
// the broker and restarts it: they exist with the same properties (redeclaring with other
// ones is 406 PRECONDITION_FAILED, §1.7.2.1/§1.7.2.2 "equivalent"), route exactly as before,
// and unbinding with the original arguments removes the exchange-to-exchange binding. A durable
// queue, a durable exchange and a binding deleted before the kill stay deleted; an exclusive
// queue (even declared durable), an auto-delete transient queue and a transient exchange are gone.
func TestRestart_DefinitionsSurvive(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	b := durBroker(t, dir)
	c := dialURL(t, b.URL)
	ch := openChannel(t, c)
	n := func(s string) string { return uniqueName(t, s) }
	xDirect, xAE, xFanout, xTopic, xHeaders, xInner := n("direct"), n("ae"), n("fanout"), n("topic"), n("headers"), n("inner")
	xDeleted, xTransient := n("x-deleted"), n("x-transient")
	qDirect, qAE, qFanout, qTopic, qHeaders, qInner := n("q-direct"), n("q-ae"), n("q-fanout"), n("q-topic"), n("q-headers"), n("q-inner")
	qDeleted, qExclusive, qAutoDelete := n("q-deleted"), n("q-exclusive"), n("q-autodelete")
	qArgs := amqp.Table{"x-max-length": int32(10000), "x-dead-letter-exchange": xFanout, "x-queue-mode": "lazy"}
	e2eArgs := amqp.Table{"origin": "conformance", "weight": int32(3)}
	headerArgs := amqp.Table{"x-match": "all", "color": "red", "size": int32(5)}

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	xdecl := func(name, kind string, durable, internal bool, args amqp.Table) {
		t.Helper()
		must("exchange.declare "+name, ch.ExchangeDeclare(name, kind, durable, false, internal, false, args))
	}
	xdecl(xAE, amqp.ExchangeFanout, true, false, nil)
	xdecl(xDirect, amqp.ExchangeDirect, true, false, amqp.Table{"alternate-exchange": xAE})
	xdecl(xFanout, amqp.ExchangeFanout, true, false, nil)
	xdecl(xTopic, amqp.ExchangeTopic, true, false, nil)
	xdecl(xHeaders, amqp.ExchangeHeaders, true, false, nil)
	xdecl(xInner, amqp.ExchangeDirect, true, true, nil)
	xdecl(xDeleted, amqp.ExchangeTopic, true, false, nil)
	xdecl(xTransient, amqp.ExchangeFanout, false, false, nil)
	durDeclare(t, c, nil, qAE, qFanout, qTopic, qHeaders, qInner, qDeleted)
	durDeclare(t, c, qArgs, qDirect)
	_, err := ch.QueueDeclare(qExclusive, true, false, true, false, nil)
	must("queue.declare exclusive", err)
	_, err = ch.QueueDeclare(qAutoDelete, false, true, false, false, nil)
	must("queue.declare auto-delete", err)
	if _, err := ch.Consume(qAutoDelete, "", true, false, false, false, nil); err != nil {
		t.Fatalf("basic.consume %s: %v", qAutoDelete, err)
	}
	must("bind direct", ch.QueueBind(qDirect, "rk.d", xDirect, false, nil))
	must("bind deleted", ch.QueueBind(qDeleted, "rk.del", xDirect, false, nil))
	must("bind unbound", ch.QueueBind(qDirect, "rk.unbound", xDirect, false, nil))
	must("unbind unbound", ch.QueueUnbind(qDirect, "rk.unbound", xDirect, nil))
	must("bind ae", ch.QueueBind(qAE, "", xAE, false, nil))
	must("bind fanout", ch.QueueBind(qFanout, "", xFanout, false, nil))
	must("bind topic", ch.QueueBind(qTopic, "a.*.c", xTopic, false, nil))
	must("bind topic to deleted exchange", ch.ExchangeBind(xDeleted, "#", xTopic, false, nil))
	must("bind headers", ch.QueueBind(qHeaders, "", xHeaders, false, headerArgs))
	must("bind e2e", ch.ExchangeBind(xInner, "e2e.#", xTopic, false, e2eArgs))
	must("bind inner", ch.QueueBind(qInner, "e2e.x", xInner, false, nil))
	must("bind exclusive", ch.QueueBind(qExclusive, "rk.d", xDirect, false, nil))
	must("exchange.delete", ch.ExchangeDelete(xDeleted, false, false))
	_, err = ch.QueueDelete(qDeleted, false, false, false)
	must("queue.delete", err)

	// route publishes one message per case (confirmed) and checks where each went. They are
	// transient, so the restart removes them and the second phase starts from empty queues
	// (emptying them with acks would race the kill: acks are committed asynchronously).
	route := func(c *amqp.Connection, phase string) {
		t.Helper()
		cases := []struct{ exchange, key, body string }{
			{xDirect, "rk.d", "direct"},
			{xDirect, "rk.none", "direct-unroutable"},
			{xDirect, "rk.unbound", "direct-unbound"},
			{xDirect, "rk.del", "direct-deleted-queue"},
			{xFanout, "whatever", "fanout"},
			{xTopic, "a.b.c", "topic"},
			{xTopic, "a.b", "topic-nowhere"},
			{xTopic, "e2e.x", "e2e"},
		}
		for _, cs := range cases {
			durPublish(t, c, cs.exchange, cs.key, amqp.Transient, phase+":"+cs.body)
		}
		durPublishMsgs(t, c, xHeaders, "", amqp.Publishing{DeliveryMode: amqp.Transient, Body: []byte(phase + ":headers"),
			Headers: amqp.Table{"color": "red", "size": int32(5), "extra": "x"}})
		durPublishMsgs(t, c, xHeaders, "", amqp.Publishing{DeliveryMode: amqp.Transient, Body: []byte(phase + ":headers-nomatch"),
			Headers: amqp.Table{"color": "red", "size": int32(6)}})
		p := func(s ...string) []string {
			for i := range s {
				s[i] = phase + ":" + s[i]
			}
			return s
		}
		durExpectBodies(t, c, qDirect, p("direct"))
		durExpectBodies(t, c, qAE, p("direct-unroutable", "direct-unbound", "direct-deleted-queue"))
		durExpectBodies(t, c, qFanout, p("fanout"))
		durExpectBodies(t, c, qTopic, p("topic"))
		durExpectBodies(t, c, qInner, p("e2e"))
		durExpectBodies(t, c, qHeaders, p("headers"))
	}
	route(c, "before")
	b.Kill()

	b = durBroker(t, dir)
	c = dialURL(t, b.URL)
	for _, x := range []struct {
		name, kind string
		internal   bool
		args       amqp.Table
	}{
		{xAE, amqp.ExchangeFanout, false, nil},
		{xDirect, amqp.ExchangeDirect, false, amqp.Table{"alternate-exchange": xAE}},
		{xFanout, amqp.ExchangeFanout, false, nil},
		{xTopic, amqp.ExchangeTopic, false, nil},
		{xHeaders, amqp.ExchangeHeaders, false, nil},
		{xInner, amqp.ExchangeDirect, true, nil},
	} {
		if err := openChannel(t, c).ExchangeDeclare(x.name, x.kind, true, false, x.internal, false, x.args); err != nil {
			t.Errorf("redeclare durable %s exchange %s after kill -9: %v", x.kind, x.name, err)
		}
	}
	amqpErr(t, openChannel(t, c).ExchangeDeclare(xTopic, amqp.ExchangeDirect, true, false, false, false, nil), 406)
	amqpErr(t, openChannel(t, c).ExchangeDeclare(xInner, amqp.ExchangeDirect, true, false, false, false, nil), 406)
	amqpErr(t, openChannel(t, c).ExchangeDeclare(xDirect, amqp.ExchangeDirect, true, false, false, false, amqp.Table{"alternate-exchange": xFanout}), 406)
	if _, err := openChannel(t, c).QueueDeclare(qDirect, true, false, false, false, qArgs); err != nil {
		t.Errorf("redeclare %s with its arguments after kill -9: %v", qDirect, err)
	}
	_, err = openChannel(t, c).QueueDeclare(qDirect, true, false, false, false, amqp.Table{"x-max-length": int32(999), "x-dead-letter-exchange": xFanout, "x-queue-mode": "lazy"})
	amqpErr(t, err, 406)
	_, err = openChannel(t, c).QueueDeclare(qDirect, true, false, false, false, nil)
	amqpErr(t, err, 406)
	for _, q := range []string{qAE, qFanout, qTopic, qHeaders, qInner} {
		queueExists(t, c, q)
	}
	queueGone(t, c, qDeleted)
	queueGone(t, c, qExclusive)
	queueGone(t, c, qAutoDelete)
	amqpErr(t, openChannel(t, c).ExchangeDeclarePassive(xDeleted, amqp.ExchangeTopic, true, false, false, false, nil), 404)
	amqpErr(t, openChannel(t, c).ExchangeDeclarePassive(xTransient, amqp.ExchangeFanout, false, false, false, false, nil), 404)

	route(c, "after")

	// The exchange-to-exchange binding came back with its arguments: unbinding with them removes it.
	must("exchange.unbind", openChannel(t, c).ExchangeUnbind(xInner, "e2e.#", xTopic, false, e2eArgs))
	durPublish(t, c, xTopic, "e2e.x", amqp.Transient, "after-unbind")
	durExpectBodies(t, c, qInner, []string{"after:e2e"}) // still there from route
}

// walDamageSetup declares two durable queues, "victim" and "healthy", each bound to a durable
// direct exchange, publishes n persistent messages to each, stops the broker and returns the
// victim's log folder (found by a body marker) with its segments.
type walDamage struct {
	dir, x, victim, healthy     string
	victimBodies, healthyBodies []string
	logDir                      string
	segments                    []string
}

func walDamageSetup(t *testing.T, n int) walDamage {
	t.Helper()
	w := walDamage{dir: durDataDir(t), x: uniqueName(t, "x"), victim: uniqueName(t, "victim"), healthy: uniqueName(t, "healthy")}
	b := durBroker(t, w.dir)
	c := dialURL(t, b.URL)
	durDeclare(t, c, nil, w.victim, w.healthy)
	ch := openChannel(t, c)
	if err := ch.ExchangeDeclare(w.x, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(w.victim, "v", w.x, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(w.healthy, "h", w.x, false, nil); err != nil {
		t.Fatal(err)
	}
	w.victimBodies, w.healthyBodies = durBodies("body.victim", n), durBodies("body.healthy", n)
	durPublish(t, c, "", w.victim, amqp.Persistent, w.victimBodies...)
	durPublish(t, c, "", w.healthy, amqp.Persistent, w.healthyBodies...)
	b.Stop()
	w.logDir, w.segments = durFindLog(t, w.dir, []byte(w.victimBodies[n/2]))
	t.Logf("victim's log: %s\n%s", w.logDir, durTree(w.dir))
	return w
}

// walFlipMiddle inverts 8 bytes in the middle of the victim's first segment, with valid
// records on both sides: damage that no torn write explains.
func walFlipMiddle(t *testing.T, w walDamage) {
	t.Helper()
	seg := w.segments[0]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	mid := len(data) / 2
	for i := mid; i < mid+8 && i < len(data); i++ {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("flipped bytes %d..%d of %s (%d bytes)", mid, mid+8, filepath.Base(seg), len(data))
}

// TestWAL_CorruptionKeepsOtherQueuesServing flips bytes in the middle of one durable queue's log
// while the broker is stopped and restarts it: the broker starts, the other queue serves all its
// messages, the damaged one is out of service — every operation on it gets an AMQP channel
// error while the connection and its other channels keep working — and the log has an error
// line naming the queue and the corruption (STYLE: Error = an operator must act).
func TestWAL_CorruptionKeepsOtherQueuesServing(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	w := walDamageSetup(t, 200)
	walFlipMiddle(t, w)

	b, logs := durBrokerLogged(t, w.dir)
	c := dialURL(t, b.URL)
	keep := openChannel(t, c) // opened before the errors; must survive them
	durExpectBodies(t, c, w.healthy, w.healthyBodies)

	alive := func(after string) {
		t.Helper()
		if c.IsClosed() {
			t.Fatalf("the connection was closed by %s on the damaged queue", after)
		}
		if _, err := keep.QueueDeclarePassive(w.healthy, true, false, false, false, nil); err != nil {
			t.Fatalf("after %s on the damaged queue, another channel fails: %v", after, err)
		}
	}
	soft := func(op string, err error) {
		t.Helper()
		e, ok := err.(*amqp.Error)
		switch {
		case err == nil:
			t.Errorf("%s on the damaged queue succeeded, want an AMQP channel error", op)
		case !ok:
			t.Errorf("%s on the damaged queue: %T %v, want *amqp.Error", op, err, err)
		default:
			t.Logf("%s on the damaged queue: %d %s (server=%v recover=%v)", op, e.Code, e.Reason, e.Server, e.Recover)
		}
		alive(op)
	}
	_, err := openChannel(t, c).QueueDeclarePassive(w.victim, true, false, false, false, nil)
	soft("passive queue.declare", err)
	_, _, err = openChannel(t, c).Get(w.victim, false)
	soft("basic.get", err)
	_, err = openChannel(t, c).Consume(w.victim, "", false, false, false, false, nil)
	soft("basic.consume", err)

	// A mandatory publish routed only to the damaged queue must not be silently confirmed.
	pch := openChannel(t, c)
	returns := pch.NotifyReturn(make(chan amqp.Return, 1))
	if err := pch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := pch.PublishWithDeferredConfirmWithContext(ctx(t), w.x, "v", true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("to-damaged")})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	acked, err := dc.WaitContext(ctx(t))
	select {
	case r := <-returns:
		t.Logf("mandatory publish to the damaged queue: returned %d %s, confirm ack=%v err=%v", r.ReplyCode, r.ReplyText, acked, err)
	case <-time.After(100 * time.Millisecond):
		if acked {
			t.Errorf("mandatory publish routed only to the damaged queue was confirmed and not returned")
		} else {
			t.Logf("mandatory publish to the damaged queue: nack (err=%v)", err)
		}
	}
	alive("publish")
	// The healthy queue keeps taking messages through the same exchange.
	durPublish(t, c, w.x, "h", amqp.Persistent, "after")
	durExpectBodies(t, c, w.healthy, append(slices.Clone(w.healthyBodies), "after"))

	errLines := logs.find("error", w.victim)
	if len(errLines) == 0 {
		t.Errorf("no error-level log line names the damaged queue %s", w.victim)
	}
	if len(logs.find("error", "corrupt")) == 0 {
		t.Errorf("no error-level log line mentions the corruption")
	}
	for _, l := range errLines {
		t.Logf("log: %s", l)
	}

	// Last, as it may take the connection down: redeclaring the damaged queue must not replace
	// it with an empty one, and is a channel error like the rest.
	_, err = openChannel(t, c).QueueDeclare(w.victim, true, false, false, false, nil)
	soft("queue.declare", err)
}

// TestWAL_RestoredLogBringsQueueBack: after a damaged queue was out of service for one broker
// run, an operator puts back an intact copy of its log and restarts: the queue, its messages and
// its bindings are all back (the definitions must not be dropped while the queue is out of service).
func TestWAL_RestoredLogBringsQueueBack(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	w := walDamageSetup(t, 50)
	backup := filepath.Join(t.TempDir(), "backup")
	if err := os.CopyFS(backup, os.DirFS(w.logDir)); err != nil {
		t.Fatal(err)
	}
	walFlipMiddle(t, w)
	b, _ := durBrokerLogged(t, w.dir)
	c := dialURL(t, b.URL)
	durExpectBodies(t, c, w.healthy, w.healthyBodies)
	b.Stop()

	if err := os.RemoveAll(w.logDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(w.logDir, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	b, _ = durBrokerLogged(t, w.dir)
	c = dialURL(t, b.URL)
	durPublish(t, c, w.x, "v", amqp.Persistent, "via-binding")
	durPublish(t, c, w.x, "h", amqp.Persistent, "via-binding")
	durExpectBodies(t, c, w.victim, append(slices.Clone(w.victimBodies), "via-binding"))
	durExpectBodies(t, c, w.healthy, append(slices.Clone(w.healthyBodies), "via-binding"))
}

// TestWAL_TornTailIsRepaired cuts a durable queue's last segment in the middle of its last
// record (a write torn by a crash) while the broker is stopped and restarts it: the broker
// starts, the queue serves every message but possibly the torn one, and messages published
// afterwards are stored behind them and survive a kill -9 (etcd's wal repair: cut the torn tail
// and keep appending).
func TestWAL_TornTailIsRepaired(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	w := walDamageSetup(t, 50)
	last := w.victimBodies[len(w.victimBodies)-1]
	seg := w.segments[len(w.segments)-1]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.LastIndex(data, []byte(last))
	if at < 0 {
		t.Fatalf("%q is not in the last segment %s", last, seg)
	}
	cut := at + len(last)/2
	if err := os.Truncate(seg, int64(cut)); err != nil {
		t.Fatal(err)
	}
	t.Logf("cut %s from %d to %d bytes (inside %q)", filepath.Base(seg), len(data), cut, last)

	b, logs := durBrokerLogged(t, w.dir)
	c := dialURL(t, b.URL)
	durExpectBodies(t, c, w.healthy, w.healthyBodies)
	got := durBodiesOf(durDrain(t, c, w.victim))
	full, torn := w.victimBodies, w.victimBodies[:len(w.victimBodies)-1]
	if !slices.Equal(got, full) && !slices.Equal(got, torn) {
		t.Fatalf("after the torn tail the queue holds %d messages %s, want %s (the torn one may be missing)", len(got), durShort(got), durShort(full))
	}
	t.Logf("after the torn tail %d of %d messages are back; warnings: %q", len(got), len(full), logs.find("warn"))
	if len(logs.find("error")) > 0 {
		t.Errorf("a repaired torn tail logged errors: %q", logs.find("error"))
	}

	after := durBodies("body.after", 10)
	durPublish(t, c, w.x, "v", amqp.Persistent, after...)
	b.Kill()
	b = durBroker(t, w.dir)
	durExpectBodies(t, dialURL(t, b.URL), w.victim, append(slices.Clone(got), after...))
}
