package mgmt_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	amqp "github.com/rabbitmq/amqp091-go"
)

// scrape fetches /metrics and parses it.
func (e *env) scrape() map[string]*dto.MetricFamily {
	e.t.Helper()
	return scrapeURL(e.t, e.http.URL+"/metrics")
}

// scrapeURL fetches a Prometheus text exposition and parses it.
func scrapeURL(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value returns the metric's value with the given label pairs, or -1 when absent.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

func TestMetrics_KnownWorkloadMatchesScrape(t *testing.T) {
	e := start(t)
	conn, ch := e.dial()
	for _, q := range []string{"m1", "m2"} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 64))
	returns := ch.NotifyReturn(make(chan amqp.Return, 8))
	publish := func(key string, mandatory bool) {
		if err := ch.Publish("", key, mandatory, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		publish("m1", false)
	}
	for range 2 {
		publish("m2", false)
	}
	for range 3 {
		publish("nowhere", true)
	}
	for range 2 {
		publish("nowhere", false)
	}
	for i := range 17 {
		select {
		case <-confirms:
		case <-time.After(5 * time.Second):
			t.Fatalf("confirm %d missing", i)
		}
	}
	for range 3 {
		<-returns
	}

	// A second channel consumes 4 from m1 with manual acks (prefetch 4), cancels and acks them. One basic.get with no-ack from m2, one empty get.
	cch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	cch.Qos(4, 0, false)
	deliveries, err := cch.Consume("m1", "c1", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var last amqp.Delivery
	for i := range 4 {
		select {
		case last = <-deliveries:
		case <-time.After(5 * time.Second):
			t.Fatalf("delivery %d missing", i)
		}
	}
	if err := cch.Cancel("c1", false); err != nil { // no further deliveries once we ack
		t.Fatal(err)
	}
	if err := last.Ack(true); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := cch.Get("m2", true); err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if _, ok, err := cch.Get("nowhere-q", true); err == nil && ok {
		t.Fatal("get from a missing queue succeeded")
	}
	gch, _ := conn.Channel()
	gch.QueueDeclare("empty", false, false, false, false, nil)
	if _, ok, _ := gch.Get("empty", true); ok {
		t.Fatal("empty queue had a message")
	}

	want := map[string]float64{
		"rabbitmq_connections":                                1,
		"rabbitmq_channels":                                   2, // the get from a missing queue closed cch
		"rabbitmq_queues":                                     3,
		"rabbitmq_consumers":                                  0,
		"rabbitmq_channel_messages_published_total":           17,
		"rabbitmq_channel_messages_confirmed_total":           17,
		"rabbitmq_channel_messages_unroutable_returned_total": 3,
		"rabbitmq_channel_messages_unroutable_dropped_total":  2,
		"rabbitmq_channel_messages_delivered_ack_total":       4,
		"rabbitmq_channel_messages_acked_total":               4,
		"rabbitmq_channel_get_total":                          1,
		"rabbitmq_channel_get_empty_total":                    1,
		"rabbitmq_alarms_memory_used_watermark":               0,
	}
	eventually(t, func() string {
		fams := e.scrape()
		for name, v := range want {
			if got := value(fams, name); got != v {
				return fmt.Sprintf("%s = %v, want %v", name, got, v)
			}
		}
		if got := value(fams, "rabbitmq_queue_messages_ready", "vhost", "/", "queue", "m1"); got != 6 {
			return fmt.Sprintf("m1 ready = %v, want 6", got)
		}
		if got := value(fams, "rabbitmq_queue_messages_unacked", "vhost", "/", "queue", "m1"); got != 0 {
			return fmt.Sprintf("m1 unacked = %v, want 0", got)
		}
		if got := value(fams, "rabbitmq_queue_messages_ready", "vhost", "/", "queue", "m2"); got != 1 {
			return fmt.Sprintf("m2 ready = %v, want 1", got)
		}
		if got := value(fams, "rabbitmq_queue_messages_published_total", "queue", "m1"); got != 10 {
			return fmt.Sprintf("m1 published = %v, want 10", got)
		}
		if value(fams, "rabbitmq_process_resident_memory_bytes") <= 0 || value(fams, "go_goroutines") <= 0 || value(fams, "process_open_fds") <= 0 {
			return "memory, go and process metrics missing"
		}
		return ""
	})
}
