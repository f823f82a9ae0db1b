package mgmt_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestAPI_BasicAuthRequired(t *testing.T) {
	e := start(t)
	code, _ := e.doAs("", "", "GET", "/api/overview", nil)
	if code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", e.http.URL+"/api/queues", nil)
	req.SetBasicAuth("guest", "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("bad password: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if code, _ := e.doAs("", "", "GET", "/api/health", nil); code != 200 {
		t.Fatalf("/api/health: %d", code)
	}
	who := e.getObj("/api/whoami")
	if who["name"] != "guest" {
		t.Fatalf("whoami: %v", who)
	}
}

func TestAPI_DefaultVHostIsPercentEncoded(t *testing.T) {
	e := start(t)
	vh := e.getObj("/api/vhosts/%2F")
	if vh["name"] != "/" {
		t.Fatalf("vhost: %v", vh)
	}
	e.must(404, "GET", "/api/vhosts/nope", nil)
	e.must(404, "GET", "/api/queues/nope", nil)
	xs := e.getList("/api/exchanges/%2F")
	if len(xs) != 6 {
		t.Fatalf("%d exchanges, want the 6 predeclared ones", len(xs))
	}
	x := e.getObj("/api/exchanges/%2F/amq.default")
	if x["name"] != "" || x["type"] != "direct" {
		t.Fatalf("amq.default: %v", x)
	}
}

func TestAPI_QueueDeclarePublishGetPurgeDelete(t *testing.T) {
	e := start(t)
	// rabbitmqadmin sends booleans as strings.
	e.must(201, "PUT", "/api/queues/%2F/jobs", map[string]any{"durable": "false", "auto_delete": "false", "arguments": map[string]any{"x-max-length": 100}})
	e.must(204, "PUT", "/api/queues/%2F/jobs", map[string]any{"durable": false, "arguments": map[string]any{"x-max-length": 100}})
	e.must(400, "PUT", "/api/queues/%2F/jobs", map[string]any{"durable": true})
	q := e.getObj("/api/queues/%2F/jobs")
	if q["durable"] != false || num(q, "arguments.x-max-length") != 100 || q["vhost"] != "/" {
		t.Fatalf("queue: %v", q)
	}

	var pub map[string]any
	json.Unmarshal(e.must(200, "POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{
		"routing_key": "jobs", "payload": "hello", "payload_encoding": "string",
		"properties": map[string]any{"content_type": "text/plain", "headers": map[string]any{"n": 1}, "delivery_mode": 2},
	}), &pub)
	if pub["routed"] != true {
		t.Fatalf("publish: %v", pub)
	}
	e.must(200, "POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{
		"routing_key": "jobs", "payload": "/w==", "payload_encoding": "base64", "properties": map[string]any{},
	})
	json.Unmarshal(e.must(200, "POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{
		"routing_key": "nowhere", "payload": "x", "payload_encoding": "string", "properties": map[string]any{},
	}), &pub)
	if pub["routed"] != false {
		t.Fatalf("unroutable publish: %v", pub)
	}
	e.must(400, "POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{})
	e.must(404, "POST", "/api/exchanges/%2F/missing/publish", map[string]any{})

	var got []map[string]any
	json.Unmarshal(e.must(200, "POST", "/api/queues/%2F/jobs/get", map[string]any{"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}), &got)
	if len(got) != 2 {
		t.Fatalf("get: %d messages, want 2: %v", len(got), got)
	}
	if got[0]["payload"] != "hello" || got[0]["payload_encoding"] != "string" || num(got[0], "message_count") != 1 ||
		num(got[0], "properties.headers.n") != 1 || got[0]["redelivered"] != false {
		t.Fatalf("first message: %v", got[0])
	}
	if got[1]["payload"] != "/w==" || got[1]["payload_encoding"] != "base64" || num(got[1], "payload_bytes") != 1 {
		t.Fatalf("binary message must come back base64 with encoding auto: %v", got[1])
	}
	// Requeued: still two, now redelivered.
	json.Unmarshal(e.must(200, "POST", "/api/queues/%2F/jobs/get", map[string]any{"count": "1", "ackmode": "ack_requeue_false", "encoding": "base64"}), &got)
	if len(got) != 1 || got[0]["redelivered"] != true || got[0]["payload"] != "aGVsbG8=" {
		t.Fatalf("get ack_requeue_false: %v", got)
	}
	if q := e.getObj("/api/queues/%2F/jobs"); num(q, "messages") != 1 {
		t.Fatalf("after one dropped get: messages %v", q["messages"])
	}
	e.must(204, "DELETE", "/api/queues/%2F/jobs/contents", nil)
	if q := e.getObj("/api/queues/%2F/jobs"); num(q, "messages") != 0 {
		t.Fatalf("after purge: messages %v", q["messages"])
	}
	e.must(204, "DELETE", "/api/queues/%2F/jobs", nil)
	e.must(404, "DELETE", "/api/queues/%2F/jobs", nil)
	e.must(404, "GET", "/api/queues/%2F/jobs", nil)
}

func TestAPI_ExchangesAndBindingsByPropertiesKey(t *testing.T) {
	e := start(t)
	e.must(201, "PUT", "/api/exchanges/%2F/logs", map[string]any{"type": "topic", "durable": "true"})
	e.must(204, "PUT", "/api/exchanges/%2F/logs", map[string]any{"type": "topic", "durable": true})
	e.must(400, "PUT", "/api/exchanges/%2F/bad", map[string]any{"type": "bogus"})
	e.must(201, "PUT", "/api/queues/%2F/errors", map[string]any{})
	e.must(404, "POST", "/api/bindings/%2F/e/logs/q/missing", map[string]any{"routing_key": "k"})

	req, _ := http.NewRequest("POST", e.http.URL+"/api/bindings/%2F/e/logs/q/errors", jsonBody(map[string]any{"routing_key": "*.error", "arguments": map[string]any{"x": 1}}))
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("Location") == "" {
		t.Fatalf("create binding: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.must(201, "POST", "/api/bindings/%2F/e/logs/q/errors", map[string]any{"routing_key": "a.#"})

	bs := e.getList("/api/bindings/%2F/e/logs/q/errors")
	if len(bs) != 2 {
		t.Fatalf("bindings: %v", bs)
	}
	keys := map[string]string{}
	for _, b := range bs {
		keys[b["routing_key"].(string)] = b["properties_key"].(string)
	}
	if keys["a.#"] != "a.%23" {
		t.Fatalf("properties_key of a.# without arguments: %q, want a.%%23", keys["a.#"])
	}
	all := e.getList("/api/queues/%2F/errors/bindings")
	if len(all) != 3 || all[0]["source"] != "" {
		t.Fatalf("queue bindings (default exchange first): %v", all)
	}
	// A published message follows the binding.
	var pub map[string]any
	json.Unmarshal(e.must(200, "POST", "/api/exchanges/%2F/logs/publish", map[string]any{"routing_key": "db.error", "payload": "x", "payload_encoding": "string", "properties": map[string]any{}}), &pub)
	if pub["routed"] != true {
		t.Fatalf("publish through binding: %v", pub)
	}
	// Delete by properties_key, escaped once more in the URL as clients do.
	e.must(204, "DELETE", "/api/bindings/%2F/e/logs/q/errors/"+url.PathEscape(keys["*.error"]), nil)
	e.must(404, "DELETE", "/api/bindings/%2F/e/logs/q/errors/"+url.PathEscape(keys["*.error"]), nil)
	e.must(204, "DELETE", "/api/bindings/%2F/e/logs/q/errors/"+url.PathEscape(keys["a.#"]), nil)
	if bs := e.getList("/api/bindings/%2F/e/logs/q/errors"); len(bs) != 0 {
		t.Fatalf("bindings left: %v", bs)
	}
	// Exchange-to-exchange.
	e.must(201, "PUT", "/api/exchanges/%2F/audit", map[string]any{"type": "fanout"})
	e.must(201, "POST", "/api/bindings/%2F/e/logs/e/audit", map[string]any{"routing_key": "#"})
	if bs := e.getList("/api/exchanges/%2F/audit/bindings/destination"); len(bs) != 1 || bs[0]["destination_type"] != "exchange" {
		t.Fatalf("e2e binding: %v", bs)
	}
	e.must(204, "DELETE", "/api/exchanges/%2F/logs", nil)
	e.must(404, "DELETE", "/api/exchanges/%2F/logs", nil)
}

func TestAPI_ConnectionsChannelsConsumersAndForcedClose(t *testing.T) {
	e := start(t)
	conn, ch := e.dial()
	if _, err := ch.QueueDeclare("work", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.Qos(3, 0, false)
	if _, err := ch.Consume("work", "ctag-1", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	conns := e.getList("/api/connections")
	if len(conns) != 1 || conns[0]["user"] != "guest" || conns[0]["vhost"] != "/" || num(conns[0], "channels") != 1 {
		t.Fatalf("connections: %v", conns)
	}
	name := conns[0]["name"].(string)
	if one := e.getObj("/api/connections/" + url.PathEscape(name)); one["name"] != name {
		t.Fatalf("connection by name: %v", one)
	}
	chans := e.getList("/api/channels")
	if len(chans) != 1 || num(chans[0], "prefetch_count") != 3 || num(chans[0], "consumer_count") != 1 || num(chans[0], "number") != 1 {
		t.Fatalf("channels: %v", chans)
	}
	cons := e.getList("/api/consumers/%2F")
	if len(cons) != 1 || cons[0]["consumer_tag"] != "ctag-1" || cons[0]["ack_required"] != true || num(cons[0], "prefetch_count") != 3 {
		t.Fatalf("consumers: %v", cons)
	}
	if q := e.getObj("/api/queues/%2F/work"); num(q, "consumers") != 1 || len(q["consumer_details"].([]any)) != 1 {
		t.Fatalf("queue consumers: %v", q)
	}

	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	e.must(204, "DELETE", "/api/connections/"+url.PathEscape(name), nil)
	select {
	case err := <-closed:
		if err == nil || err.Code != amqp.ConnectionForced {
			t.Fatalf("close: %v, want 320 CONNECTION_FORCED", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed")
	}
	eventually(t, func() string {
		if n := len(e.getList("/api/connections")); n != 0 {
			return fmt.Sprintf("%d connections after close", n)
		}
		return ""
	})
	e.must(404, "DELETE", "/api/connections/"+url.PathEscape(name), nil)
}

func TestAPI_MessageCountsAndRates(t *testing.T) {
	e := start(t)
	_, ch := e.dial()
	if _, err := ch.QueueDeclare("rates", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.Confirm(false)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	for i := range 20 {
		if err := ch.Publish("", "rates", false, false, amqp.Publishing{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		<-confirms
	}
	for range 5 {
		if _, ok, err := ch.Get("rates", false); err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
	}
	var sawRate bool
	eventually(t, func() string {
		o := e.getObj("/api/overview")
		if num(o, "message_stats.publish_details.rate") > 0 {
			sawRate = true
		}
		switch {
		case num(o, "message_stats.publish") != 20:
			return fmt.Sprintf("publish %v", num(o, "message_stats.publish"))
		case num(o, "message_stats.confirm") != 20:
			return fmt.Sprintf("confirm %v", num(o, "message_stats.confirm"))
		case num(o, "message_stats.get") != 5:
			return fmt.Sprintf("get %v", num(o, "message_stats.get"))
		case num(o, "queue_totals.messages") != 20 || num(o, "queue_totals.messages_unacknowledged") != 5 || num(o, "queue_totals.messages_ready") != 15:
			return fmt.Sprintf("queue_totals %v", o["queue_totals"])
		case num(o, "object_totals.queues") != 1 || num(o, "object_totals.connections") != 1 || num(o, "object_totals.channels") != 1:
			return fmt.Sprintf("object_totals %v", o["object_totals"])
		case !sawRate:
			return "no publish rate sampled yet"
		}
		return ""
	})
	q := e.getObj("/api/queues/%2F/rates")
	if num(q, "messages_ready") != 15 || num(q, "messages_unacknowledged") != 5 || num(q, "message_stats.publish") != 20 || num(q, "message_stats.get") != 5 {
		t.Fatalf("queue: %v", q)
	}
	chans := e.getList("/api/channels")
	if len(chans) != 1 || num(chans[0], "message_stats.publish") != 20 || num(chans[0], "messages_unacknowledged") != 5 || chans[0]["confirm"] != true {
		t.Fatalf("channel: %v", chans)
	}
	if err := ch.Ack(0, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if n := num(e.getObj("/api/overview"), "message_stats.ack"); n != 5 {
			return fmt.Sprintf("ack %v", n)
		}
		return ""
	})
}

// Exchanges report message_stats publish_in/publish_out (one per queue reached) once messages
// went through them, as RabbitMQ's management does; an idle exchange has none.
func TestAPI_ExchangeMessageStats(t *testing.T) {
	e := start(t)
	_, ch := e.dial()
	if err := ch.ExchangeDeclare("fan", "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"f1", "f2", "f3"} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(q, "", "fan", false, nil); err != nil {
			t.Fatal(err)
		}
	}
	ch.Confirm(false)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	for range 4 {
		if err := ch.Publish("fan", "", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // through the default exchange, one to nowhere
		if err := ch.Publish("", "f1", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Publish("", "no-such-queue", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	for range 7 {
		<-confirms
	}
	x := e.getObj("/api/exchanges/%2F/fan")
	if num(x, "message_stats.publish_in") != 4 || num(x, "message_stats.publish_out") != 12 {
		t.Fatalf("fanout exchange message_stats: %v", x["message_stats"])
	}
	d := e.getObj("/api/exchanges/%2F/amq.default")
	if num(d, "message_stats.publish_in") != 3 || num(d, "message_stats.publish_out") != 2 {
		t.Fatalf("default exchange message_stats: %v", d["message_stats"])
	}
	if _, ok := e.getObj("/api/exchanges/%2F/amq.topic")["message_stats"]; ok {
		t.Fatal("an exchange nothing went through has message_stats")
	}
	eventually(t, func() string { // a rate needs traffic between two samples
		ch.Publish("fan", "", false, false, amqp.Publishing{Body: []byte("x")})
		if r := num(e.getObj("/api/exchanges/%2F/fan"), "message_stats.publish_out_details.rate"); r <= 0 {
			return fmt.Sprintf("publish_out rate %v", r)
		}
		return ""
	})
}

func TestAPI_ListQueryColumnsSortAndPages(t *testing.T) {
	e := start(t)
	for _, n := range []string{"b", "a", "c"} {
		e.must(201, "PUT", "/api/queues/%2F/"+n, map[string]any{})
	}
	l := e.getList("/api/queues?columns=name,messages&sort=name&sort_reverse=true")
	if len(l) != 3 || l[0]["name"] != "c" || len(l[0]) != 2 {
		t.Fatalf("columns/sort: %v", l)
	}
	p := e.getObj("/api/queues/%2F?page=2&page_size=2")
	if num(p, "total_count") != 3 || num(p, "page_count") != 2 || num(p, "item_count") != 1 {
		t.Fatalf("page: %v", p)
	}
	ov := e.getObj("/api/overview?columns=rabbitmq_version,object_totals.queues")
	if ov["rabbitmq_version"] == nil || num(ov, "object_totals.queues") != 3 || len(ov) != 2 {
		t.Fatalf("overview columns: %v", ov)
	}
}

func TestAPI_DefinitionsExportImportRoundTrip(t *testing.T) {
	src := start(t)
	src.must(201, "PUT", "/api/exchanges/%2F/orders", map[string]any{"type": "topic", "durable": true})
	src.must(201, "PUT", "/api/queues/%2F/billing", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 10}})
	src.must(201, "POST", "/api/bindings/%2F/e/orders/q/billing", map[string]any{"routing_key": "order.*"})
	defs := src.must(200, "GET", "/api/definitions", nil)
	var d map[string]any
	json.Unmarshal(defs, &d)
	for _, k := range []string{"rabbit_version", "users", "vhosts", "permissions", "queues", "exchanges", "bindings"} {
		if _, ok := d[k]; !ok {
			t.Fatalf("export lacks %q: %s", k, defs)
		}
	}
	if len(d["queues"].([]any)) != 1 || len(d["exchanges"].([]any)) != 1 || len(d["bindings"].([]any)) != 1 {
		t.Fatalf("export: %s", defs)
	}

	dst := start(t)
	dst.must(204, "POST", "/api/definitions", string(defs))
	q := dst.getObj("/api/queues/%2F/billing")
	if q["durable"] != true || num(q, "arguments.x-max-length") != 10 {
		t.Fatalf("imported queue: %v", q)
	}
	if bs := dst.getList("/api/bindings/%2F/e/orders/q/billing"); len(bs) != 1 || bs[0]["routing_key"] != "order.*" {
		t.Fatalf("imported bindings: %v", bs)
	}
}

func TestAPI_AlivenessAndNodes(t *testing.T) {
	e := start(t)
	if o := e.getObj("/api/aliveness-test/%2F"); o["status"] != "ok" {
		t.Fatalf("aliveness: %v", o)
	}
	if o := e.getObj("/api/health/checks/alarms"); o["status"] != "ok" {
		t.Fatalf("alarms: %v", o)
	}
	nodes := e.getList("/api/nodes")
	if len(nodes) != 1 || nodes[0]["name"] != "warren@test" || num(nodes[0], "mem_used") <= 0 || nodes[0]["running"] != true {
		t.Fatalf("nodes: %v", nodes)
	}
}

func jsonBody(v any) *bytes.Reader {
	data, _ := json.Marshal(v)
	return bytes.NewReader(data)
}
