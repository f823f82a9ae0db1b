package mgmt_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/warrenmq/warren/broker"
)

// A user tagged only management sees the vhosts it has permissions in and its own
// connections; another vhost's queues answer 404, as RabbitMQ's management plugin does.
func TestAPI_ManagementUserSeesOnlyItsVHosts(t *testing.T) {
	e := start(t)
	// Created through the API, as RabbitMQ, the creating administrator gets permissions there.
	e.must(http.StatusCreated, "PUT", "/api/vhosts/tenant-a", nil)
	e.must(http.StatusCreated, "PUT", "/api/vhosts/tenant-b", nil)
	if err := e.b.AddUser("alice", "pw", []string{"management"}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.SetPermissions(broker.Permission{User: "alice", VHost: "tenant-a", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
		t.Fatal(err)
	}
	_, ch := e.dial() // guest's connection, on "/"
	if _, err := ch.QueueDeclare("guest.q", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusCreated, "PUT", "/api/queues/tenant-b/b.q", map[string]any{"durable": false})
	e.must(http.StatusCreated, "PUT", "/api/queues/tenant-a/a.q", map[string]any{"durable": false})

	list := func(path string) []map[string]any {
		code, body := e.doAs("alice", "pw", "GET", path, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s as alice: %d %s", path, code, body)
		}
		var out []map[string]any
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if vhs := list("/api/vhosts"); len(vhs) != 1 || vhs[0]["name"] != "tenant-a" {
		t.Fatalf("alice sees vhosts %v", vhs)
	}
	if qs := list("/api/queues"); len(qs) != 1 || qs[0]["name"] != "a.q" {
		t.Fatalf("alice sees queues %v", qs)
	}
	if cs := list("/api/connections"); len(cs) != 0 {
		t.Fatalf("alice sees guest's connections: %v", cs)
	}
	if code, _ := e.doAs("alice", "pw", "GET", "/api/queues/tenant-b/b.q", nil); code != http.StatusNotFound {
		t.Fatalf("alice GET another tenant's queue: %d, want 404", code)
	}
	// guest (administrator) still sees everything
	if qs := e.getList("/api/queues"); len(qs) != 3 {
		t.Fatalf("guest sees %d queues, want 3", len(qs))
	}
}
