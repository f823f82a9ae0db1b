package clustertest

import (
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dialAny is the README's client failover loop's dial: the node addresses in random order,
// the first that answers.
func dialAny(urls []string) (*amqp.Connection, error) {
	var err error
	for _, i := range rand.Perm(len(urls)) {
		var c *amqp.Connection
		if c, err = amqp.Dial(urls[i]); err == nil {
			return c, nil
		}
	}
	return nil, err
}

// The README's client loop against a cluster: it consumes a quorum queue, the node it is
// connected to is killed, and it goes on through another node (declaring the queue again)
// until it has every message; what the lost connection had not acked comes back redelivered.
func TestCluster_ClientFailsOverToAnotherNode(t *testing.T) {
	c := startCluster(t, 3)
	_, ch := channel(t, c, 2)
	args := amqp.Table{"x-queue-type": "quorum"}
	if _, err := ch.QueueDeclare("orders", true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	const n = 200
	publishConfirmedTo(t, ch, "orders", n, "")
	var urls []string
	byAddr := map[string]*Node{}
	for _, nd := range c.Nodes {
		urls = append(urls, nd.URL())
		byAddr[nd.Args.AMQP] = nd
	}
	var mu sync.Mutex
	got := map[string]int{}
	connects := 0
	done := make(chan struct{})
	killed := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn, err := dialAny(urls)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			mu.Lock()
			connects++
			first := connects == 1
			mu.Unlock()
			closed := conn.NotifyClose(make(chan *amqp.Error, 1))
			cch, err := conn.Channel()
			if err == nil {
				_, err = cch.QueueDeclare("orders", true, false, false, false, args)
			}
			if err == nil {
				err = cch.Qos(10, 0, false)
			}
			var msgs <-chan amqp.Delivery
			if err == nil {
				msgs, err = cch.Consume("orders", "", false, false, false, false, nil)
			}
			if err != nil {
				conn.Close()
				continue
			}
			for m := range msgs {
				mu.Lock()
				got[string(m.Body)]++
				k := len(got)
				mu.Unlock()
				if first && k == n/4 {
					// Kill the node this client is connected to, with deliveries unacked.
					if nd := byAddr[conn.RemoteAddr().String()]; nd != nil {
						nd.Kill()
					}
					close(killed)
					continue
				}
				m.Ack(false)
				if k == n {
					close(done)
					conn.Close()
					return
				}
			}
			<-closed
		}
	}()
	select {
	case <-killed:
	case <-time.After(20 * time.Second):
		t.Fatal("the client never got a quarter of the messages")
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("after its node was killed the client got %d of %d messages (%d connections)", len(got), n, connects)
	}
	mu.Lock()
	defer mu.Unlock()
	if connects < 2 {
		t.Fatalf("%d connections: the client never failed over", connects)
	}
	for i := range n {
		if got[fmt.Sprint(i)] == 0 {
			t.Fatalf("message %d never came", i)
		}
	}
}
