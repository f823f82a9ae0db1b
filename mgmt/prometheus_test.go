package mgmt_test

import (
	"bufio"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"
)

// overviewSeries reads testdata/rabbitmq-overview-series.txt: name → type and label names.
func overviewSeries(t *testing.T) map[string]struct {
	typ    string
	labels []string
} {
	t.Helper()
	f, err := os.Open("testdata/rabbitmq-overview-series.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]struct {
		typ    string
		labels []string
	}{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			t.Fatalf("bad line %q", line)
		}
		var labels []string
		if fields[2] != "-" {
			labels = strings.Split(fields[2], ",")
		}
		out[fields[0]] = struct {
			typ    string
			labels []string
		}{fields[1], labels}
	}
	if len(out) < 40 {
		t.Fatalf("only %d series listed", len(out))
	}
	return out
}

// overviewWorkload runs the workload whose counters a RabbitMQ 3.10.8 node reported as in
// overviewWant, and leaves its connection (two open channels, one consumer) open.
func overviewWorkload(t *testing.T, url string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	const q = "overview-q"
	for range 2 { // a declare and a redeclare
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ch.QueueDeclarePassive(q, false, false, false, false, nil); err != nil { // not counted
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 16))
	returns := ch.NotifyReturn(make(chan amqp.Return, 4))
	for range 5 {
		if err := ch.Publish("", q, false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	ch.Publish("", "nowhere", true, false, amqp.Publishing{Body: []byte("m")})  // returned
	ch.Publish("", "nowhere", false, false, amqp.Publishing{Body: []byte("m")}) // dropped
	for i := range 7 {
		select {
		case <-confirms:
		case <-time.After(10 * time.Second):
			t.Fatalf("confirm %d missing", i)
		}
	}
	select {
	case <-returns:
	case <-time.After(10 * time.Second):
		t.Fatal("return missing")
	}
	d, ok, err := ch.Get(q, false) // get, manual ack
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	d.Ack(false)
	if _, ok, err := ch.Get(q, true); err != nil || !ok { // get, auto ack
		t.Fatalf("get: %v %v", ok, err)
	}
	cch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	ds, err := cch.Consume(q, "c1", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	next := func() amqp.Delivery {
		select {
		case d := <-ds:
			return d
		case <-time.After(10 * time.Second):
			t.Fatal("delivery missing")
		}
		return amqp.Delivery{}
	}
	next().Nack(false, true) // comes back redelivered
	for range 3 {
		next().Ack(false)
	}
	// Acks are asynchronous: wait for the queue to be empty before the empty get.
	deadline := time.Now().Add(10 * time.Second)
	for {
		qi, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if qi.Messages == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue still holds %d", qi.Messages)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok, err := ch.Get(q, true); err != nil || ok { // get-empty
		t.Fatalf("empty get: %v %v", ok, err)
	}
	if tmp, err := conn.Channel(); err != nil {
		t.Fatal(err)
	} else {
		tmp.Close()
	}
	return conn
}

// overviewWant is what a RabbitMQ 3.10.8 node reported after overviewWorkload (summed over
// labels), with the workload's connection still open.
var overviewWant = map[string]float64{
	"rabbitmq_connections":                                        1,
	"rabbitmq_channels":                                           2,
	"rabbitmq_consumers":                                          1,
	"rabbitmq_channel_consumers":                                  1,
	"rabbitmq_queues":                                             1,
	"rabbitmq_connections_opened_total":                           1,
	"rabbitmq_connections_closed_total":                           0,
	"rabbitmq_channels_opened_total":                              3,
	"rabbitmq_channels_closed_total":                              1,
	"rabbitmq_queues_declared_total":                              2,
	"rabbitmq_queues_created_total":                               1,
	"rabbitmq_queues_deleted_total":                               0,
	"rabbitmq_channel_messages_published_total":                   7,
	"rabbitmq_channel_messages_confirmed_total":                   7,
	"rabbitmq_channel_messages_unconfirmed":                       0,
	"rabbitmq_channel_messages_unroutable_returned_total":         1,
	"rabbitmq_channel_messages_unroutable_dropped_total":          1,
	"rabbitmq_channel_get_ack_total":                              1,
	"rabbitmq_channel_get_total":                                  1,
	"rabbitmq_channel_get_empty_total":                            1,
	"rabbitmq_channel_messages_delivered_ack_total":               4,
	"rabbitmq_channel_messages_delivered_total":                   0,
	"rabbitmq_channel_messages_redelivered_total":                 1,
	"rabbitmq_channel_messages_acked_total":                       4,
	"rabbitmq_global_messages_received_total":                     7,
	"rabbitmq_global_messages_received_confirm_total":             7,
	"rabbitmq_global_messages_routed_total":                       5,
	"rabbitmq_global_messages_unroutable_dropped_total":           1,
	"rabbitmq_global_messages_unroutable_returned_total":          1,
	"rabbitmq_global_messages_confirmed_total":                    7,
	"rabbitmq_global_messages_delivered_total":                    6,
	"rabbitmq_global_messages_delivered_consume_manual_ack_total": 4,
	"rabbitmq_global_messages_delivered_consume_auto_ack_total":   0,
	"rabbitmq_global_messages_delivered_get_manual_ack_total":     1,
	"rabbitmq_global_messages_delivered_get_auto_ack_total":       1,
	"rabbitmq_global_messages_get_empty_total":                    1,
	"rabbitmq_global_messages_redelivered_total":                  1,
	"rabbitmq_global_messages_acknowledged_total":                 4,
	"rabbitmq_global_consumers":                                   1,
	"rabbitmq_queue_messages_ready":                               0,
	"rabbitmq_queue_messages_unacked":                             0,
	"rabbitmq_queue_messages_published_total":                     5, // RabbitMQ's aggregate said 7: it counts the unroutable two as well
}

// sum adds up every sample of a family.
func sum(f *dto.MetricFamily) float64 {
	var v float64
	for _, m := range f.Metric {
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v
}

// checkOverviewSeries checks that every series of the dashboard is in fams with RabbitMQ's type
// and labels, and returns a description of the first difference ("" when none).
func checkOverviewSeries(t *testing.T, fams map[string]*dto.MetricFamily) string {
	for name, want := range overviewSeries(t) {
		f := fams[name]
		if f == nil || len(f.Metric) == 0 {
			return name + ": missing"
		}
		if got := strings.ToLower(f.GetType().String()); got != want.typ {
			return fmt.Sprintf("%s: type %s, want %s", name, got, want.typ)
		}
		for _, m := range f.Metric {
			var got []string
			for _, lp := range m.Label {
				got = append(got, lp.GetName())
			}
			for _, l := range want.labels {
				if !slices.Contains(got, l) {
					return fmt.Sprintf("%s: labels %v lack %s", name, got, l)
				}
			}
			if want.labels == nil && len(got) > 0 {
				return fmt.Sprintf("%s: labels %v, want none", name, got)
			}
		}
	}
	return ""
}

// TestPrometheus_OverviewDashboardSeries: every series RabbitMQ's Grafana "RabbitMQ-Overview"
// dashboard queries is exported, with RabbitMQ's type and labels, and after a known workload
// the counters hold what RabbitMQ 3.10.8 reported for the same workload.
func TestPrometheus_OverviewDashboardSeries(t *testing.T) {
	e := start(t)
	overviewWorkload(t, e.amqp)
	eventually(t, func() string {
		fams := e.scrape()
		if d := checkOverviewSeries(t, fams); d != "" {
			return d
		}
		for name, want := range overviewWant {
			f := fams[name]
			if f == nil {
				return name + ": missing"
			}
			if got := sum(f); got != want {
				return fmt.Sprintf("%s = %v, want %v (RabbitMQ 3.10.8)", name, got, want)
			}
		}
		return ""
	})
	fams := e.scrape()
	for _, g := range []string{"rabbitmq_process_open_fds", "rabbitmq_process_max_fds", "rabbitmq_process_max_tcp_sockets", "rabbitmq_process_resident_memory_bytes", "rabbitmq_resident_memory_limit_bytes", "rabbitmq_disk_space_available_bytes"} {
		if v := sum(fams[g]); v <= 0 {
			t.Errorf("%s = %v, want > 0", g, v)
		}
	}
	if v := sum(fams["rabbitmq_process_open_tcp_sockets"]); v != 1 {
		t.Errorf("rabbitmq_process_open_tcp_sockets = %v, want 1", v)
	}
	if open, max := sum(fams["rabbitmq_process_open_fds"]), sum(fams["rabbitmq_process_max_fds"]); open >= max {
		t.Errorf("open fds %v >= max %v", open, max)
	}
}

// TestPrometheus_ResidentMemoryIsRSS: rabbitmq_process_resident_memory_bytes is the process's
// resident set, the figure the memory alarm compares with its watermark, as RabbitMQ's default
// rss strategy.
func TestPrometheus_ResidentMemoryIsRSS(t *testing.T) {
	e := start(t)
	got := sum(e.scrape()["rabbitmq_process_resident_memory_bytes"])
	rss := float64(e.b.ResidentMemory())
	// Both are read within milliseconds of each other: allow the process some growth.
	if rss <= 0 || got < rss*0.8 || got > rss*1.25 {
		t.Fatalf("rabbitmq_process_resident_memory_bytes = %v, RSS = %v", got, rss)
	}
	// And the standard process collector's figure (also RSS) agrees.
	if p := sum(e.scrape()["process_resident_memory_bytes"]); p < got*0.8 || p > got*1.25 {
		t.Fatalf("rabbitmq_process_resident_memory_bytes = %v, process_resident_memory_bytes = %v", got, p)
	}
}

// TestPrometheus_Handler: PrometheusHandler serves the same metrics at /metrics and at
// /metrics/per-object, as RabbitMQ's Prometheus port does, and nothing of the HTTP API.
func TestPrometheus_Handler(t *testing.T) {
	e := start(t)
	hs := httptest.NewServer(e.m.PrometheusHandler())
	defer hs.Close()
	for _, path := range []string{"/metrics", "/metrics/per-object"} {
		fams := scrapeURL(t, hs.URL+path)
		if d := checkOverviewSeries(t, fams); d != "" && !strings.HasSuffix(d, "missing") {
			t.Errorf("%s: %s", path, d)
		}
		if fams["rabbitmq_identity_info"] == nil {
			t.Errorf("%s: no rabbitmq_identity_info", path)
		}
	}
	resp, err := hs.Client().Get(hs.URL + "/api/overview")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("/api/overview on the Prometheus listener: %d, want 404", resp.StatusCode)
	}
}
