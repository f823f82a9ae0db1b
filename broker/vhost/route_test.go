package vhost

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

// heavyTopicVHost returns a vhost whose topic exchange "slow" has n long random "#"/"*"
// patterns bound to queue "victim": routing a long key through it visits n×126 trie nodes at
// each of the key's 128 words (polynomial, but a second or so for n=2000).
func heavyTopicVHost(t *testing.T, n int) *VHost {
	t.Helper()
	v := New("/", nil)
	if _, err := v.DeclareExchange(ExchangeDecl{Name: "slow", Type: "topic"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.DeclareQueue(QueueDecl{Name: "victim"}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(18, 18))
	w := make([]string, 126)
	for range n {
		for j := range w {
			w[j] = [...]string{"#", "*"}[rng.IntN(2)]
		}
		if err := v.BindQueue("victim", "slow", strings.Join(w, "."), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func testMessage(t *testing.T, exchange, key string) *message.Message {
	t.Helper()
	m, err := message.New(exchange, key, (&amqp.Properties{}).AppendTo(nil), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRoute_SlowTopicMatchBlocksOnlyItsPublisher (issue 18): while one publish spends long in
// a topic match, declares, publishes (through other exchanges and the same one), bindings to
// the same exchange and binding listings go on.
func TestRoute_SlowTopicMatchBlocksOnlyItsPublisher(t *testing.T) {
	v := heavyTopicVHost(t, 2000)
	key := strings.Repeat("a.", 127) + "a"
	slowDone := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		var r Router
		if err := v.Route(&r, "slow", key, testMessage(t, "slow", key)); err != nil {
			t.Error(err)
		}
		if len(r.Queues) != 1 {
			t.Errorf("slow route reached %d queues", len(r.Queues))
		}
		slowDone <- time.Since(start)
	}()
	time.Sleep(50 * time.Millisecond) // let the slow route start

	const limit = 250 * time.Millisecond // generous for -race on a loaded machine; before the fix: the whole slow route
	step := func(name string, f func() error) {
		t.Helper()
		start := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if took := time.Since(start); took > limit {
			t.Fatalf("%s took %v during a slow route (limit %v)", name, took, limit)
		}
	}
	for i := range 5 {
		name := fmt.Sprint("bystander", i)
		step("queue declare", func() error { _, _, err := v.DeclareQueue(QueueDecl{Name: name}); return err })
		step("publish to the default exchange", func() error {
			var r Router
			err := v.Route(&r, "", name, testMessage(t, "", name))
			if err == nil && len(r.Queues) != 1 {
				err = fmt.Errorf("reached %d queues", len(r.Queues))
			}
			return err
		})
		step("bind to the slow exchange", func() error { return v.BindQueue(name, "slow", "b.c", nil, nil) })
		step("publish to the slow exchange", func() error {
			var r Router
			err := v.Route(&r, "slow", "b.c", testMessage(t, "slow", "b.c"))
			if err == nil && len(r.Queues) != 1+i {
				err = fmt.Errorf("reached %d queues", len(r.Queues))
			}
			return err
		})
		step("list bindings", func() error { v.Bindings(); return nil })
	}
	select {
	case took := <-slowDone:
		t.Fatalf("the slow route finished (%v) before the bystanders did: make it slower", took)
	default:
	}
	select {
	case took := <-slowDone:
		t.Logf("slow route took %v", took)
	case <-time.After(2 * time.Minute):
		t.Fatal("slow route did not finish")
	}
}
