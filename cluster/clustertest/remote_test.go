package clustertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Cluster III on real processes: a queue lives on one node (the node its declare went to, as
// RabbitMQ's classic queues) and every node serves it: publish on one node, consume on
// another, get, purge and delete from a third; a consumer elsewhere is cancelled when the
// queue is deleted or its home node dies, and the queue comes back with its durable messages
// when the home node does.

func declareOn(t *testing.T, c *Cluster, i int, name string, durable bool, args amqp.Table) {
	t.Helper()
	_, ch := channel(t, c, i)
	if _, err := ch.QueueDeclare(name, durable, false, false, false, args); err != nil {
		t.Fatalf("declare %s on node %d: %v", name, i, err)
	}
}

// passive is a passive declare's counts on node i (a fresh channel: an error closes it).
func passive(t *testing.T, c *Cluster, i int, name string) (amqp.Queue, error) {
	t.Helper()
	_, ch := channel(t, c, i)
	return ch.QueueDeclarePassive(name, true, false, false, false, nil)
}

func publishConfirmedTo(t *testing.T, ch *amqp.Channel, key string, n int, prefix string) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for i := 0; i < n; i++ {
		if err := ch.Publish("", key, false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprintf("%s%d", prefix, i))}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case cf := <-confirms:
			if !cf.Ack {
				t.Fatalf("publish %d nacked", cf.DeliveryTag)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%d of %d confirms", i, n)
		}
	}
}

