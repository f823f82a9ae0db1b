package mgmt_test

import (
	"bytes"
	"net/http"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Policies are set, listed, applied to queues and deleted through /api/policies, in
// RabbitMQ's JSON form.
func TestAPI_Policies(t *testing.T) {
	e := start(t)
	_, ch := e.dial()
	if _, err := ch.QueueDeclare("pol.q", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusCreated, "PUT", "/api/policies/%2F/limit", map[string]any{
		"pattern": "^pol\\.", "apply-to": "queues", "priority": 3, "definition": map[string]any{"max-length": 2}})
	e.must(http.StatusNoContent, "PUT", "/api/policies/%2F/limit", map[string]any{
		"pattern": "^pol\\.", "apply-to": "queues", "priority": 3, "definition": map[string]any{"max-length": 1}})
	e.must(http.StatusBadRequest, "PUT", "/api/policies/%2F/bad", map[string]any{
		"pattern": "(", "definition": map[string]any{"max-length": 1}})
	list := e.getList("/api/policies/%2F")
	if len(list) != 1 || list[0]["name"] != "limit" || list[0]["apply-to"] != "queues" || num(list[0], "priority") != 3 {
		t.Fatalf("policies %v", list)
	}
	for i := range 5 {
		if err := ch.Publish("", "pol.q", false, false, amqp.Publishing{Body: []byte{byte('0' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() string {
		q := e.getObj("/api/queues/%2F/pol.q")
		if num(q, "messages_ready") != 1 {
			return "queue holds more than the policy's max-length"
		}
		return ""
	})
	e.must(http.StatusNoContent, "DELETE", "/api/policies/%2F/limit", nil)
	e.must(http.StatusNotFound, "DELETE", "/api/policies/%2F/limit", nil)
	if l := e.getList("/api/policies"); len(l) != 0 {
		t.Fatalf("policies after delete: %v", l)
	}
}

// The alarms health check and the metrics follow the broker's resource alarms.
func TestAPI_AlarmsFollowTheBroker(t *testing.T) {
	e := start(t)
	e.must(http.StatusOK, "GET", "/api/health/checks/alarms", nil)
	e.b.SetAlarmLimits(0, 1<<62) // no disk has that much free space
	body := e.must(http.StatusServiceUnavailable, "GET", "/api/health/checks/alarms", nil)
	if !bytes.Contains(body, []byte(`"resource":"disk space"`)) {
		t.Fatalf("alarms body %s", body)
	}
	code, metrics := e.do("GET", "/metrics", nil)
	if code != http.StatusOK || !bytes.Contains(metrics, []byte("rabbitmq_alarms_free_disk_space_watermark 1")) {
		t.Fatalf("metrics do not show the disk alarm")
	}
	e.b.SetAlarmLimits(0, 0)
	e.must(http.StatusOK, "GET", "/api/health/checks/alarms", nil)
}

// A deduplicating queue reports how many duplicates it dropped, in the API and the metrics.
func TestAPI_DuplicatesDroppedShown(t *testing.T) {
	e := start(t)
	_, ch := e.dial()
	if _, err := ch.QueueDeclare("dedup.q", false, false, false, false, amqp.Table{"x-message-deduplication": true}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := ch.Publish("", "dedup.q", false, false, amqp.Publishing{MessageId: "same", Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() string {
		q := e.getObj("/api/queues/%2F/dedup.q")
		if num(q, "duplicates_dropped") != 2 || num(q, "messages_ready") != 1 || q["encrypted"] != false {
			return "queue does not show 2 duplicates dropped and 1 message"
		}
		return ""
	})
	_, metrics := e.do("GET", "/metrics", nil)
	if !bytes.Contains(metrics, []byte(`warren_queue_duplicates_dropped_total{queue="dedup.q",vhost="/"} 2`)) {
		t.Fatal("metrics do not show the duplicates")
	}
}

// Queue types show as RabbitMQ names them, and a stream's message count is its retained log.
func TestAPI_QueueTypes(t *testing.T) {
	e := start(t)
	_, ch := e.dial()
	if _, err := ch.QueueDeclare("types.quorum", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("types.stream", true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := ch.Publish("", "types.stream", false, false, amqp.Publishing{Body: []byte("s")}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() string {
		s := e.getObj("/api/queues/%2F/types.stream")
		if s["type"] != "stream" || num(s, "messages") != 3 {
			return "stream queue not shown with its 3 messages"
		}
		if q := e.getObj("/api/queues/%2F/types.quorum"); q["type"] != "quorum" {
			return "quorum queue type"
		}
		return ""
	})
}
