package clustertest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Queue-level deduplication on a quorum queue: the keys travel in the queue's log, so the new
// leader after a kill -9 of the old one has the window, and a publisher that retries messages
// it had sent before the kill (it cannot know which were kept) gets one copy of each.
func TestCluster_QuorumQueueDedupSurvivesFailover(t *testing.T) {
	c := startCluster(t, 3)
	_, ch := channel(t, c, 1)
	args := amqp.Table{"x-queue-type": "quorum", "x-message-deduplication": true, "x-cache-size": int32(10000)}
	if _, err := ch.QueueDeclare("qd", true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	if l := queueLeader(t, c, 1, "qd"); l != 1 {
		t.Fatalf("leader of a queue declared on node 1: %d", l)
	}
	publish := func(ch *amqp.Channel, from, to int) {
		t.Helper()
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, to-from))
		for i := from; i < to; i++ {
			if err := ch.Publish("", "qd", false, false, amqp.Publishing{DeliveryMode: 2, MessageId: fmt.Sprint("m-", i), Body: []byte(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
		for range to - from {
			select {
			case cf := <-confirms:
				if !cf.Ack {
					t.Fatal("nack")
				}
			case <-time.After(20 * time.Second):
				t.Fatal("confirms")
			}
		}
	}
	publish(ch, 0, 500)
	c.Node(1).Kill()
	var nl int
	eventually(t, 15*time.Second, func() error {
		for _, i := range []int{2, 3} {
			if x := queueLeader(t, c, i, "qd"); x == 2 || x == 3 {
				nl = x
				return nil
			}
		}
		return errors.New("no new leader")
	})
	_, ch2 := channel(t, c, nl)
	publish(ch2, 0, 600) // the 500 again, and 100 new ones
	q, err := ch2.QueueDeclarePassive("qd", true, false, false, false, args)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 600 {
		t.Fatalf("%d messages after retrying 500 across the failover and adding 100, want 600", q.Messages)
	}
}
