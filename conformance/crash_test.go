package conformance

// Crash safety: a publisher confirm for a persistent message routed to a durable queue means the
// message is on disk (RabbitMQ's "Publisher Confirms" guide, https://www.rabbitmq.com/docs/confirms:
// "for routable messages, the basic.ack is sent when a message has been accepted by all the
// queues"; persistent messages routed to durable queues are acked "after persisting to disk").
// So whatever the moment of a kill -9, every confirmed message that no consumer acked comes back
// after a restart on the same data folder.

import (
	"math/rand/v2"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestCrash_ConfirmedPersistentMessagesSurviveKill9 runs four confirm-mode publishers over four
// durable queues, kills the broker with SIGKILL after a random 100–600 ms, restarts it on the same
// data folder, and repeats; in odd rounds a consumer acks some messages of two of the queues and
// leaves others pending. At the end every confirmed message not acked by the consumer must be in
// its queue, nothing unpublished may appear, each publisher's never-delivered messages keep their
// order within a queue, and the queues that never had a consumer hold nothing redelivered.
func TestCrash_ConfirmedPersistentMessagesSurviveKill9(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	crashRounds(t)
}

// TestCrash_SpilledBacklogSurvivesKill9 is the same with a per-queue memory limit of 256 KiB
// (--max-queue-memory), so that most of each queue's backlog waits in its on-disk spill (a cache
// wiped on restart) and recovery rebuilds queues far over their memory limit from the logs.
func TestCrash_SpilledBacklogSurvivesKill9(t *testing.T) {
	onlyWarren(t)
	durNeedFlag(t, "max-queue-memory")
	t.Parallel()
	crashRounds(t, "--max-queue-memory", "262144")
}

// crashRounds runs the kill -9 rounds of the crash tests on brokers started with extra flags.
func crashRounds(t *testing.T, extra ...string) {
	const nQueues, nPubs = 4, 4
	rounds := 3
	if testing.Short() {
		rounds = 2
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>32))
	t.Logf("seed %d", seed)

	dir := durDataDir(t)
	b := durBroker(t, dir, extra...)
	queues := make([]string, nQueues)
	for i := range queues {
		queues[i] = uniqueName(t, string(rune('a'+i)))
	}
	durDeclare(t, dialURL(t, b.URL), nil, queues...)

	w := newDurWorkload("crash", queues, nPubs)
	for r := range rounds {
		if r > 0 {
			b = durBroker(t, dir, extra...)
		}
		var consumeQueues []int
		if r%2 == 1 {
			consumeQueues = []int{0, 1}
		}
		delay := 100*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond)))
		w.round(t, b.URL, consumeQueues, delay, b.Kill)
		t.Logf("round %d: killed after %v, consumer=%v, %d published, %d confirmed so far; on disk %v", r+1, delay.Round(time.Millisecond), consumeQueues != nil, len(w.attempted), len(w.confirmed), durDiskUsage(dir))
	}

	b = durBroker(t, dir, extra...)
	c := dialURL(t, b.URL)
	drained := make([][]amqp.Delivery, nQueues)
	for i, q := range queues {
		drained[i] = durDrain(t, c, q)
	}
	f := w.verify(t, drained)
	t.Logf("rounds=%d %v", rounds, f)
	if f.confirmed == 0 {
		t.Errorf("no publish was ever confirmed: the test checked nothing")
	}
}
