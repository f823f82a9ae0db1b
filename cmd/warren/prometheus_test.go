package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/mgmt"
)

// TestPrometheusListener: --prometheus-listen serves the metrics at /metrics and
// /metrics/per-object, as RabbitMQ's port 15692 does, and nothing else.
func TestPrometheusListener(t *testing.T) {
	log := zerolog.New(zerolog.NewTestWriter(t))
	b, err := broker.New(broker.Config{AMQPListen: "127.0.0.1:0", DataDir: t.TempDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mg := mgmt.New(mgmt.Config{Broker: b, Log: log, Node: "warren@test"})
	defer mg.Close()
	srv, addr, err := servePrometheus("127.0.0.1:0", mg.PrometheusHandler(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/metrics", "/metrics/per-object"} {
		code, body := get(path)
		if code != 200 || !strings.Contains(body, `rabbitmq_identity_info{rabbitmq_cluster="warren@test",rabbitmq_node="warren@test"} 1`) ||
			!strings.Contains(body, "# TYPE rabbitmq_global_messages_received_total counter") {
			t.Fatalf("GET %s: %d\n%.400s", path, code, body)
		}
	}
	if code, _ := get("/api/overview"); code != 404 {
		t.Fatalf("GET /api/overview on the Prometheus listener: %d, want 404", code)
	}
	if _, _, err := servePrometheus(addr, mg.PrometheusHandler(), log); err == nil || !strings.Contains(err.Error(), "prometheus listen") {
		t.Fatalf("a second listener on %s: %v", addr, err)
	}
}
