package conformance

import (
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Queue placement arguments, as RabbitMQ 3.10 checks them (its queue-type argument lists):
// a classic queue takes x-queue-master-locator (client-local, min-masters, random) and refuses
// x-queue-leader-locator; a quorum queue takes x-queue-leader-locator (client-local, balanced)
// and refuses x-queue-master-locator. An unknown master-locator strategy makes RabbitMQ's
// declare crash: 541 INTERNAL_ERROR, which closes the connection.
func TestQueueDeclare_LocatorArgumentsByQueueType(t *testing.T) {
	t.Parallel()
	c := dial(t)
	accepted := map[string]amqp.Table{
		"classic-client-local": {"x-queue-master-locator": "client-local"},
		"classic-min-masters":  {"x-queue-master-locator": "min-masters"},
		"classic-random":       {"x-queue-master-locator": "random"},
		"quorum-client-local":  {"x-queue-type": "quorum", "x-queue-leader-locator": "client-local"},
		"quorum-balanced":      {"x-queue-type": "quorum", "x-queue-leader-locator": "balanced"},
	}
	for name, args := range accepted {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			defer queueDeleteAfter(q)
			if _, err := openChannel(t, c).QueueDeclare(q, true, false, false, false, args); err != nil {
				t.Fatalf("queue.declare with %v: %v", args, err)
			}
		})
	}
	refused := []struct {
		name string
		args amqp.Table
		text string // %s: the queue's name
	}{
		{"classic-leader-locator", amqp.Table{"x-queue-leader-locator": "balanced"},
			"PRECONDITION_FAILED - invalid arg 'x-queue-leader-locator' for queue '%s' in vhost '/' of queue type rabbit_classic_queue"},
		{"quorum-master-locator", amqp.Table{"x-queue-type": "quorum", "x-queue-master-locator": "random"},
			"PRECONDITION_FAILED - invalid arg 'x-queue-master-locator' for queue '%s' in vhost '/' of queue type rabbit_quorum_queue"},
		{"quorum-unknown-strategy", amqp.Table{"x-queue-type": "quorum", "x-queue-leader-locator": "foo"},
			"PRECONDITION_FAILED - invalid arg 'x-queue-leader-locator' for queue '%s' in vhost '/': invalid_queue_locator_arg"},
		{"quorum-strategy-not-a-string", amqp.Table{"x-queue-type": "quorum", "x-queue-leader-locator": int32(1)},
			"PRECONDITION_FAILED - invalid arg 'x-queue-leader-locator' for queue '%s' in vhost '/': {unacceptable_type,signedint}"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := uniqueName(t)
			defer queueDeleteAfter(q)
			_, err := openChannel(t, c).QueueDeclare(q, true, false, false, false, tc.args)
			e := amqpErr(t, err, 406)
			if want := fmt.Sprintf(tc.text, q); e.Reason != want {
				t.Fatalf("reason %q, want %q", e.Reason, want)
			}
		})
	}
	t.Run("classic-unknown-strategy", func(t *testing.T) {
		t.Parallel()
		q := uniqueName(t)
		defer queueDeleteAfter(q)
		own := dial(t)
		_, err := openChannel(t, own).QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-master-locator": "foo"})
		amqpErr(t, err, 541)
	})
}