func TestRemote_PublishOnOneNodeConsumeOnAnother(t *testing.T) {
	c := startCluster(t, 3)
	declareOn(t, c, 2, "jobs", true, nil)
	_, pub := channel(t, c, 1)
	const n = 500
	publishConfirmedTo(t, pub, "jobs", n, "m")
	eventually(t, 10*time.Second, func() error {
		q, err := passive(t, c, 3, "jobs")
		if err != nil || q.Messages != n {
			return fmt.Errorf("node 3 sees %d messages (%v)", q.Messages, err)
		}
		return nil
	})
	// Management on any node shows the queue on its home, with the home's counts.
	for i := 1; i <= 3; i++ {
		code, body := api(t, c, i, "GET", "/api/queues/%2F/jobs", nil)
		var q struct {
			Node     string `json:"node"`
			Messages int    `json:"messages"`
			State    string `json:"state"`
		}
		if code != 200 || json.Unmarshal(body, &q) != nil || q.Node != c.Node(2).Args.Name || q.Messages != n || q.State != "running" {
			t.Fatalf("node %d: GET /api/queues/%%2F/jobs: %d %s", i, code, body)
		}
		code, body = api(t, c, i, "GET", "/api/queues", nil)
		if code != 200 || !strings.Contains(string(body), `"messages":500`) || !strings.Contains(string(body), `"node":"`+c.Node(2).Args.Name+`"`) {
			t.Fatalf("node %d: GET /api/queues: %d %s", i, code, body)
		}
	}
	_, sub := channel(t, c, 3)
	if err := sub.Qos(10, 0, false); err != nil {
		t.Fatal(err)
	}
	d, err := sub.Consume("jobs", "c3", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		select {
		case m := <-d:
			if want := fmt.Sprintf("m%d", i); string(m.Body) != want {
				t.Fatalf("delivery %d: %q, want %q", i, m.Body, want)
			}
			if err := m.Ack(false); err != nil {
				t.Fatal(err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%d of %d deliveries", i, n)
		}
	}
	// Acks went back to the home: nothing left, one consumer, as every node reports.
	for i := 1; i <= 3; i++ {
		eventually(t, 10*time.Second, func() error {
			q, err := passive(t, c, i, "jobs")
			if err != nil || q.Messages != 0 || q.Consumers != 1 {
				return fmt.Errorf("node %d: %d messages, %d consumers (%v)", i, q.Messages, q.Consumers, err)
			}
			return nil
		})
	}
}

func TestRemote_GetPurgeDeleteFromOtherNodes(t *testing.T) {
	c := startCluster(t, 3)
	declareOn(t, c, 1, "work", true, nil)
	_, ch1 := channel(t, c, 1)
	publishConfirmedTo(t, ch1, "work", 5, "w")
	_, ch3 := channel(t, c, 3)
	m, ok, err := ch3.Get("work", false)
	if err != nil || !ok || string(m.Body) != "w0" {
		t.Fatalf("get on node 3: %q %v %v", m.Body, ok, err)
	}
	if err := m.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	m, ok, err = ch3.Get("work", true)
	if err != nil || !ok || string(m.Body) != "w0" || !m.Redelivered {
		t.Fatalf("get after requeue: %q %v redelivered=%v %v", m.Body, ok, m.Redelivered, err)
	}
	_, ch2 := channel(t, c, 2)
	n, err := ch2.QueuePurge("work", false)
	if err != nil || n != 4 {
		t.Fatalf("purge on node 2: %d %v", n, err)
	}
	// A consumer on node 3 is cancelled when node 2 deletes the queue (homed on node 1).
	conn3, cch := channel(t, c, 3)
	_ = conn3
	cancels := cch.NotifyCancel(make(chan string, 1))
	if _, err := cch.Consume("work", "watcher", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch2.QueueDelete("work", false, false, false); err != nil {
		t.Fatal(err)
	}
	select {
	case tag := <-cancels:
		if tag != "watcher" {
			t.Fatalf("cancelled %q", tag)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("consumer on node 3 not cancelled by the delete on node 2")
	}
	for i := 1; i <= 3; i++ {
		eventually(t, 10*time.Second, func() error { // the other nodes apply the delete a moment later
			var ae *amqp.Error
			if _, err := passive(t, c, i, "work"); !errors.As(err, &ae) || ae.Code != amqp.NotFound {
				return fmt.Errorf("node %d after delete: %v", i, err)
			}
			return nil
		})
	}
}

func TestRemote_HomeKilledCancelsConsumersAndComesBack(t *testing.T) {
	c := startCluster(t, 3)
	declareOn(t, c, 2, "durable", true, nil)
	_, ch1 := channel(t, c, 1)
	publishConfirmedTo(t, ch1, "durable", 3, "d")
	_, ch3 := channel(t, c, 3)
	if err := ch3.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	cancels := ch3.NotifyCancel(make(chan string, 1))
	d, err := ch3.Consume("durable", "c3", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-d:
		if string(m.Body) != "d0" {
			t.Fatalf("first delivery %q", m.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
	home := c.Node(2).Args.Name
	if err := c.Node(2).Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case <-cancels:
		t.Logf("consumer on node 3 cancelled %v after its queue's home was killed", time.Since(killed).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("consumer not cancelled when the queue's home node was killed")
	}
	want := fmt.Sprintf("NOT_FOUND - home node '%s' of durable queue 'durable' in vhost '/' is down or inaccessible", home)
	var ae *amqp.Error
	if _, err := passive(t, c, 1, "durable"); !errors.As(err, &ae) || ae.Error() != "Exception (404) Reason: \""+want+"\"" {
		t.Fatalf("passive declare on node 1: %v", err)
	}
	if code, body := api(t, c, 1, "GET", "/api/queues/%2F/durable", nil); code != 200 || !strings.Contains(string(body), `"state":"down"`) {
		t.Fatalf("management on node 1 for a queue whose home is down: %d %s", code, body)
	}
	_, g := channel(t, c, 3)
	if _, _, err := g.Get("durable", false); !errors.As(err, &ae) || !strings.Contains(ae.Reason, want) {
		t.Fatalf("get on node 3: %v", err)
	}
	// Publishing to it with confirms: a nack (the message was not stored; RabbitMQ confirms
	// it and loses it). Without confirms it is lost, as on RabbitMQ, and returned when
	// mandatory.
	_, p := channel(t, c, 1)
	p.Confirm(false)
	confirms := p.NotifyPublish(make(chan amqp.Confirmation, 1))
	if err := p.Publish("", "durable", true, false, amqp.Publishing{DeliveryMode: 2, Body: []byte("nacked")}); err != nil {
		t.Fatal(err)
	}
	select {
	case cf := <-confirms:
		if cf.Ack {
			t.Fatal("a publish to a queue whose home is down was confirmed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to a publish to a queue whose home is down")
	}
	_, np := channel(t, c, 1)
	returns := np.NotifyReturn(make(chan amqp.Return, 1))
	if err := np.Publish("", "durable", true, false, amqp.Publishing{DeliveryMode: 2, Body: []byte("lost")}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-returns:
		if r.ReplyText != "NO_ROUTE" {
			t.Fatalf("return %q", r.ReplyText)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mandatory publish to a queue whose home is down not returned")
	}
	// The home comes back with its durable messages (d0 was unacked: back too).
	if err := c.Node(2).Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		q, err := passive(t, c, 1, "durable")
		if err != nil || q.Messages != 3 {
			return fmt.Errorf("after restart: %d messages (%v)", q.Messages, err)
		}
		return nil
	})
	_, ch := channel(t, c, 3)
	m, ok, err := ch.Get("durable", true)
	if err != nil || !ok || string(m.Body) != "d0" || !m.Redelivered {
		t.Fatalf("get after restart: %q %v redelivered=%v %v", m.Body, ok, m.Redelivered, err)
	}
}

// A queue declared through one node is usable at once through another: a node that does not
// know a name yet catches up with the metadata log before it answers 404.
func TestRemote_DeclaredOnOneNodeUsableAtOnceOnAnother(t *testing.T) {
	c := startCluster(t, 3)
	for k := 0; k < 20; k++ {
		on, use := k%3+1, (k+1)%3+1
		name := fmt.Sprintf("fresh-%d", k)
		_, dch := channel(t, c, on)
		if _, err := dch.QueueDeclare(name, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := dch.ExchangeDeclare(name+"-x", "fanout", false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		_, uch := channel(t, c, use)
		if _, err := uch.QueueDeclarePassive(name, false, false, false, false, nil); err != nil {
			t.Fatalf("round %d: passive declare on node %d of a queue declared on node %d: %v", k, use, on, err)
		}
		if err := uch.QueueBind(name, "", name+"-x", false, nil); err != nil {
			t.Fatalf("round %d: bind on node %d: %v", k, use, err)
		}
		if _, err := uch.Consume(name, "", true, false, false, false, nil); err != nil {
			t.Fatalf("round %d: consume on node %d: %v", k, use, err)
		}
		// Published through the third node right after the declare: routed, not returned.
		pub := (k+2)%3 + 1
		_, pch := channel(t, c, pub)
		pch.Confirm(false)
		returns := pch.NotifyReturn(make(chan amqp.Return, 1))
		confirms := pch.NotifyPublish(make(chan amqp.Confirmation, 1))
		name2 := fmt.Sprintf("fresh2-%d", k)
		if _, err := dch.QueueDeclare(name2, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := pch.Publish("", name2, true, false, amqp.Publishing{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		<-confirms // a return comes before the confirm
		select {
		case <-returns:
			t.Fatalf("round %d: publish on node %d right after the declare on node %d returned unroutable", k, pub, on)
		default:
		}
	}
}

// Direct reply-to across nodes: an RPC client on node 1 (amq.rabbitmq.reply-to), its server
// consuming on node 2, the request queue led on node 3: every reply reaches the client (the
// reply address names the client's node; the server's node forwards the reply there).
func TestRemote_DirectReplyToAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	_, ch3 := channel(t, c, 3)
	if _, err := ch3.QueueDeclare("rpc", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	_, srv := channel(t, c, 2)
	reqs, err := srv.Consume("rpc", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for d := range reqs {
			srv.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Body: append([]byte("re:"), d.Body...)})
		}
	}()
	_, cli := channel(t, c, 1)
	replies, err := cli.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		if err := cli.Publish("", "rpc", false, false, amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: fmt.Sprint(i), Body: []byte(fmt.Sprint("q", i))}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	for len(got) < n {
		select {
		case d := <-replies:
			got[d.CorrelationId] = string(d.Body)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d replies across nodes", len(got), n)
		}
	}
	for i := range n {
		if got[fmt.Sprint(i)] != fmt.Sprint("re:q", i) {
			t.Fatalf("reply %d: %q", i, got[fmt.Sprint(i)])
		}
	}
}

// Management from any node shows the whole cluster: connections, channels and consumers of
// every node (each with its node), the overview's totals, and a connection on another node
// can be closed through this one (RabbitMQ's management shows and closes them cluster-wide).
func TestRemote_ManagementShowsTheWholeCluster(t *testing.T) {
	c := startCluster(t, 3)
	_, ch3 := channel(t, c, 3)
	if _, err := ch3.QueueDeclare("seen", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	channel(t, c, 1)
	_, ch2 := channel(t, c, 2)
	if _, err := ch2.Consume("seen", "watcher", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	channel(t, c, 3)
	n2, n3 := c.Node(2).Args.Name, c.Node(3).Args.Name

	var conns []struct{ Name, Node string }
	eventually(t, 10*time.Second, func() error {
		code, body := api(t, c, 1, "GET", "/api/connections", nil)
		if code != 200 {
			return fmt.Errorf("connections: %d %s", code, body)
		}
		conns = nil
		json.Unmarshal(body, &conns)
		nodes := map[string]int{}
		for _, x := range conns {
			nodes[x.Node]++
		}
		if len(nodes) != 3 || nodes[n3] != 2 {
			return fmt.Errorf("node 1 lists connections by node %v, want all three nodes (two on node 3)", nodes)
		}
		return nil
	})
	code, body := api(t, c, 1, "GET", "/api/channels", nil)
	var chans []struct{ Node string }
	json.Unmarshal(body, &chans)
	if code != 200 || len(chans) != 4 {
		t.Fatalf("channels from node 1: %d, %d listed (%s), want 4", code, len(chans), body)
	}
	code, body = api(t, c, 1, "GET", "/api/consumers", nil)
	var cons []struct {
		Tag     string `json:"consumer_tag"`
		Queue   struct{ Name string }
		Channel struct{ Node string } `json:"channel_details"`
	}
	json.Unmarshal(body, &cons)
	if code != 200 || len(cons) != 1 || cons[0].Tag != "watcher" || cons[0].Queue.Name != "seen" || cons[0].Channel.Node != n2 {
		t.Fatalf("consumers from node 1: %d %s, want the one on node 2 of the queue on node 3", code, body)
	}
	code, body = api(t, c, 1, "GET", "/api/overview", nil)
	var ov struct {
		Totals struct{ Connections, Channels, Consumers int } `json:"object_totals"`
	}
	json.Unmarshal(body, &ov)
	if code != 200 || ov.Totals.Connections != 4 || ov.Totals.Channels != 4 || ov.Totals.Consumers != 1 {
		t.Fatalf("overview from node 1: %d %+v", code, ov.Totals)
	}
	// Close one of node 3's connections through node 1.
	var target string
	for _, x := range conns {
		if x.Node == n3 {
			target = x.Name
		}
	}
	code, body = api(t, c, 1, "GET", "/api/connections/"+url.PathEscape(target), nil)
	if code != 200 || !strings.Contains(string(body), n3) {
		t.Fatalf("connection on node 3 through node 1: %d %s", code, body)
	}
	if code, body = api(t, c, 1, "DELETE", "/api/connections/"+url.PathEscape(target), nil); code != 204 {
		t.Fatalf("close a connection on node 3 through node 1: %d %s", code, body)
	}
	eventually(t, 10*time.Second, func() error {
		code, body := api(t, c, 1, "GET", "/api/connections", nil)
		var left []struct{ Name string }
		json.Unmarshal(body, &left)
		if code != 200 || len(left) != 3 {
			return fmt.Errorf("after the close: %d %d connections", code, len(left))
		}
		return nil
	})
	// Every member's own figures, asked of the member itself (gossip alone has no memory use).
	code, body = api(t, c, 1, "GET", "/api/nodes", nil)
	var nodes []map[string]any
	json.Unmarshal(body, &nodes)
	if code != 200 || len(nodes) != 3 {
		t.Fatalf("nodes from node 1: %d %s", code, body)
	}
	for _, nd := range nodes {
		if _, ok := nd["mem_used"]; !ok || nd["running"] != true {
			t.Fatalf("node %v as node 1 lists it: not asked of the node itself", nd["name"])
		}
	}
	code, body = api(t, c, 2, "GET", "/api/vhosts/%2F/connections", nil)
	var inVhost []struct{ Name string }
	json.Unmarshal(body, &inVhost)
	if code != 200 || len(inVhost) != 3 {
		t.Fatalf("connections of vhost / from node 2: %d %s", code, body)
	}
	if code, _ := api(t, c, 1, "GET", "/api/connections/nowhere", nil); code != 404 {
		t.Fatalf("unknown connection: %d", code)
	}
}
